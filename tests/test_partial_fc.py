"""Partial FC: the sampled classes, their logits against the full head's, sparse gradients and updates."""
import keras
import numpy as np
import pytest
import tensorflow as tf

import arcface_keras.heads  # noqa: F401
from arcface_keras.heads.partial_fc import (PartialFCCrossEntropy, RowSparseSGD, num_sampled, rank_among_distinct,
                                            sample_classes)
from arcface_keras.registry import HEADS

pytestmark = pytest.mark.numeric  # also run with oneDNN off (see Makefile)

DIM, CLASSES, RATE = 8, 40, 0.3
MARGIN_HEADS = ["arcface", "cosface", "combined", "adaface", "curricularface"]
STATE = {"adaface": {"batch_mean": 15.0, "batch_std": 3.0}, "curricularface": {"t": 0.3}}


def numpy(tensor):
    return keras.ops.convert_to_numpy(tensor)


def inputs(seed=0, batch=12):
    rng = np.random.default_rng(seed)
    w = rng.normal(size=(DIM, CLASSES)).astype(np.float32)
    labels = rng.integers(0, 6, size=batch).astype(np.int32)  # repeats: fewer distinct labels than samples
    x = rng.normal(size=(batch, DIM)).astype(np.float32) * 5
    return x, labels, w


def built(name, w, sample_rate=1.0, **extra):
    """A head with class centres `w` (D, C), stored in the layout its sample rate asks for."""
    head = HEADS.build({"type": name, "sample_rate": sample_rate, **extra}, num_classes=CLASSES)
    head.build([(None, DIM), (None,)])
    head.kernel.assign(w if head.class_axis == 1 else w.T)
    for variable, value in STATE.get(name, {}).items():
        getattr(head, variable).assign(value)
    return head


def sampled_call(head, x, labels):
    """(logits, columns) of one training call: the columns are redrawn from the same seed state."""
    state = numpy(head.seed_generator.state)
    logits = numpy(head([x, labels], training=True))
    after = numpy(head.seed_generator.state)
    head.seed_generator.state.assign(state)
    columns = numpy(head.sample_classes(labels, len(labels)))
    head.seed_generator.state.assign(after)
    return logits, columns


def test_sample_size_rule():
    assert num_sampled(1000, 0.1) == 100
    assert num_sampled(1000, 0.1, batch_size=128) == 128  # room for every class of the batch
    assert num_sampled(1000, 0.001) == 1
    assert num_sampled(50, 0.5, batch_size=64) == 50
    with pytest.raises(ValueError, match="sample_rate=0"):
        HEADS.build({"type": "arcface", "sample_rate": 0}, num_classes=CLASSES)


def test_full_rate_and_full_sample_score_every_class():
    x, labels, w = inputs(batch=CLASSES)
    full = built("arcface", w)
    assert full.kernel.shape == (DIM, CLASSES)
    reference = numpy(full([x, labels], training=True))
    assert reference.shape == (CLASSES, CLASSES)
    # a batch of C samples makes k = max(⌈r·C⌉, B) = C: every class, in class order, from the (C, D) layout
    everything = built("arcface", w, sample_rate=0.2)
    assert everything.kernel.shape == (CLASSES, DIM)
    np.testing.assert_allclose(numpy(everything([x, labels], training=True)), reference, rtol=1e-5, atol=1e-4)


def test_sample_keeps_every_positive_then_distinct_negatives():
    rng = np.random.default_rng(1)
    seed = keras.random.SeedGenerator(3)
    k = 15
    negatives_seen = set()
    for _ in range(30):
        labels = rng.integers(0, CLASSES, size=rng.integers(1, 12)).astype(np.int32)
        columns = numpy(sample_classes(labels, CLASSES, k, seed))
        positives = np.unique(labels)
        assert columns.shape == (k,) and len(set(columns.tolist())) == k
        np.testing.assert_array_equal(columns[: len(positives)], positives)  # distinct labels, ascending
        assert not set(columns[len(positives):].tolist()) & set(positives.tolist())
        np.testing.assert_array_equal(columns[numpy(rank_among_distinct(labels))], labels)
        negatives_seen.update(columns[len(positives):].tolist())
    assert len(negatives_seen) == CLASSES  # the negatives are redrawn at every step


@pytest.mark.parametrize("name", MARGIN_HEADS)
def test_sampled_logits_are_the_full_logits_on_the_sampled_columns(name):
    x, labels, w = inputs()
    sampled = built(name, w, sample_rate=RATE, seed=5)
    logits, columns = sampled_call(sampled, x, labels)
    k = num_sampled(CLASSES, RATE, len(labels))
    assert logits.shape == (len(labels), k) and columns.shape == (k,)
    full_head = built(name, w)
    full = numpy(full_head([x, labels], training=True))
    np.testing.assert_allclose(logits, full[:, columns], rtol=1e-5, atol=1e-4)
    # the margin sits on each label's own column
    np.testing.assert_array_equal(columns[numpy(rank_among_distinct(labels))], labels)
    # inference scores every class (with the running statistics both heads moved alike)
    np.testing.assert_allclose(numpy(sampled([x, labels], training=False)),
                               numpy(full_head([x, labels], training=False)), rtol=1e-5, atol=1e-4)


def test_loss_and_gradient_touch_only_the_sampled_rows():
    x, labels, w = inputs()
    head = built("arcface", w, sample_rate=RATE, seed=2)
    state = numpy(head.seed_generator.state)
    with tf.GradientTape() as tape:
        logits = head([x, labels], training=True)
        loss = head.loss()(labels, logits)
    gradient = tape.gradient(loss, head.kernel.value)
    assert isinstance(gradient, tf.IndexedSlices)
    head.seed_generator.state.assign(state)
    columns = numpy(head.sample_classes(labels, len(labels)))
    np.testing.assert_array_equal(np.sort(numpy(gradient.indices)), np.sort(columns))
    dense = numpy(tf.convert_to_tensor(gradient))
    untouched = np.setdiff1d(np.arange(CLASSES), columns)
    assert np.all(dense[untouched] == 0) and np.all(np.abs(dense[np.unique(labels)]).sum(1) > 0)
    # the loss is cross-entropy over the full head's logits restricted to the sample
    full = numpy(built("arcface", w)([x, labels], training=True))[:, columns]
    targets = numpy(rank_among_distinct(labels))
    shifted = full - full.max(1, keepdims=True)
    expected = np.mean(np.log(np.exp(shifted).sum(1)) - shifted[np.arange(len(labels)), targets])
    np.testing.assert_allclose(float(loss), expected, rtol=1e-5)
    assert isinstance(head.loss(), PartialFCCrossEntropy)


def sgd_reference(w, m, rows, grad, lr, momentum, decay):
    """The decoupled-decay momentum step on `rows` (numpy, float64)."""
    w, m = w.astype(np.float64).copy(), m.astype(np.float64).copy()
    w[rows] -= lr * decay * w[rows]
    m[rows] = momentum * m[rows] - lr * grad
    w[rows] += m[rows]
    return w, m


def test_row_sparse_sgd_moves_only_the_rows_of_the_gradient():
    rng = np.random.default_rng(4)
    w0 = rng.normal(size=(CLASSES, DIM)).astype(np.float32)
    variable = keras.Variable(w0)
    optimizer = RowSparseSGD(0.1, momentum=0.9, weight_decay=0.05)
    optimizer.build([variable])
    w, m = w0, np.zeros_like(w0)
    for rows in ([3, 7, 7, 20], [7, 1]):  # a repeated row sums, as slices from two replicas do
        values = rng.normal(size=(len(rows), DIM)).astype(np.float32)
        optimizer.apply_gradients([(tf.IndexedSlices(values, tf.constant(rows), (CLASSES, DIM)), variable)])
        unique = np.unique(rows)
        summed = np.stack([values[np.array(rows) == r].sum(0) for r in unique])
        w, m = sgd_reference(w, m, unique, summed, 0.1, 0.9, 0.05)
        np.testing.assert_allclose(numpy(variable), w, rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(numpy(optimizer.momentums[0]), m, rtol=1e-5, atol=1e-6)
    untouched = np.setdiff1d(np.arange(CLASSES), [1, 3, 7, 20])
    np.testing.assert_array_equal(numpy(variable)[untouched], w0[untouched])


def test_row_sparse_sgd_is_keras_sgd_on_dense_gradients():
    rng = np.random.default_rng(5)
    w0 = rng.normal(size=(6, 3)).astype(np.float32)
    ours, theirs = keras.Variable(w0), keras.Variable(w0)
    mine = RowSparseSGD(0.1, momentum=0.9, nesterov=True, weight_decay=0.01)
    keras_sgd = keras.optimizers.SGD(0.1, momentum=0.9, nesterov=True, weight_decay=0.01)
    for _ in range(3):
        grad = rng.normal(size=w0.shape).astype(np.float32)
        mine.apply_gradients([(grad, ours)])
        keras_sgd.apply_gradients([(grad, theirs)])
    np.testing.assert_allclose(numpy(ours), numpy(theirs), rtol=1e-6, atol=1e-7)
    again = RowSparseSGD.from_config(mine.get_config())
    assert again.decoupled_weight_decay == 0.01 and again.nesterov


def tiny_model(head_spec):
    head = HEADS.build(head_spec, num_classes=CLASSES)
    xi, yi = keras.Input((DIM,)), keras.Input((), dtype="int32")
    model = keras.Model([xi, yi], head([keras.layers.Dense(DIM, name="embed")(xi), yi]))
    model.compile(RowSparseSGD(0.1, momentum=0.9, weight_decay=5e-4), head.loss())
    return model, head


@pytest.mark.parametrize("spec", [{"type": "cosface", "sample_rate": RATE, "seed": 1},
                                  {"type": "center", "base": {"type": "arcface", "sample_rate": RATE}}],
                         ids=["cosface", "center+arcface"])
def test_fit_updates_at_most_the_sampled_rows(spec):
    x, labels, _ = inputs(batch=8)
    model, head = tiny_model(spec)
    kernel = getattr(head, "classifier", head).kernel
    before = numpy(kernel)
    history = model.fit([x, labels], labels, batch_size=8, epochs=2, verbose=0)
    assert np.all(np.isfinite(history.history["loss"]))
    changed = np.flatnonzero(np.any(numpy(kernel) != before, axis=1))
    assert set(np.unique(labels)) <= set(changed.tolist())
    assert len(changed) <= 2 * num_sampled(CLASSES, RATE, 8) < CLASSES


def test_sampled_head_round_trips_through_keras_file(tmp_path):
    x, labels, _ = inputs(batch=8)
    model, _ = tiny_model({"type": "adaface", "sample_rate": RATE, "seed": 7})
    model.fit([x, labels], labels, batch_size=8, epochs=1, verbose=0)
    model.save(tmp_path / "head.keras")
    again = keras.models.load_model(tmp_path / "head.keras")
    loaded = again.layers[-1]
    assert loaded.sample_rate == RATE and loaded.kernel.shape == (CLASSES, DIM)
    np.testing.assert_allclose(numpy(again([x, labels])), numpy(model([x, labels])), rtol=1e-5, atol=1e-5)
    assert isinstance(again.loss, PartialFCCrossEntropy) and isinstance(again.optimizer, RowSparseSGD)
