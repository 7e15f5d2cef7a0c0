"""Class centres sharded over a 2 (data) × 2 (model) mesh of CPU devices give the unsharded results.

For a full ArcFace head and a Partial FC one: the same loss and the same weights after one
training step (batch-norm statistics included: the data-parallel batch norm sees the global
batch), and the centre matrix really split along its class axis.
Run as `python tests/jax_model_parallel_check.py`; exits non-zero on the first failure.
"""
import os
import sys
from pathlib import Path

os.environ["KERAS_BACKEND"] = "jax"
os.environ["XLA_FLAGS"] = os.environ.get("XLA_FLAGS", "") + " --xla_force_host_platform_device_count=4"
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import keras  # noqa: E402
import numpy as np  # noqa: E402

import arcface_keras.heads  # noqa: E402, F401
from arcface_keras.heads.partial_fc import RowSparseSGD  # noqa: E402
from arcface_keras.registry import HEADS  # noqa: E402
from arcface_keras.training.model_parallel import class_axis, shard_class_centres  # noqa: E402

INPUT, DIM, CLASSES, BATCH = 12, 8, 64, 16
SPECS = {"arcface": {"type": "arcface", "s": 16.0},
         "partial_fc": {"type": "cosface", "s": 16.0, "sample_rate": 0.25, "seed": 3}}


def build(spec):
    head = HEADS.build(spec, num_classes=CLASSES)
    x_in, y_in = keras.Input((INPUT,)), keras.Input((), dtype="int32")
    embedding = keras.layers.BatchNormalization(name="bn")(keras.layers.Dense(DIM, name="embed")(x_in))
    model = keras.Model([x_in, y_in], head([embedding, y_in]))
    model.compile(RowSparseSGD(0.1, momentum=0.9, weight_decay=5e-4), head.loss())
    return model, head


def one_step(spec, weights, sharded):
    """(loss, weights after one step, head) with or without the class-sharded distribution."""
    keras.distribution.set_distribution(None)
    if sharded:
        shard_class_centres(model_axis=2, axis=class_axis(spec))
    model, head = build(spec)
    if weights is not None:
        model.set_weights(weights)
    rng = np.random.default_rng(0)
    x = rng.normal(size=(BATCH, INPUT)).astype("float32") * 3 + 1
    y = rng.integers(0, CLASSES, size=BATCH).astype("int32")
    loss = float(model.train_on_batch([x, y], y))
    return loss, [keras.ops.convert_to_numpy(w) for w in model.weights], head


def main():
    assert keras.backend.backend() == "jax", keras.backend.backend()
    assert len(keras.distribution.list_devices()) == 4, keras.distribution.list_devices()
    for name, spec in SPECS.items():
        start = [keras.ops.convert_to_numpy(w) for w in build(spec)[0].weights]
        loss, after, _ = one_step(spec, start, sharded=False)
        sharded_loss, sharded_after, head = one_step(spec, start, sharded=True)
        assert np.isfinite(loss), f"{name}: loss {loss}"
        np.testing.assert_allclose(sharded_loss, loss, rtol=1e-5, err_msg=name)
        difference = max(float(np.max(np.abs(a - b))) for a, b in zip(after, sharded_after))
        assert difference < 1e-5, f"{name}: weights differ by {difference}"
        assert not np.allclose(start[-1], after[-1]), f"{name}: the centres did not train"

        axis = class_axis(spec)
        sharding = head.kernel.value.sharding
        assert tuple(sharding.spec) == ((None, "model") if axis == 1 else ("model", None)), sharding.spec
        shard_shapes = {shard.data.shape for shard in head.kernel.value.addressable_shards}
        expected = (DIM, CLASSES // 2) if axis == 1 else (CLASSES // 2, DIM)
        assert shard_shapes == {expected}, f"{name}: shards {shard_shapes}"
        print(f"{name}: ok (loss {loss:.5f}, sharded {sharded_loss:.5f}, max weight difference {difference:.2e}, "
              f"kernel {tuple(head.kernel.shape)} split as {sharding.spec} into {expected})")


if __name__ == "__main__":
    main()
