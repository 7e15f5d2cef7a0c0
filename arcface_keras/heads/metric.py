"""Metric-learning heads: online triplet loss (batch-hard / semi-hard) and center loss."""
import typing
from typing import Annotated, Literal

import keras
from annotated_types import Ge, Interval, doc
from keras import ops

from arcface_keras.heads.base import Head
from arcface_keras.heads.margin import as_float32
from arcface_keras.registry import HEADS

Mining = Literal["batch_hard", "semi_hard"]
MINING = typing.get_args(Mining)
TripletMargin = Annotated[float, Interval(ge=0, le=4), doc("squared distances of unit vectors lie in [0, 4]")]
PLAIN_MARGIN_MAX = 2.0  # plain distances of unit vectors lie in [0, 2]: d_an - d_ap never exceeds 2
FAR = 1e9  # stands in for "no such pair" in masked minima and maxima


def pairwise_distances(embeddings, squared=True):
    """(B, B) squared (or plain) Euclidean distances between the rows of (B, D) embeddings."""
    sq_norms = ops.sum(ops.square(embeddings), axis=1)
    dist = sq_norms[:, None] + sq_norms[None, :] - 2.0 * ops.matmul(embeddings, ops.transpose(embeddings))
    dist = ops.maximum(dist, 0.0)
    return dist if squared else ops.sqrt(ops.maximum(dist, 1e-12))


def pair_masks(labels):
    """(positives, negatives): same label and not the anchor itself; different label."""
    same = labels[:, None] == labels[None, :]
    not_self = ops.logical_not(ops.eye(ops.shape(labels)[0], dtype="bool"))
    return ops.logical_and(same, not_self), ops.logical_not(same)


def masked_mean(values, mask):
    mask = ops.cast(mask, "float32")
    return ops.sum(values * mask) / ops.maximum(ops.sum(mask), 1.0)


def batch_hard_triplet_loss(labels, embeddings, margin=0.2, squared=True):
    """Mean over anchors of relu(d(a, hardest positive) − d(a, hardest negative) + margin).

    Anchors without a positive or a negative in the batch are left out of the mean.
    """
    dist = pairwise_distances(embeddings, squared)
    positives, negatives = pair_masks(labels)
    hardest_positive = ops.max(ops.where(positives, dist, 0.0), axis=1)
    hardest_negative = ops.min(ops.where(negatives, dist, FAR), axis=1)
    valid = ops.logical_and(ops.any(positives, axis=1), ops.any(negatives, axis=1))
    return masked_mean(ops.relu(hardest_positive - hardest_negative + margin), valid)


def semi_hard_triplet_loss(labels, embeddings, margin=0.2, squared=True):
    """Mean over all (anchor, positive) pairs of relu(d_ap − d_an + margin) (FaceNet mining).

    The negative is the closest one farther than the positive (semi-hard); where none is, the
    farthest negative is used, as in TensorFlow Addons' `triplet_semihard_loss`. Memory is O(B³).
    """
    dist = pairwise_distances(embeddings, squared)
    positives, negatives = pair_masks(labels)
    d_ap = dist[:, :, None]  # [anchor, positive, ·]
    d_an = dist[:, None, :]  # [anchor, ·, negative]
    farther = ops.logical_and(negatives[:, None, :], d_an > d_ap)
    semi_hard = ops.min(ops.where(farther, d_an, FAR), axis=2)
    farthest = ops.max(ops.where(negatives, dist, -FAR), axis=1)
    chosen = ops.where(ops.any(farther, axis=2), semi_hard, farthest[:, None])
    valid = ops.logical_and(positives, ops.any(negatives, axis=1)[:, None])
    return masked_mean(ops.relu(dist - chosen + margin), valid)


@keras.saving.register_keras_serializable(package="arcface_keras")
class TripletLoss(keras.losses.Loss):
    """Online triplet loss on (labels (B,), L2-normalised embeddings (B, D)) → scalar."""

    def __init__(self, margin=0.2, mining="batch_hard", squared=True, name="triplet_loss", **kwargs):
        super().__init__(name=name, **kwargs)
        if mining not in MINING:
            raise ValueError(f"triplet mining {mining!r} is not one of {', '.join(MINING)}")
        self.margin, self.mining, self.squared = float(margin), mining, bool(squared)

    def call(self, y_true, y_pred):
        labels = ops.reshape(ops.cast(y_true, "int32"), (-1,))
        loss = batch_hard_triplet_loss if self.mining == "batch_hard" else semi_hard_triplet_loss
        return loss(labels, ops.cast(y_pred, "float32"), self.margin, self.squared)

    def get_config(self):
        return {**super().get_config(), "margin": self.margin, "mining": self.mining, "squared": self.squared}


def triplet_fits_distances_and_batches(keywords, experiment):
    """A margin that a triplet can meet at its distance (squared in [0, 4], plain in [0, 2]); P x K batches."""
    if not keywords["squared"] and keywords["margin"] > PLAIN_MARGIN_MAX:
        raise ValueError(f"got margin={keywords['margin']!r} with squared=False: expected margin in [0, "
                         f"{PLAIN_MARGIN_MAX:g}] (plain distances of unit vectors lie in [0, 2])")
    if experiment is None:
        return
    data, batch = experiment.data, experiment.train.batch_size
    if data.sampler != "pk":
        raise ValueError(f"with data.sampler={data.sampler!r}: expected data.sampler='pk' (P identities x K images a "
                         "batch: in random batches an anchor seldom has a positive, and then no loss)")
    if batch < 2 * data.images_per_identity:
        raise ValueError(f"with train.batch_size={batch} and data.images_per_identity={data.images_per_identity}: "
                         f"expected a batch of 2 identities or more (batch_size >= {2 * data.images_per_identity}): "
                         "in a batch of one identity no anchor has a negative")


@keras.saving.register_keras_serializable(package="arcface_keras")
@HEADS.register("triplet", check=triplet_fits_distances_and_batches)
class TripletHead(Head):
    """Returns float32 L2-normalised embeddings; trained with `TripletLoss`.

    Distances are squared L2 by default (FaceNet: margin α = 0.2 on squared distances of unit
    vectors, which lie in [0, 4]); `squared=False` uses plain L2. `num_classes` is ignored. Batches
    must hold several images per identity (a P×K sampler) for positives to exist.
    """

    def __init__(self, num_classes, margin: TripletMargin = 0.2, mining: Mining = "batch_hard", squared: bool = True,
                 **kwargs):
        super().__init__(num_classes, **kwargs)
        if mining not in MINING:
            raise ValueError(f"triplet mining {mining!r} is not one of {', '.join(MINING)}")
        self.margin, self.mining, self.squared = float(margin), mining, bool(squared)

    def call(self, inputs, training=None):
        embeddings, _ = as_float32(*inputs)
        return ops.normalize(embeddings, axis=1, epsilon=1e-12)

    def loss(self):
        return TripletLoss(self.margin, self.mining, self.squared)

    def get_config(self):
        return {**super().get_config(), "margin": self.margin, "mining": self.mining, "squared": self.squared}


def base_is_a_head(keywords, experiment):
    """`base` is a head spec, checked as model.head is (a `center` inside works: each adds its own centres)."""
    try:
        HEADS.check(keywords["base"], experiment)
    except (KeyError, TypeError, ValueError) as exc:
        raise ValueError(f"got base={keywords['base']!r}: {exc.args[0]}") from None


@keras.saving.register_keras_serializable(package="arcface_keras")
@HEADS.register("center", check=base_is_a_head)
class CenterLossHead(Head):
    """A classification head (`base`, any registered head spec) plus Wen et al. 2016's center loss.

    Adds `center_weight`·½·mean‖x_i − c_{y_i}‖² (x the un-normalised float32 embeddings) with
    `add_loss`, so Keras sums it into the compiled loss. The centres (C, D), zeros at the start,
    are a non-trainable weight; in training, after the loss is read, each centre seen in the batch
    moves by c_j ← c_j − α·Σ_{i: y_i=j}(c_j − x_i)/(1 + n_j) with α = `center_alpha`.
    """

    def __init__(self, num_classes, base: typing.Union[str, dict] = "softmax",
                 center_weight: Annotated[float, Ge(0), doc("lambda of Wen et al. 2016")] = 0.01,
                 center_alpha: Annotated[float, Interval(ge=0, le=1), doc("Wen et al. 2016: alpha in [0, 1]")] = 0.5,
                 **kwargs):
        super().__init__(num_classes, **kwargs)
        self.base = base
        self.center_weight, self.center_alpha = float(center_weight), float(center_alpha)
        self.classifier = HEADS.build(base, num_classes=self.num_classes)

    def build(self, input_shape):
        self.classifier.build(input_shape)
        dim = int(input_shape[0][-1])
        self.centers = self.add_weight(
            name="centers", shape=(self.num_classes, dim), initializer="zeros", trainable=False
        )

    def call(self, inputs, training=None):
        embeddings, labels = as_float32(*inputs)
        logits = self.classifier([embeddings, labels], training=training)
        own_centers = ops.take(self.centers, labels, axis=0)
        center_loss = 0.5 * ops.mean(ops.sum(ops.square(embeddings - own_centers), axis=1))
        self.add_loss(self.center_weight * center_loss)
        if training:
            self.centers.assign(self.updated_centers(ops.stop_gradient(embeddings), labels))
        return logits

    def updated_centers(self, embeddings, labels):
        one_hot = ops.one_hot(labels, self.num_classes, dtype="float32")  # (B, C)
        counts = ops.sum(one_hot, axis=0)[:, None]  # (C, 1)
        sums = ops.matmul(ops.transpose(one_hot), embeddings)  # (C, D)
        delta = (counts * self.centers - sums) / (1.0 + counts)
        return self.centers - self.center_alpha * delta

    def loss(self):
        return self.classifier.loss()

    def get_config(self):
        return {
            **super().get_config(),
            "base": self.base,
            "center_weight": self.center_weight,
            "center_alpha": self.center_alpha,
        }
