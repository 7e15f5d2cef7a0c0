"""Heads against closed forms and numpy re-implementations of the papers' reference code."""
import math
import os
import subprocess
import sys

import keras
import numpy as np
import pytest

import arcface_keras.heads  # noqa: F401
from arcface_keras.heads.metric import TripletLoss
from arcface_keras.registry import BACKBONES, HEADS

pytestmark = pytest.mark.numeric  # also run with oneDNN off (see Makefile)

DIM, CLASSES = 8, 10
ALL_HEADS = ["adaface", "arcface", "center", "combined", "cosface", "curricularface", "softmax", "triplet"]
# Angles between each embedding and its own class centre: 0, near 0, ordinary, just below and just
# past the θ + m = π border for m = 0.5, near π and π.
ANGLES = np.array([0.0, 1e-3, 0.3, 1.2, 2.0, math.pi - 0.5 - 0.02, math.pi - 0.5 + 0.02, 3.0, math.pi - 1e-3, math.pi])


# ---------------------------------------------------------------- numpy references


def unit(a, axis):
    return a / np.linalg.norm(a, axis=axis, keepdims=True)


def cosines(x, w):
    return np.clip(unit(x.astype(np.float64), 1) @ unit(w.astype(np.float64), 0), -1.0, 1.0)


# A float32 cosine of unit vectors is good to a few ulps (8 counted, for the normalisation and an
# 8-term dot product); acos turns a cosine error δc into δθ = δc / sin θ (at most √(2δc) at 0 and π),
# which a target logit s·f(θ) scales by s·|f′(θ)|. Near θ = π (sin θ = 1e-3) that is ~1e-3 rad:
# CPUs that round the matmul differently (AVX-512, oneDNN on or off) legitimately differ there.
COSINE_ERROR = 8 * float(np.finfo(np.float32).eps)
LOGIT_ATOL = 5e-3  # float32 logits of magnitude s = 64: a few ulps of 64 plus the cosine's error times s


def acos_tolerance(x, w, labels, s, slope):
    """Per-logit tolerance: LOGIT_ATOL, plus s·|slope(θ)|·δθ on the target logits (see COSINE_ERROR)."""
    theta = np.arccos(cosines(x, w)[np.arange(len(labels)), labels])
    dtheta = np.minimum(COSINE_ERROR / np.maximum(np.sin(theta), 1e-12), math.sqrt(2 * COSINE_ERROR))
    return with_target(np.full((len(labels), w.shape[1]), LOGIT_ATOL), labels, LOGIT_ATOL + s * np.abs(slope(theta)) * dtheta)


def assert_within(actual, expected, tolerance):
    worst = np.unravel_index(np.argmax(np.abs(actual - expected) - tolerance), actual.shape)
    assert np.all(np.abs(actual - expected) <= tolerance), (
        f"|Δ| = {abs(actual[worst] - expected[worst]):.3g} > {tolerance[worst]:.3g} at {worst}")


def with_target(cos, labels, target):
    out = cos.copy()
    out[np.arange(len(labels)), labels] = target
    return out


def arcface_ref(x, w, labels, s=64.0, m=0.5, easy_margin=False):
    cos = cosines(x, w)
    c = cos[np.arange(len(labels)), labels]
    theta = np.arccos(c)
    if easy_margin:
        target = np.where(c > 0, np.cos(theta + m), c)
    else:
        target = np.where(theta + m <= math.pi, np.cos(theta + m), c - m * math.sin(math.pi - m))
    return s * with_target(cos, labels, target)


def combined_ref(x, w, labels, s, m1, m2, m3):
    cos = cosines(x, w)
    theta = np.arccos(cos[np.arange(len(labels)), labels])
    return s * with_target(cos, labels, np.cos(m1 * theta + m2) - m3)


def adaface_ref(x, w, labels, batch_mean, batch_std, m=0.4, h=0.333, s=64.0, t_alpha=0.01):
    """The official AdaFace head's forward pass (one training step), transcribed to numpy."""
    eps = 1e-3
    cosine = np.clip(cosines(x, w), -1 + eps, 1 - eps)
    safe_norms = np.clip(np.linalg.norm(x.astype(np.float64), axis=1, keepdims=True), 0.001, 100)
    batch_mean = safe_norms.mean() * t_alpha + (1 - t_alpha) * batch_mean
    batch_std = safe_norms.std(ddof=1) * t_alpha + (1 - t_alpha) * batch_std
    margin_scaler = np.clip((safe_norms - batch_mean) / (batch_std + eps) * h, -1, 1)
    one_hot = np.eye(w.shape[1])[labels]
    theta_m = np.clip(np.arccos(cosine) + one_hot * (m * margin_scaler * -1), eps, math.pi - eps)
    cosine = np.cos(theta_m) - one_hot * (m + m * margin_scaler)
    return cosine * s, batch_mean, batch_std


def curricularface_ref(x, w, labels, t, m=0.5, s=64.0, momentum=0.01):
    """The official CurricularFace forward pass (one training step), transcribed to numpy."""
    cos_theta = cosines(x, w)
    rows = np.arange(len(labels))
    target_logit = cos_theta[rows, labels][:, None]
    sin_theta = np.sqrt(1.0 - target_logit**2)
    cos_theta_m = target_logit * math.cos(m) - sin_theta * math.sin(m)
    mask = cos_theta > cos_theta_m
    threshold, mm = math.cos(math.pi - m), math.sin(math.pi - m) * m
    final_target_logit = np.where(target_logit > threshold, cos_theta_m, target_logit - mm)
    t = target_logit.mean() * momentum + (1 - momentum) * t
    cos_theta[mask] = cos_theta[mask] * (t + cos_theta[mask])
    cos_theta[rows, labels] = final_target_logit[:, 0]
    return cos_theta * s, t


def distances(e, squared):
    d = ((e[:, None, :] - e[None, :, :]) ** 2).sum(-1)
    return d if squared else np.sqrt(d)


def triplet_ref(labels, embeddings, margin, mining, squared):
    """Brute-force loops over anchors, positives and negatives."""
    d = distances(unit(embeddings.astype(np.float64), 1), squared)
    losses = []
    for a in range(len(labels)):
        pos = [p for p in range(len(labels)) if p != a and labels[p] == labels[a]]
        neg = [n for n in range(len(labels)) if labels[n] != labels[a]]
        if not pos or not neg:
            continue
        if mining == "batch_hard":
            losses.append(max(max(d[a, p] for p in pos) - min(d[a, n] for n in neg) + margin, 0.0))
            continue
        for p in pos:
            farther = [d[a, n] for n in neg if d[a, n] > d[a, p]]
            chosen = min(farther) if farther else max(d[a, n] for n in neg)
            losses.append(max(d[a, p] - chosen + margin, 0.0))
    return np.mean(losses)


# ---------------------------------------------------------------- inputs


def rng_inputs(seed=0, batch=len(ANGLES)):
    rng = np.random.default_rng(seed)
    w = rng.normal(size=(DIM, CLASSES)).astype(np.float32)
    labels = rng.integers(0, CLASSES, size=batch).astype(np.int32)
    return rng, w, labels


def at_angles(rng, w, labels, angles):
    """Embeddings at the given angles from their own class centre, with random norms."""
    rows = []
    for label, angle in zip(labels, angles):
        centre = w[:, label] / np.linalg.norm(w[:, label])
        other = rng.normal(size=DIM)
        other -= other @ centre * centre
        other /= np.linalg.norm(other)
        rows.append((math.cos(angle) * centre + math.sin(angle) * other) * rng.uniform(0.5, 30))
    return np.array(rows, dtype=np.float32)


def built(spec, w=None, **state):
    """A head built for (B, DIM) inputs, its class centres set to `w` and named weights to `state`."""
    head = HEADS.build(spec, num_classes=CLASSES)
    head.build([(None, DIM), (None,)])
    if w is not None:
        head.kernel.assign(w)
    for name, value in state.items():
        getattr(head, name).assign(value)
    return head


def run(head, x, labels, training=False):
    return keras.ops.convert_to_numpy(head([x, labels], training=training))


def value(variable):
    return keras.ops.convert_to_numpy(variable)


# ---------------------------------------------------------------- registry, softmax


def test_registry_names():
    assert set(ALL_HEADS) <= set(HEADS.names())


@pytest.mark.parametrize("use_bias", [True, False])
def test_softmax_is_a_dense_classifier(use_bias):
    rng, w, labels = rng_inputs()
    x = rng.normal(size=(len(labels), DIM)).astype(np.float32)
    head = built({"type": "softmax", "use_bias": use_bias}, w)
    bias = rng.normal(size=CLASSES).astype(np.float32)
    if use_bias:
        head.bias.assign(bias)
    expected = x.astype(np.float64) @ w + (bias if use_bias else 0.0)
    np.testing.assert_allclose(run(head, x, labels), expected, rtol=1e-5, atol=1e-4)


# ---------------------------------------------------------------- margins: golden values


@pytest.mark.parametrize("easy_margin", [False, True])
def test_arcface_matches_closed_form(easy_margin):
    rng, w, labels = rng_inputs()
    x = at_angles(rng, w, labels, ANGLES)
    head = built({"type": "arcface", "easy_margin": easy_margin}, w)
    out = run(head, x, labels)
    assert out.dtype == np.float32
    # At θ = 0 a float32 cosine one ulp below 1 already gives sinθ ≈ 3e-4, i.e. 0.01 on the logit.
    np.testing.assert_allclose(out, arcface_ref(x, w, labels, easy_margin=easy_margin), atol=2e-2)


def test_arcface_margin_past_pi_falls_back():
    rng, w, labels = rng_inputs(batch=2)
    x = at_angles(rng, w, labels, [2.5, 2.5])
    head = built({"type": "arcface", "m": 1.0}, w)  # θ + m = 3.5 > π
    target = run(head, x, labels)[np.arange(2), labels]
    np.testing.assert_allclose(target, 64 * (math.cos(2.5) - math.sin(math.pi - 1.0)), atol=5e-3)


def test_cosface_matches_closed_form():
    rng, w, labels = rng_inputs()
    x = at_angles(rng, w, labels, ANGLES)
    head = built({"type": "cosface", "s": 30.0, "m": 0.35}, w)
    expected = 30.0 * with_target(cosines(x, w), labels, cosines(x, w)[np.arange(len(labels)), labels] - 0.35)
    np.testing.assert_allclose(run(head, x, labels), expected, atol=1e-3)


@pytest.mark.parametrize("m1,m2,m3", [(1.0, 0.5, 0.0), (1.0, 0.0, 0.35), (1.35, 0.0, 0.0), (1.0, 0.3, 0.2)])
def test_combined_matches_closed_form(m1, m2, m3):
    rng, w, labels = rng_inputs()
    y = labels[1:-1]
    x = at_angles(rng, w, y, ANGLES[1:-1])  # acos is clipped at ±(1 − ε)
    head = built({"type": "combined", "m1": m1, "m2": m2, "m3": m3}, w)
    tolerance = acos_tolerance(x, w, y, 64.0, lambda theta: m1 * np.sin(m1 * theta + m2))  # d/dθ cos(m1θ + m2)
    assert_within(run(head, x, y), combined_ref(x, w, y, 64.0, m1, m2, m3), tolerance)


def test_combined_special_cases_equal_arcface_and_cosface():
    rng, w, labels = rng_inputs()
    inside = ANGLES[1:][ANGLES[1:] + 0.5 <= math.pi]  # combined clips acos at 1 − ε
    x = at_angles(rng, w, labels[: len(inside)], inside)
    y = labels[: len(inside)]
    arc = run(built({"type": "arcface", "m": 0.5}, w), x, y)
    np.testing.assert_allclose(run(built({"type": "combined", "m1": 1, "m2": 0.5, "m3": 0}, w), x, y), arc, atol=5e-3)
    cos = run(built({"type": "cosface", "m": 0.35}, w), x, y)
    np.testing.assert_allclose(run(built({"type": "combined", "m1": 1, "m2": 0, "m3": 0.35}, w), x, y), cos, atol=5e-3)


@pytest.mark.parametrize(
    "t_alpha,preset",
    [(0.01, {}), (0.3, {"batch_mean": 15.0, "batch_std": 3.0})],
    ids=["official-start", "clipped-scaler"],
)
def test_adaface_one_step_matches_reference(t_alpha, preset):
    rng, w, labels = rng_inputs()
    x = at_angles(rng, w, labels, ANGLES)
    head = built({"type": "adaface", "t_alpha": t_alpha}, w, **preset)
    mean0, std0 = value(head.batch_mean), value(head.batch_std)
    expected, mean1, std1 = adaface_ref(x, w, labels, mean0, std0, t_alpha=t_alpha)
    np.testing.assert_allclose(run(head, x, labels, training=True), expected, atol=5e-3)
    np.testing.assert_allclose([value(head.batch_mean), value(head.batch_std)], [mean1, std1], rtol=1e-5)
    # Inference reads the statistics without moving them.
    frozen, _, _ = adaface_ref(x, w, labels, mean1, std1, t_alpha=0.0)
    np.testing.assert_allclose(run(head, x, labels, training=False), frozen, atol=5e-3)
    np.testing.assert_allclose(value(head.batch_mean), mean1, rtol=1e-6)


def test_curricularface_one_step_matches_reference():
    rng, w, labels = rng_inputs()
    y = labels[1:-1]
    x = at_angles(rng, w, y, ANGLES[1:-1])  # wide angles make hard negatives; two pass θ + m = π
    head = built("curricularface", w, t=0.4)
    expected, t1 = curricularface_ref(x, w, y, t=0.4)
    np.testing.assert_allclose(run(head, x, y, training=True), expected, atol=5e-3)
    np.testing.assert_allclose(value(head.t), t1, rtol=1e-5)
    # Inference reads t without moving it.
    frozen, _ = curricularface_ref(x, w, y, t1, momentum=0.0)
    np.testing.assert_allclose(run(head, x, y, training=False), frozen, atol=5e-3)
    np.testing.assert_allclose(value(head.t), t1, rtol=1e-6)


# ---------------------------------------------------------------- metric heads


@pytest.mark.parametrize("mining", ["batch_hard", "semi_hard"])
@pytest.mark.parametrize("squared", [True, False])
def test_triplet_loss_matches_brute_force(mining, squared):
    rng = np.random.default_rng(3)
    labels = np.array([0, 0, 0, 1, 1, 2, 3, 3, 3, 4], dtype=np.int32)  # identity 2 has no positive
    x = rng.normal(size=(len(labels), DIM)).astype(np.float32)
    head = built({"type": "triplet", "mining": mining, "squared": squared, "margin": 0.3})
    out = run(head, x, labels)
    np.testing.assert_allclose(np.linalg.norm(out, axis=1), 1.0, rtol=1e-6)
    loss = float(head.loss()(labels, out))
    assert loss > 0
    np.testing.assert_allclose(loss, triplet_ref(labels, x, 0.3, mining, squared), rtol=1e-4)


def test_triplet_rejects_unknown_mining():
    with pytest.raises(ValueError, match="semi_hard"):
        TripletLoss(mining="hardest")


def center_setup():
    rng = np.random.default_rng(4)
    labels = np.array([0, 0, 1, 3, 3, 3, 7, 9], dtype=np.int32)
    x = rng.normal(size=(len(labels), DIM)).astype(np.float32) * 3
    centers = rng.normal(size=(CLASSES, DIM)).astype(np.float32)
    return x, labels, centers


def center_update_ref(centers, x, labels, alpha):
    new = centers.astype(np.float64).copy()
    for j in set(labels.tolist()):
        members = x[labels == j]
        new[j] -= alpha * (centers[j] - members).sum(0) / (1 + len(members))
    return new


def test_center_loss_value_and_update():
    x, labels, centers = center_setup()
    head = HEADS.build({"type": "center", "center_weight": 0.1, "center_alpha": 0.6}, num_classes=CLASSES)
    xi, yi = keras.Input((DIM,)), keras.Input((), dtype="int32")
    model = keras.Model([xi, yi], head([xi, yi]))
    model.compile(keras.optimizers.SGD(0.0), head.loss())
    head.centers.assign(centers)
    logits = keras.ops.convert_to_numpy(model([x, labels]))
    shifted = logits - logits.max(1, keepdims=True)
    cross_entropy = np.mean(np.log(np.exp(shifted).sum(1)) - shifted[np.arange(len(labels)), labels])
    center_loss = 0.5 * np.mean(((x - centers[labels]) ** 2).sum(1))
    expected = cross_entropy + 0.1 * center_loss
    np.testing.assert_allclose(model.evaluate([x, labels], labels, verbose=0), expected, rtol=1e-5)
    np.testing.assert_allclose(value(head.centers), centers, rtol=1e-6)  # evaluation leaves them alone
    np.testing.assert_allclose(model.train_on_batch([x, labels], labels), expected, rtol=1e-5)
    np.testing.assert_allclose(value(head.centers), center_update_ref(centers, x, labels, 0.6), rtol=1e-5, atol=1e-6)


def test_center_head_wraps_any_base():
    x, labels, _ = center_setup()
    head = built({"type": "center", "base": {"type": "arcface", "m": 0.3}})
    head.classifier.kernel.assign(np.random.default_rng(5).normal(size=(DIM, CLASSES)).astype(np.float32))
    expected = arcface_ref(x, value(head.classifier.kernel), labels, m=0.3)
    np.testing.assert_allclose(run(head, x, labels), expected, atol=5e-3)


def test_a_center_head_inside_a_center_head_adds_both_losses_and_round_trips(tmp_path):
    """The nesting that config.validate accepts works: each head keeps its own centres and adds its own loss."""
    x, labels, _ = center_setup()
    spec = {"type": "center", "center_weight": 0.1,
            "base": {"type": "center", "center_weight": 0.2, "center_alpha": 0.3}}
    head = HEADS.build(spec, num_classes=CLASSES)
    xi, yi = keras.Input((DIM,)), keras.Input((), dtype="int32")
    model = keras.Model([xi, yi], head([xi, yi]))
    model.compile(keras.optimizers.SGD(0.0), head.loss())
    logits = keras.ops.convert_to_numpy(model([x, labels]))
    shifted = logits - logits.max(1, keepdims=True)
    cross_entropy = np.mean(np.log(np.exp(shifted).sum(1)) - shifted[np.arange(len(labels)), labels])
    center_loss = 0.5 * np.mean((x ** 2).sum(1))  # both centre sets start at zero
    np.testing.assert_allclose(model.train_on_batch([x, labels], labels), cross_entropy + 0.3 * center_loss, rtol=1e-5)
    zeros = np.zeros((CLASSES, DIM), np.float32)
    for layer, alpha in [(head, 0.5), (head.classifier, 0.3)]:
        np.testing.assert_allclose(value(layer.centers), center_update_ref(zeros, x, labels, alpha), rtol=1e-5, atol=1e-6)
    model.save(tmp_path / "nested.keras")
    again = keras.models.load_model(tmp_path / "nested.keras")
    np.testing.assert_allclose(again([x, labels]), model([x, labels]), rtol=1e-6)
    np.testing.assert_allclose(value(again.layers[-1].classifier.centers), value(head.classifier.centers))


# ---------------------------------------------------------------- precision, serialisation, JAX


def tiny_model(spec, policy="float32"):
    keras.mixed_precision.set_dtype_policy(policy)
    try:
        head = HEADS.build(spec, num_classes=CLASSES)
        xi, yi = keras.Input((DIM,)), keras.Input((), dtype="int32")
        model = keras.Model([xi, yi], head([keras.layers.Dense(DIM, name="embed")(xi), yi]))
        model.compile(keras.optimizers.SGD(0.01), head.loss(), run_eagerly=True)  # no tracing: tiny and quick
    finally:
        keras.mixed_precision.set_dtype_policy("float32")
    return model


def batch(seed=6):
    rng = np.random.default_rng(seed)
    labels = np.repeat(np.arange(4), 4).astype(np.int32)
    return rng.normal(size=(len(labels), DIM)).astype(np.float32), labels


@pytest.mark.parametrize("spec", ALL_HEADS)
def test_mixed_precision_losses_stay_close_to_float32(spec):
    x, labels = batch()
    reference = tiny_model(spec)
    weights = reference.get_weights()
    reference_loss = float(reference.train_on_batch([x, labels], labels))
    for policy, rtol in [("mixed_float16", 1e-2), ("mixed_bfloat16", 5e-2)]:
        model = tiny_model(spec, policy)
        model.set_weights(weights)
        assert model.get_layer("embed").compute_dtype != "float32"
        assert keras.backend.standardize_dtype(model.output.dtype) == "float32"
        loss = float(model.train_on_batch([x, labels], labels))
        assert np.isfinite(loss)
        np.testing.assert_allclose(loss, reference_loss, rtol=rtol, atol=1e-3)


@pytest.mark.parametrize("spec", ALL_HEADS)
def test_head_round_trips_through_keras_file(spec, tmp_path):
    head = HEADS.build(spec, num_classes=CLASSES)
    config = head.get_config()
    assert type(head).from_config(config).get_config() == config
    x, labels = batch()
    model = tiny_model(spec)
    model([x, labels], training=True)  # moves any running statistics away from their start
    model.save(tmp_path / "head.keras")
    again = keras.models.load_model(tmp_path / "head.keras")
    np.testing.assert_allclose(again([x, labels]), model([x, labels]), rtol=1e-5, atol=1e-5)


def test_heads_train_on_jax(repo_root):
    env = {**os.environ, "KERAS_BACKEND": "jax"}
    script = str(repo_root / "tests" / "jax_heads_check.py")
    result = subprocess.run([sys.executable, script], env=env, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    for name in ALL_HEADS:
        assert f"{name}: ok" in result.stdout


# ---------------------------------------------------------------- a head from outside the package

OUTSIDE_HEAD = '''
import keras

from arcface_keras.heads.margin import MarginHead, replace_target, target_cosine
from arcface_keras.registry import BACKBONES, HEADS


@BACKBONES.register("outside_tiny")
def outside_tiny(input_shape=(112, 112, 3), embedding_size=16):
    image = keras.Input(input_shape)
    pooled = keras.layers.AveragePooling2D(8)(image)
    return keras.Model(image, keras.layers.Dense(embedding_size)(keras.layers.Flatten()(pooled)))


@keras.saving.register_keras_serializable(package="outside_heads")
@HEADS.register("outside_cosface")
class OutsideCosFace(MarginHead):
    def __init__(self, num_classes, s=16.0, m=0.2, **kwargs):
        super().__init__(num_classes, s=s, **kwargs)
        self.m = float(m)

    def apply_margin(self, cosine, labels, embeddings=None, training=False):
        return self.s * replace_target(cosine, labels, target_cosine(cosine, labels) - self.m)

    def get_config(self):
        return {**super().get_config(), "m": self.m}
'''

OUTSIDE_EXPERIMENT = '''
import dataclasses
import runpy

import outside_heads  # noqa: F401  (registers "outside_cosface" and a tiny backbone)

demo = runpy.run_path({demo!r})["experiment"]
experiment = dataclasses.replace(
    demo, name="outside_head",
    model=dataclasses.replace(demo.model, backbone="outside_tiny", head={{"type": "outside_cosface", "m": 0.3}}),
)
'''


def test_head_registered_outside_the_package_trains_through_run_tool(tmp_path, repo_root, monkeypatch):
    for registry in (HEADS, BACKBONES):  # the new names leave with the test
        monkeypatch.setattr(registry, "_entries", dict(registry._entries))
    (tmp_path / "outside_heads.py").write_text(OUTSIDE_HEAD)
    (tmp_path / "experiments").mkdir()
    experiment = tmp_path / "experiments" / "outside_head.py"
    experiment.write_text(OUTSIDE_EXPERIMENT.format(demo=str(repo_root / "experiments" / "demo_synth_mfn_arc.py")))
    overrides = [
        "data.synthetic={'identities': 8, 'images': 4, 'val_identities': 20, 'val_images': 2, 'val_pairs': 20,"
        " 'seed': 2}",
        f"data.cache_dir={tmp_path / 'cache'}", "data.image_size=32", "data.shuffle_buffer=64",
        "model.embedding_size=16", "train.steps_per_epoch=2", "train.epochs=1",
        "train.batch_size=8", "train.save_steps=2", "eval.batch_size=16", f"log.work_dir={tmp_path / 'runs'}",
        "log.wandb=disabled",
    ]
    from tools import run as run_tool

    try:
        result = run_tool.main([str(experiment)] + [a for o in overrides for a in ("--set", o)])
    finally:
        sys.modules.pop("outside_heads", None)
    assert result["step"] == 2
    run_dir = tmp_path / "runs" / "outside_head"
    assert '"outside_cosface"' in (run_dir / "config.json").read_text()
    assert (run_dir / "embedder.keras").is_file()
