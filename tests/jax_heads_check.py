"""Every registered head on the JAX backend without TensorFlow (as `pip install .` has it): forward, one training
step, state updates, .keras round trip.

All heads sit side by side in one model, so the training step is compiled once.
Run as `KERAS_BACKEND=jax python tests/jax_heads_check.py`; exits non-zero on the first failure.
"""
import os
import sys
import tempfile
from pathlib import Path

os.environ["KERAS_BACKEND"] = "jax"
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

sys.modules["tensorflow"] = None  # the JAX backend alone, as a plain install has no TensorFlow
import keras  # noqa: E402
import numpy as np  # noqa: E402

import arcface_keras.heads  # noqa: E402, F401
from arcface_keras.registry import HEADS  # noqa: E402

DIM, CLASSES = 8, 10
STATE = {"adaface": ("batch_mean", "batch_std"), "curricularface": ("t",), "center": ("centers",)}


def numpy(tensor):
    return keras.ops.convert_to_numpy(tensor)


def main():
    assert keras.backend.backend() == "jax", keras.backend.backend()
    names = HEADS.names()
    heads = [HEADS.build(name, num_classes=CLASSES, name=name) for name in names]
    x_in, y_in = keras.Input((DIM,)), keras.Input((), dtype="int32")
    embed = keras.layers.Dense(DIM, name="embed")
    outputs = {name: head([embed(x_in), y_in]) for name, head in zip(names, heads)}
    model = keras.Model([x_in, y_in], outputs)
    model.compile(keras.optimizers.SGD(0.1), {name: head.loss() for name, head in zip(names, heads)})

    rng = np.random.default_rng(0)
    x = rng.normal(size=(16, DIM)).astype("float32")
    y = np.repeat(np.arange(4), 4).astype("int32")  # four identities × four images, for the triplet head
    for name, out in model([x, y]).items():
        out = numpy(out)
        assert out.dtype == np.float32 and np.isfinite(out).all(), f"{name}: bad forward output"
    state = {(h.name, v): numpy(getattr(h, v)) for h in heads for v in STATE.get(h.name, ())}
    weights = [numpy(w) for w in model.trainable_weights]

    logs = model.train_on_batch([x, y], {name: y for name in names}, return_dict=True)
    for name in names:
        loss = logs[f"{name}_loss"]
        assert np.isfinite(loss), f"{name}: loss {loss}"
    for head in heads:
        pairs = [(before, w) for before, w in zip(weights, model.trainable_weights) if w.path.startswith(head.name)]
        assert all(not np.allclose(before, numpy(w)) for before, w in pairs), f"{head.name}: a weight did not train"
    for (name, var), before in state.items():
        after = numpy(getattr(model.get_layer(name), var))
        assert not np.allclose(before, after), f"{name}: {var} not updated in training"
    assert not np.allclose(weights[0], numpy(model.get_layer("embed").kernel)), "embedding layer not trained"

    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "heads.keras")
        model.save(path)
        again = keras.models.load_model(path)
        for name, out in again([x, y]).items():
            np.testing.assert_allclose(numpy(out), numpy(model([x, y])[name]), rtol=1e-5, atol=1e-5, err_msg=name)
    for name in names:
        print(f"{name}: ok (loss {logs[f'{name}_loss']:.4f})")


if __name__ == "__main__":
    main()
