"""Backbones: reference parameter counts, shapes, .keras round trip, fused batch norm, JAX backend."""
import os
import subprocess
import sys

import keras
import numpy as np
import pytest
import tensorflow as tf

import arcface_keras.backbones  # noqa: F401
from arcface_keras.backbones.layers import FastBatchNormalization, GroupedConv2D
from arcface_keras.registry import BACKBONES

MOBILEFACENET = {"type": "mobilefacenet", "width": 0.125}
RESNET = {"type": "resnet18", "width": 0.0625}
RESNET_SE_GDC = {"type": "resnet18", "width": 0.0625, "se": True, "output": "GDC"}


def parameter_count(model):
    """All weights except batch-norm moving statistics."""
    counted = [w for w in model.weights if w.trainable or not w.path.rsplit("/", 1)[-1].startswith("moving_")]
    return sum(int(np.prod(w.shape)) for w in counted)


def images(batch, size, seed=0):
    return np.random.default_rng(seed).uniform(-1, 1, (batch, size, size, 3)).astype("float32")


def test_registry_names():
    assert {"mobilefacenet", "resnet18", "resnet34", "resnet50", "resnet100"} <= set(BACKBONES.names())


@pytest.mark.parametrize(
    "spec, embedding_size, expected",
    [
        ("resnet18", 512, 24_025_600),
        ("resnet34", 512, 34_139_328),
        ("resnet50", 512, 43_590_848),
        ("resnet100", 512, 65_156_160),
        ("mobilefacenet", 128, 1_003_136),
        ("mobilefacenet", 512, 1_200_512),
        ({"type": "mobilefacenet", "width": 2}, 512, 2_059_520),
        # GDC (512x7x7 depthwise, BN, 512x512 dense) → 64-channel 1x1 conv, BN, PReLU, 3136x512 dense + bias.
        ({"type": "mobilefacenet", "width": 2, "output": "flatten", "padding": "symmetric"}, 512,
         2_059_520 - (512 * 49 + 2 * 512 + 512 * 512) + (512 * 64 + 3 * 64 + 3136 * 512 + 512)),
    ],
)
def test_reference_parameter_count(spec, embedding_size, expected):
    with keras.StatelessScope():  # defers weight initialisation: shapes are all a count needs
        model = BACKBONES.build(spec, input_shape=(112, 112, 3), embedding_size=embedding_size)
    assert parameter_count(model) == expected


@pytest.mark.parametrize("spec, size", [(MOBILEFACENET, 32), (RESNET, 32), (RESNET_SE_GDC, 56)])
def test_tiny_backbone_embeds_small_images(spec, size):
    model = BACKBONES.build(spec, input_shape=(size, size, 3), embedding_size=16)
    embeddings = keras.ops.convert_to_numpy(model(images(4, size), training=False))
    assert embeddings.shape == (4, 16)
    assert np.isfinite(embeddings).all()
    norms = np.linalg.norm(embeddings, axis=1)
    assert not np.allclose(norms, 1.0, atol=1e-3), "the backbone must not L2-normalise its output"
    distances = np.linalg.norm(embeddings[:, None] - embeddings[None], axis=-1)
    assert (distances[~np.eye(4, dtype=bool)] > 0).all(), "different images should give different embeddings"
    norm_layers = [layer for layer in model.layers if isinstance(layer, keras.layers.BatchNormalization)]
    assert all(isinstance(layer, FastBatchNormalization) for layer in norm_layers)


def test_bad_options_fail_with_clear_errors():
    with pytest.raises(ValueError, match="output"):
        BACKBONES.build({"type": "resnet18", "output": "fc"}, input_shape=(32, 32, 3))
    with pytest.raises(ValueError, match="input_shape"):
        BACKBONES.build("mobilefacenet", input_shape=(None, None, 3))
    with pytest.raises(ValueError, match="dropout"):
        BACKBONES.build({"type": "resnet18", "output": "GDC", "dropout": 0.5}, input_shape=(32, 32, 3))
    with pytest.raises(ValueError, match="width"):
        BACKBONES.build({"type": "resnet50", "width": 0}, input_shape=(32, 32, 3))
    from arcface_keras.backbones.mobilefacenet import mobilefacenet

    for options in ({"blocks": (0, 4, 6, 2)}, {"blocks": (1, 4, 6)}, {"padding": "valid"}, {"output": "E"}):
        key = next(iter(options))
        with pytest.raises((TypeError, ValueError), match=f"backbone 'mobilefacenet' got {key}="):
            BACKBONES.build({"type": "mobilefacenet", **options}, input_shape=(32, 32, 3))
        with pytest.raises(ValueError, match=f"mobilefacenet: {key} must be"):  # called without the registry
            mobilefacenet((32, 32, 3), **options)
    with pytest.raises(TypeError, match="depth"):
        BACKBONES.check({"type": "resnet50", "depth": 50})


@pytest.mark.parametrize("spec", [MOBILEFACENET, RESNET_SE_GDC])
def test_keras_round_trip(spec, tmp_path):
    model = BACKBONES.build(spec, input_shape=(32, 32, 3), embedding_size=8)
    batch = images(2, 32)
    path = tmp_path / "backbone.keras"
    model.save(path)
    loaded = keras.saving.load_model(path)
    np.testing.assert_allclose(loaded(batch, training=False), model(batch, training=False), rtol=1e-5, atol=1e-5)
    assert any(isinstance(layer, FastBatchNormalization) for layer in loaded.layers)


def paired_batch_norms(channels=6, momentum=0.9, epsilon=1e-5):
    """A FastBatchNormalization and a keras BatchNormalization holding the same non-trivial weights."""
    rng = np.random.default_rng(1)
    fast = FastBatchNormalization(momentum=momentum, epsilon=epsilon)
    reference = keras.layers.BatchNormalization(momentum=momentum, epsilon=epsilon)
    for layer in (fast, reference):
        layer.build((None, 5, 5, channels))
    weights = [rng.uniform(0.5, 1.5, channels), rng.normal(size=channels), rng.normal(size=channels),
               rng.uniform(0.5, 2.0, channels)]
    for layer in (fast, reference):
        layer.set_weights([w.astype("float32") for w in weights])
    return fast, reference


@pytest.mark.parametrize("training", [True, False])
def test_fast_batch_norm_matches_keras(training):
    fast, reference = paired_batch_norms()
    initial_mean = fast.moving_mean.numpy().copy()
    rng = np.random.default_rng(2)
    x = tf.constant(rng.normal(3.0, 2.0, (4, 5, 5, 6)).astype("float32"))
    upstream = tf.constant(rng.normal(size=(4, 5, 5, 6)).astype("float32"))
    results = []
    for layer in (fast, reference):
        with tf.GradientTape() as tape:
            tape.watch(x)
            y = layer(x, training=training)
            loss = tf.reduce_sum(y * upstream)
        grads = tape.gradient(loss, [x, layer.gamma, layer.beta])
        results.append((y, grads, [w.numpy() for w in (layer.moving_mean, layer.moving_variance)]))
    (y_fast, g_fast, stats_fast), (y_ref, g_ref, stats_ref) = results
    np.testing.assert_allclose(y_fast, y_ref, rtol=1e-4, atol=1e-4)
    for a, b in zip(g_fast, g_ref):
        np.testing.assert_allclose(a, b, rtol=1e-3, atol=1e-4)
    for a, b in zip(stats_fast, stats_ref):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
    assert np.allclose(stats_fast[0], initial_mean) != training, "moving statistics change in training only"


@pytest.mark.parametrize("training", [True, False])
def test_fast_batch_norm_runs_one_fused_kernel(training):
    fast, _ = paired_batch_norms()
    graph = tf.function(lambda x: fast(x, training=training)).get_concrete_function(
        tf.TensorSpec((None, 5, 5, 6), tf.float32)
    ).graph
    op_types = {op.type for op in graph.get_operations()}
    assert "FusedBatchNormV3" in op_types
    assert "Rsqrt" not in op_types


def test_fast_batch_norm_falls_back_for_2d_input():
    fast = FastBatchNormalization(momentum=0.9, epsilon=1e-5)
    reference = keras.layers.BatchNormalization(momentum=0.9, epsilon=1e-5)
    x = np.random.default_rng(3).normal(size=(8, 4)).astype("float32")
    np.testing.assert_allclose(fast(x, training=True), reference(x, training=True), rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(fast.moving_variance.numpy(), reference.moving_variance.numpy(), rtol=1e-6)


@pytest.mark.parametrize("channels, filters, groups, strides, padding",
                         [(8, 8, 4, 1, "same"), (12, 6, 3, 2, "valid"), (4, 12, 2, 2, "same")])
def test_grouped_conv_matches_keras_conv2d(channels, filters, groups, strides, padding, tmp_path):
    """The depthwise-and-sum form gives Conv2D's outputs and gradients from the same kernel, and saves."""
    layers = [kind(filters, 3, strides=strides, padding=padding, groups=groups, use_bias=False)
              for kind in (keras.layers.Conv2D, GroupedConv2D)]
    rng = np.random.default_rng(4)
    x = tf.constant(rng.normal(size=(2, 9, 9, channels)).astype("float32"))
    upstream = tf.constant(rng.normal(size=layers[0](x).shape).astype("float32"))
    layers[1](x)
    layers[1].set_weights(layers[0].get_weights())
    results = []
    for layer in layers:
        with tf.GradientTape() as tape:
            tape.watch(x)
            loss = tf.reduce_sum(layer(x) * upstream)
        results.append((layer(x), *tape.gradient(loss, [x, layer.kernel])))
    for reference, grouped in zip(*results):  # float32 sums of at most 3*3*6 products, in another order
        np.testing.assert_allclose(grouped, reference, rtol=1e-5, atol=1e-5)
    model = keras.Sequential([keras.Input(x.shape[1:]), layers[1]])
    model.save(tmp_path / "grouped.keras")
    np.testing.assert_array_equal(keras.saving.load_model(tmp_path / "grouped.keras")(x), model(x))


def test_mobilefacenet_wider_than_one_uses_the_grouped_conv_in_its_stem():
    model = BACKBONES.build({"type": "mobilefacenet", "width": 2.0, "blocks": [1, 0, 0, 0]}, input_shape=(32, 32, 3),
                            embedding_size=8)
    stem = model.get_layer("stem_dw_conv")
    assert isinstance(stem, GroupedConv2D) and (stem.groups, stem.filters) == (64, 128)


def test_backbones_train_and_infer_on_jax(repo_root):
    env = {**os.environ, "KERAS_BACKEND": "jax"}
    result = subprocess.run(
        [sys.executable, str(repo_root / "tests" / "jax_backbones_check.py")],
        env=env, capture_output=True, text=True, timeout=900,
    )
    assert result.returncode == 0, result.stdout + result.stderr[-3000:]
