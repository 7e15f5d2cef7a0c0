"""Every registered head trains: a short run on synthetic identities improves held-out verification."""
import keras
import numpy as np
import pytest

import arcface_keras.heads  # noqa: F401
from arcface_keras.data.synthetic import render_identities, verification_accuracy
from arcface_keras.evaluation.embed import model_inputs
from arcface_keras.registry import HEADS
from xla_matrix import HEAD_SPECS

SIZE, TRAIN_IDS, TRAIN_IMAGES, HELD_OUT_IDS, HELD_OUT_IMAGES = 24, 48, 8, 24, 8
STEPS, BATCH = 60, 32
SPECS = {name: spec for name, spec in HEAD_SPECS.items() if name != "partial_fc"}  # one head each


@pytest.fixture(scope="module")
def identities():
    return make_identities()


def make_identities():
    """(train images, labels), (held-out images, labels): disjoint identities, float32 in [-1, 1]."""
    train, labels = render_identities(0, TRAIN_IDS, TRAIN_IMAGES)
    held, held_labels = render_identities(0, HELD_OUT_IDS, HELD_OUT_IMAGES, first_identity=TRAIN_IDS)
    small = lambda images: model_inputs(images, (SIZE, SIZE))  # noqa: E731
    return (small(train), labels.astype("int32")), (small(held), held_labels)


def embedder():
    keras.utils.set_random_seed(1)
    return keras.Sequential([
        keras.Input((SIZE, SIZE, 3)),
        keras.layers.Conv2D(16, 3, strides=2, padding="same", use_bias=False),
        keras.layers.BatchNormalization(), keras.layers.ReLU(),
        keras.layers.Conv2D(32, 3, strides=2, padding="same", use_bias=False),
        keras.layers.BatchNormalization(), keras.layers.ReLU(),
        keras.layers.Flatten(), keras.layers.Dense(64),
    ])


def pk_batches(labels, rng, k=4):
    """Batch indices of BATCH // k identities × k images (triplet losses need positives in a batch)."""
    by_id = {c: np.flatnonzero(labels == c) for c in np.unique(labels)}
    for _ in range(STEPS):
        ids = rng.choice(list(by_id), BATCH // k, replace=False)
        yield np.concatenate([rng.choice(by_id[c], k, replace=False) for c in ids])


def held_out_accuracy(model, held):
    images, labels = held
    return verification_accuracy(model.predict(images, batch_size=64, verbose=0), labels, pairs=600)["accuracy"]


def test_every_head_of_the_package_is_trained_here():
    shipped = {name for name in HEADS.names() if HEADS.get(name).__module__.startswith("arcface_keras.")}
    assert shipped == set(SPECS)


def train(name, identities):
    """(held-out accuracy before, after, losses) of `STEPS` steps with head `name`."""
    (images, labels), held = identities
    net = embedder()
    head = HEADS.build(SPECS[name], num_classes=TRAIN_IDS)
    image, label = keras.Input((SIZE, SIZE, 3)), keras.Input((), dtype="int32")
    model = keras.Model([image, label], head([net(image), label]))
    model.compile(keras.optimizers.SGD(0.05, momentum=0.9), head.loss())
    before = held_out_accuracy(net, held)
    losses = [float(model.train_on_batch([images[b], labels[b]], labels[b]))
              for b in pk_batches(labels, np.random.default_rng(0))]
    return before, held_out_accuracy(net, held), losses


@pytest.mark.parametrize("name", sorted(SPECS))
def test_short_training_improves_held_out_verification(name, identities):
    before, after, losses = train(name, identities)
    assert np.isfinite(losses).all() and np.mean(losses[-10:]) < np.mean(losses[:10])
    # measured: 54.2% untrained; 60.8% (center) to 65.2% (arcface) after 60 steps
    assert after > before + 0.04, f"{name}: held-out accuracy {before:.3f} before, {after:.3f} after {STEPS} steps"
