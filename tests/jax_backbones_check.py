"""Build each backbone family on the JAX backend, run a forward pass and a gradient step; exit 1 on failure.

Run with KERAS_BACKEND=jax (tests/test_backbones.py does so in a subprocess).
"""
import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
# A correctness check: XLA's CPU optimisation passes would cost more time than they save here.
os.environ.setdefault("XLA_FLAGS", "--xla_backend_optimization_level=0")

import jax  # noqa: E402
import keras  # noqa: E402
import numpy as np  # noqa: E402

from arcface_keras.registry import BACKBONES  # noqa: E402
import arcface_keras.backbones  # noqa: E402, F401

CASES = (  # MobileFaceNet with one unit of each kind (stem and stages): compiling the full depth took 3x longer
    {"type": "mobilefacenet", "width": 0.125, "blocks": [2, 1, 1, 1]},
    {"type": "resnet18", "width": 0.0625, "se": True, "dropout": 0.1},
)
EMBEDDING_SIZE = 8
LEARNING_RATE = 0.05


def check(spec):
    """Jitted forward, gradient and one SGD step through `stateless_call`; returns a problem or None."""
    model = BACKBONES.build(spec, input_shape=(32, 32, 3), embedding_size=EMBEDDING_SIZE)
    images = np.random.default_rng(0).uniform(-1, 1, (4, 32, 32, 3)).astype("float32")

    def loss_fn(trainable, non_trainable):
        embeddings, non_trainable = model.stateless_call(trainable, non_trainable, images, training=True)
        return jax.numpy.mean(embeddings**2), (embeddings, non_trainable)

    trainable = [v.value for v in model.trainable_variables]
    non_trainable = [v.value for v in model.non_trainable_variables]
    step = jax.jit(jax.value_and_grad(loss_fn, has_aux=True))
    (loss, (embeddings, new_non_trainable)), grads = step(trainable, non_trainable)
    if embeddings.shape != (4, EMBEDDING_SIZE):
        return f"embedding shape {embeddings.shape}, expected (4, {EMBEDDING_SIZE})"
    if not np.isfinite(float(loss)):
        return f"loss {loss}"
    if not all(np.isfinite(g).all() for g in grads) or not any(np.abs(g).max() > 0 for g in grads):
        return "gradients not finite or all zero"
    if all(np.array_equal(a, b) for a, b in zip(non_trainable, new_non_trainable)):
        return "batch-norm moving statistics did not update in training mode"
    updated = [w - LEARNING_RATE * g for w, g in zip(trainable, grads)]
    (new_loss, _), _ = step(updated, new_non_trainable)
    if not new_loss < loss:
        return f"one SGD step did not lower the loss: {float(loss):.5f} -> {float(new_loss):.5f}"
    return None


def main():
    if keras.backend.backend() != "jax":
        print(f"expected KERAS_BACKEND=jax, got {keras.backend.backend()!r}")
        return 1
    failures = 0
    for spec in CASES:
        problem = check(spec)
        print(f"{spec}: {problem or 'ok'}")
        failures += problem is not None
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
