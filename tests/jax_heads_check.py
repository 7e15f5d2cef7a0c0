"""Every registered head on the JAX backend: forward, one training step, state updates, .keras round trip.

Run as `KERAS_BACKEND=jax python tests/jax_heads_check.py`; exits non-zero on the first failure.
"""
import os
import sys
import tempfile
from pathlib import Path

os.environ["KERAS_BACKEND"] = "jax"
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import keras  # noqa: E402
import numpy as np  # noqa: E402

import arcface_keras.heads  # noqa: E402, F401
from arcface_keras.registry import HEADS  # noqa: E402

DIM, CLASSES, BATCH = 8, 10, 16
STATEFUL = {"adaface": ("batch_mean", "batch_std"), "curricularface": ("t",), "center": ("centers",)}


def tiny_model(spec):
    head = HEADS.build(spec, num_classes=CLASSES)
    x = keras.Input((DIM,))
    y = keras.Input((), dtype="int32")
    model = keras.Model([x, y], head([keras.layers.Dense(DIM)(x), y]))
    model.compile(keras.optimizers.SGD(0.1), head.loss())
    return model, head


def check(name, tmp):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(BATCH, DIM)).astype("float32")
    y = np.repeat(np.arange(BATCH // 4), 4).astype("int32")
    model, head = tiny_model(name)
    out = np.asarray(model([x, y], training=False))
    assert out.dtype == np.float32 and np.isfinite(out).all(), f"{name}: bad forward output"
    state = {v: np.array(getattr(head, v)) for v in STATEFUL.get(name, ())}
    kernel = np.array(model.trainable_weights[0])
    loss = float(model.train_on_batch([x, y], y))
    assert np.isfinite(loss), f"{name}: loss {loss}"
    assert not np.allclose(kernel, np.array(model.trainable_weights[0])), f"{name}: training step changed nothing"
    for var, before in state.items():
        assert not np.allclose(before, np.array(getattr(head, var))), f"{name}: {var} not updated in training"
    path = os.path.join(tmp, f"{name}.keras")
    model.save(path)
    again = keras.models.load_model(path)
    np.testing.assert_allclose(np.asarray(again([x, y])), np.asarray(model([x, y])), rtol=1e-5, atol=1e-5)
    print(f"{name}: ok (loss {loss:.4f})")


def main():
    assert keras.backend.backend() == "jax", keras.backend.backend()
    with tempfile.TemporaryDirectory() as tmp:
        for name in HEADS.names():
            check(name, tmp)


if __name__ == "__main__":
    main()
