"""Partial FC (An et al. 2022): train on the batch's classes plus a random sample of the others.

With millions of identities the class-centre matrix, its momentum and the (B, C) logits are what
run out of memory. Each training step of a margin head with `sample_rate` r < 1 (see
`MarginHead`) keeps k = max(⌈r·C⌉, B) classes (at most C): every class present in the batch and
a uniform random sample of the rest. Its logits then have k columns, laid out so that the target
column follows from the labels alone, which is what lets the plain `(labels, logits)` loss
contract survive:

    columns = [distinct labels of the batch, ascending | sampled negatives]
    target  = rank of a sample's label among the batch's distinct labels

`PartialFCCrossEntropy` applies that mapping whenever the logits are narrower than C, and
`RowSparseSGD` updates only the sampled rows of the centre matrix.
"""
import math
from typing import Annotated

import keras
from annotated_types import Interval, doc
from keras import ops

SampleRate = Annotated[float, Interval(gt=0, le=1), doc("the fraction of the classes a step scores")]
# Scores above every random draw, so that top-k keeps the batch's own classes first.
_RANDOM_RANGE = 2**30


def check_sample_rate(sample_rate):
    """`sample_rate` as a float in (0, 1], or a one-line ValueError."""
    rate = float(sample_rate)
    if not 0.0 < rate <= 1.0:
        raise ValueError(f"head sample_rate={sample_rate!r}: expected a fraction of the classes in (0, 1]")
    return rate


def num_sampled(num_classes, sample_rate, batch_size=None):
    """k = max(⌈r·C⌉, B), at most C: room for every class of a batch of `batch_size` (None: unknown)."""
    k = math.ceil(round(sample_rate * num_classes, 6))
    if batch_size:
        k = max(k, int(batch_size))
    return min(max(k, 1), num_classes)


def rank_among_distinct(labels):
    """(B,) int32: how many distinct values of `labels` are smaller than each label.

    That is each label's position among the batch's distinct labels sorted ascending, the target
    column of Partial FC logits. O(B²) comparisons, exact in integers.
    """
    labels = ops.reshape(ops.cast(labels, "int32"), (-1,))
    index = ops.arange(ops.shape(labels)[0])
    same = labels[:, None] == labels[None, :]
    seen_before = ops.any(ops.logical_and(same, index[None, :] < index[:, None]), axis=1)
    first = ops.logical_not(seen_before)  # one True per distinct label
    smaller = ops.logical_and(first[None, :], labels[None, :] < labels[:, None])
    return ops.cast(ops.sum(ops.cast(smaller, "int32"), axis=1), "int32")


def sample_classes(labels, num_classes, k, seed=None):
    """(k,) int32 class indices: the batch's distinct labels ascending, then random other classes.

    Every class gets a random score, the batch's classes a score above all of them that falls
    with the class index; the top k scores are the sample. The negatives are thus a uniform random
    subset of the classes outside the batch. `seed` is a `keras.random.SeedGenerator` (or int).
    Needs k ≥ the number of distinct labels, which k = max(⌈r·C⌉, B) guarantees.
    """
    labels = ops.reshape(ops.cast(labels, "int32"), (-1,))
    present = ops.scatter(labels[:, None], ops.ones_like(labels), (num_classes,)) > 0
    random = keras.random.randint((num_classes,), 0, _RANDOM_RANGE, dtype="int32", seed=seed)
    ordered = _RANDOM_RANGE + num_classes - ops.arange(num_classes, dtype="int32")
    scores = ops.where(present, ordered, random)
    return ops.cast(ops.top_k(scores, k, sorted=True)[1], "int32")


def gather_rows(variable, rows):
    """`variable[rows]` for a (C, D) variable, reading only those rows.

    On TensorFlow this gathers from the variable itself: `keras.ops.take` would first read the
    whole matrix, and the optimizer's in-place update of the sampled rows would then have to copy
    all of it (copy-on-write) at every step. Elsewhere it is `keras.ops.take`.
    """
    if keras.backend.backend() == "tensorflow":
        import tensorflow as tf

        return tf.gather(variable.value, rows)
    return ops.take(variable, rows, axis=0)


@keras.saving.register_keras_serializable(package="arcface_keras")
class PartialFCCrossEntropy(keras.losses.Loss):
    """Softmax cross-entropy on (labels (B,), logits) from a head with `num_classes` classes.

    Logits of width `num_classes` are read as usual; narrower ones are Partial FC logits (columns:
    the batch's distinct labels ascending, then sampled negatives), whose target column is each
    label's rank among the batch's distinct labels.
    """

    def __init__(self, num_classes, name="partial_fc_cross_entropy", **kwargs):
        super().__init__(name=name, **kwargs)
        self.num_classes = int(num_classes)

    def call(self, y_true, y_pred):
        labels = ops.reshape(ops.cast(y_true, "int32"), (-1,))
        if y_pred.shape[-1] != self.num_classes:
            labels = rank_among_distinct(labels)
        return keras.losses.sparse_categorical_crossentropy(labels, ops.cast(y_pred, "float32"), from_logits=True)

    def get_config(self):
        return {**super().get_config(), "num_classes": self.num_classes}


@keras.saving.register_keras_serializable(package="arcface_keras")
class RowSparseSGD(keras.optimizers.SGD):
    """`keras.optimizers.SGD` (momentum, decoupled weight decay) that leaves untouched rows alone.

    A dense gradient gets exactly Keras' update: v ← v − lr·wd·v, m ← μ·m − lr·g, v ← v + m.
    A row-sparse gradient (a `tf.IndexedSlices`: TensorFlow's gradient of a gather along the first
    axis, as Partial FC's (C, D) centre matrix produces) applies the same three steps to its rows
    only; every other row keeps its weights and its momentum, as in insightface's first Partial FC.
    Keras' own SGD would turn `μ·m − lr·g` into a dense (C, D) tensor: every row's momentum
    decays and moves its centre, and weight decay shrinks every row, at O(C·D) time and memory per
    step — what torch SGD does in insightface's PartialFC_V2. Rows repeated in one gradient (one
    slice per replica after a cross-replica reduction) are summed first.
    """

    def __init__(self, learning_rate=0.01, momentum=0.0, nesterov=False, weight_decay=None, **kwargs):
        super().__init__(learning_rate, momentum=momentum, nesterov=nesterov, weight_decay=None, **kwargs)
        self.decoupled_weight_decay = float(weight_decay or 0.0)

    def update_step(self, gradient, variable, learning_rate):
        if not _is_row_sparse(gradient):
            if self.decoupled_weight_decay:
                lr = ops.cast(learning_rate, variable.dtype)
                self.assign_sub(variable, ops.multiply(variable, lr * self.decoupled_weight_decay))
            return super().update_step(gradient, variable, learning_rate)
        import tensorflow as tf

        rows, position = tf.unique(gradient.indices)
        grad = tf.math.unsorted_segment_sum(tf.cast(gradient.values, variable.dtype), position, tf.shape(rows)[0])
        lr = tf.cast(learning_rate, variable.dtype)
        weights = tf.gather(variable, rows)  # from the variable: only these rows are read
        weights = weights - weights * (lr * self.decoupled_weight_decay)
        if self.momentum:
            m = self.momentums[self._get_variable_index(variable)]
            momentum = tf.gather(m.value, rows) * self.momentum - grad * lr
            self.assign(m, tf.IndexedSlices(momentum, rows))
            step = momentum * self.momentum - grad * lr if self.nesterov else momentum
        else:
            step = -grad * lr
        self.assign(variable, tf.IndexedSlices(weights + step, rows))

    def get_config(self):
        return {**super().get_config(), "weight_decay": self.decoupled_weight_decay or None}


def _is_row_sparse(gradient):
    if keras.backend.backend() != "tensorflow":
        return False
    import tensorflow as tf

    return isinstance(gradient, tf.IndexedSlices)
