"""Classification heads: a plain softmax classifier and the normalised-cosine margin family.

The split follows insightface's arcface_torch: `MarginHead` owns the class centres and turns
embeddings into float32 cosines in [-1, 1]; each subclass only edits the target-class cosine in
`apply_margin` and applies the scale. Margins are applied whenever the head is called (they are
part of the training loss); running statistics (AdaFace, CurricularFace) update only in training.
Every margin head takes Partial FC's `sample_rate` (see heads/partial_fc.py).
"""
import math
from typing import Annotated

import keras
from annotated_types import Ge, Gt, Interval, doc
from keras import ops

from arcface_keras.heads.base import Head, Seed
from arcface_keras.heads.partial_fc import (PartialFCCrossEntropy, SampleRate, check_sample_rate, gather_rows,
                                            num_sampled, rank_among_distinct, sample_classes)
from arcface_keras.registry import HEADS

# The ranges of the keywords (checked when an experiment loads, see registry.py):
Scale = Annotated[float, Gt(0), doc("the radius of the hypersphere the logits lie on")]
AngularMargin = Annotated[float, Interval(ge=0, lt=math.pi / 2),
                          doc("radians: from pi/2 on, cos(theta + m) <= 0 even for theta = 0")]
CosineMargin = Annotated[float, Interval(ge=0, lt=1),
                         doc("at 1 the target's cos(theta) - m is never above 0 (CosFace 3.4)")]
AngleFactor = Annotated[float, Ge(1), doc("SphereFace's factor on the angle: below 1 it shrinks it")]
AdaMargin = Annotated[float, Interval(ge=0, lt=1), doc("it takes up to 2m off the target cosine")]
Concentration = Annotated[float, Ge(0), doc("0: the margin does not adapt")]
EmaRate = Annotated[float, Interval(gt=0, le=1), doc("the weight of each new batch; at 0 nothing updates")]


def as_float32(embeddings, labels):
    """Embeddings as float32 (B, D) and labels as int32 (B,), whatever dtype they arrive in."""
    return ops.cast(embeddings, "float32"), ops.reshape(ops.cast(labels, "int32"), (-1,))


def embedding_dim(input_shape):
    """D from the `[embeddings_shape, labels_shape]` a head is built with."""
    return int(input_shape[0][-1])


def target_cosine(cosine, labels):
    """(B,) cosine of each sample's own class."""
    return ops.take_along_axis(cosine, labels[:, None], axis=1)[:, 0]


def replace_target(logits, labels, target):
    """`logits` with each row's label column replaced by `target` (B,)."""
    is_target = ops.one_hot(labels, ops.shape(logits)[1], dtype="bool")
    return ops.where(is_target, target[:, None], logits)


def cos_plus_margin(cosine, margin):
    """cos(θ + m) = cosθ·cos m − sinθ·sin m, with sinθ from a clamped square root."""
    sine = ops.sqrt(ops.clip(1.0 - ops.square(cosine), 1e-12, 1.0))
    return cosine * math.cos(margin) - sine * math.sin(margin)


def arc_margin(cosine, margin):
    """insightface's cos(θ + m) with its fallback cosθ − m·sin(π − m) where θ + m would pass π."""
    past_pi = cosine <= math.cos(math.pi - margin)
    return ops.where(past_pi, cosine - math.sin(math.pi - margin) * margin, cos_plus_margin(cosine, margin))


@keras.saving.register_keras_serializable(package="arcface_keras")
@HEADS.register("softmax")
class SoftmaxHead(Head):
    """Plain dense classifier: float32 logits `x·W (+ b)` of shape (B, num_classes); labels unused."""

    def __init__(self, num_classes, use_bias: bool = True, **kwargs):
        super().__init__(num_classes, **kwargs)
        self.use_bias = bool(use_bias)

    def build(self, input_shape):
        dim = embedding_dim(input_shape)
        self.kernel = self.add_weight(name="kernel", shape=(dim, self.num_classes), initializer="glorot_uniform")
        self.bias = None
        if self.use_bias:
            self.bias = self.add_weight(name="bias", shape=(self.num_classes,), initializer="zeros")

    def call(self, inputs, training=None):
        embeddings, _ = as_float32(*inputs)
        logits = ops.matmul(embeddings, ops.cast(self.kernel, "float32"))
        return logits + ops.cast(self.bias, "float32") if self.use_bias else logits

    def get_config(self):
        return {**super().get_config(), "use_bias": self.use_bias}


class MarginHead(Head):
    """Normalised classifier: cosines between L2-normalised embeddings and class centres.

    Subclasses implement `apply_margin(cosine, labels, embeddings, training)` → scaled float32 logits.

    Partial FC: with `sample_rate` r < 1, each training call scores only k = max(⌈r·C⌉, B)
    classes (at most C): the batch's distinct labels in ascending order, then a uniform random
    sample of the others (`seed` seeds it). The margin is applied over those k columns with each
    label moved to its column, so the output is (B, k) and `loss()` knows the mapping. Inference,
    and r = 1, use every class. The centres are `kernel` (D, C) when r = 1 and (C, D), one row
    per class, when r < 1: the sampled rows are gathered along the first axis, whose gradient on
    TensorFlow is an IndexedSlices of those rows alone (see partial_fc.RowSparseSGD).
    """

    def __init__(self, num_classes, s: Scale = 64.0, sample_rate: SampleRate = 1.0, seed: Seed = None, **kwargs):
        super().__init__(num_classes, **kwargs)
        self.s = float(s)
        self.sample_rate = check_sample_rate(sample_rate)
        self.seed = seed
        self.class_axis = 1 if self.sample_rate == 1.0 else 0
        self.seed_generator = keras.random.SeedGenerator(seed) if self.class_axis == 0 else None

    def build(self, input_shape):
        dim = embedding_dim(input_shape)
        init = keras.initializers.RandomNormal(stddev=0.01)
        shape = (dim, self.num_classes) if self.class_axis == 1 else (self.num_classes, dim)
        self.kernel = self.add_weight(name="kernel", shape=shape, initializer=init)

    def cosine(self, embeddings, columns=None):
        """(B, C) float32 cosines clamped to [-1, 1]; (B, k) for the classes `columns` (k,) only."""
        x = ops.normalize(embeddings, axis=1, epsilon=1e-12)
        if self.class_axis == 1:
            w = ops.normalize(ops.cast(self.kernel, "float32"), axis=0, epsilon=1e-12)
            return ops.clip(ops.matmul(x, w), -1.0, 1.0)
        w = self.kernel if columns is None else gather_rows(self.kernel, columns)
        w = ops.normalize(ops.cast(w, "float32"), axis=1, epsilon=1e-12)
        # (k, D)·(D, B) then transposed: with TensorFlow on CPU ~1.7x faster than (B, D)·(k, D)ᵀ, backward included
        return ops.clip(ops.transpose(ops.matmul(w, ops.transpose(x))), -1.0, 1.0)

    def num_sampled(self, batch_size=None):
        """k: how many classes a training step with `batch_size` samples scores."""
        return num_sampled(self.num_classes, self.sample_rate, batch_size) if self.class_axis == 0 else self.num_classes

    def sample_classes(self, labels, batch_size=None):
        """The (k,) classes a training step scores (see partial_fc.sample_classes); draws a new sample."""
        return sample_classes(labels, self.num_classes, self.num_sampled(batch_size), self.seed_generator)

    def call(self, inputs, training=None):
        embeddings, labels = as_float32(*inputs)
        columns = None
        batch = embeddings.shape[0]
        if training and self.num_sampled(batch) < self.num_classes:
            columns = self.sample_classes(labels, batch)
            labels = rank_among_distinct(labels)
        cosine = self.cosine(embeddings, columns)
        return self.apply_margin(cosine, labels, embeddings=embeddings, training=bool(training))

    def apply_margin(self, cosine, labels, embeddings, training):
        raise NotImplementedError

    def loss(self):
        return PartialFCCrossEntropy(self.num_classes) if self.class_axis == 0 else super().loss()

    def get_config(self):
        return {**super().get_config(), "s": self.s, "sample_rate": self.sample_rate, "seed": self.seed}


@keras.saving.register_keras_serializable(package="arcface_keras")
@HEADS.register("arcface")
class ArcFaceHead(MarginHead):
    """ArcFace (Deng et al. 2019): s·cos(θ + m) at the target class, s·cos θ elsewhere.

    Where θ + m > π the insightface fallback s·(cos θ − m·sin(π − m)) keeps the logit monotonic;
    `easy_margin=True` instead applies the margin only where cos θ > 0.
    """

    def __init__(self, num_classes, m: AngularMargin = 0.5, easy_margin: bool = False, **kwargs):
        super().__init__(num_classes, **kwargs)
        self.m = float(m)
        self.easy_margin = bool(easy_margin)

    def apply_margin(self, cosine, labels, embeddings=None, training=False):
        target = target_cosine(cosine, labels)
        if self.easy_margin:
            edited = ops.where(target > 0, cos_plus_margin(target, self.m), target)
        else:
            edited = arc_margin(target, self.m)
        return self.s * replace_target(cosine, labels, edited)

    def get_config(self):
        return {**super().get_config(), "m": self.m, "easy_margin": self.easy_margin}


@keras.saving.register_keras_serializable(package="arcface_keras")
@HEADS.register("cosface")
class CosFaceHead(MarginHead):
    """CosFace (Wang et al. 2018): s·(cos θ − m) at the target class, s·cos θ elsewhere."""

    def __init__(self, num_classes, m: CosineMargin = 0.35, **kwargs):
        super().__init__(num_classes, **kwargs)
        self.m = float(m)

    def apply_margin(self, cosine, labels, embeddings=None, training=False):
        return self.s * replace_target(cosine, labels, target_cosine(cosine, labels) - self.m)

    def get_config(self):
        return {**super().get_config(), "m": self.m}


@keras.saving.register_keras_serializable(package="arcface_keras")
@HEADS.register("combined")
class CombinedMarginHead(MarginHead):
    """Combined margin: s·(cos(m1·θ + m2) − m3) at the target, θ = acos(clip(cos, −1+ε, 1−ε)).

    SphereFace is (m1, 0, 0), ArcFace (1, m, 0) while θ + m ≤ π, CosFace (1, 0, m).
    """

    eps = 1e-7

    def __init__(self, num_classes, m1: AngleFactor = 1.0, m2: AngularMargin = 0.5, m3: CosineMargin = 0.0, **kwargs):
        super().__init__(num_classes, **kwargs)
        self.m1, self.m2, self.m3 = float(m1), float(m2), float(m3)

    def apply_margin(self, cosine, labels, embeddings=None, training=False):
        theta = ops.arccos(ops.clip(target_cosine(cosine, labels), -1.0 + self.eps, 1.0 - self.eps))
        edited = ops.cos(self.m1 * theta + self.m2) - self.m3
        return self.s * replace_target(cosine, labels, edited)

    def get_config(self):
        return {**super().get_config(), "m1": self.m1, "m2": self.m2, "m3": self.m3}


@keras.saving.register_keras_serializable(package="arcface_keras")
@HEADS.register("adaface")
class AdaFaceHead(MarginHead):
    """AdaFace (Kim et al. 2022): a margin that adapts to image quality through the feature norm.

    Following the official implementation: norms ‖x‖ (of the un-normalised embeddings, no gradient)
    clipped to [0.001, 100]; in training their batch mean and (unbiased) std update EMA weights with
    rate `t_alpha` before use; margin_scaler = clip(h·(‖x‖ − mean)/(std + ε), −1, 1); the target
    angle becomes clip(θ − m·margin_scaler, ε, π − ε) and the target cosine loses m + m·margin_scaler.
    Cosines are clamped to [−1 + ε, 1 − ε] first (ε = 1e-3).
    """

    eps = 1e-3

    def __init__(self, num_classes, m: AdaMargin = 0.4, h: Concentration = 0.333, t_alpha: EmaRate = 0.01, **kwargs):
        super().__init__(num_classes, **kwargs)
        self.m, self.h, self.t_alpha = float(m), float(h), float(t_alpha)

    def build(self, input_shape):
        super().build(input_shape)
        constant = keras.initializers.Constant
        self.batch_mean = self.add_weight(name="batch_mean", shape=(), initializer=constant(20.0), trainable=False)
        self.batch_std = self.add_weight(name="batch_std", shape=(), initializer=constant(100.0), trainable=False)

    def norm_statistics(self, norms, training):
        """(mean, std) of feature norms: the EMA weights, updated from this batch in training."""
        if not training:
            return self.batch_mean, self.batch_std
        count = ops.cast(ops.shape(norms)[0], "float32")
        mean = ops.mean(norms)
        std = ops.sqrt(ops.sum(ops.square(norms - mean)) / ops.maximum(count - 1.0, 1.0))
        new_mean = self.t_alpha * mean + (1.0 - self.t_alpha) * self.batch_mean
        new_std = self.t_alpha * std + (1.0 - self.t_alpha) * self.batch_std
        self.batch_mean.assign(new_mean)
        self.batch_std.assign(new_std)
        return new_mean, new_std

    def apply_margin(self, cosine, labels, embeddings, training=False):
        norms = ops.stop_gradient(ops.clip(ops.norm(embeddings, axis=1), 0.001, 100.0))
        mean, std = self.norm_statistics(norms, training)
        margin_scaler = ops.clip(self.h * (norms - mean) / (std + self.eps), -1.0, 1.0)
        cosine = ops.clip(cosine, -1.0 + self.eps, 1.0 - self.eps)
        theta = ops.arccos(target_cosine(cosine, labels))
        theta = ops.clip(theta - self.m * margin_scaler, self.eps, math.pi - self.eps)
        edited = ops.cos(theta) - (self.m + self.m * margin_scaler)
        return self.s * replace_target(cosine, labels, edited)

    def get_config(self):
        return {**super().get_config(), "m": self.m, "h": self.h, "t_alpha": self.t_alpha}


@keras.saving.register_keras_serializable(package="arcface_keras")
@HEADS.register("curricularface")
class CurricularFaceHead(MarginHead):
    """CurricularFace (Huang et al. 2020): ArcFace target plus curriculum-weighted hard negatives.

    The target becomes cos(θ + m) (insightface fallback past π). A non-target cosine above the
    target's cos(θ + m) is a hard negative and becomes cos·(t + cos), where t is an EMA (momentum
    `t_momentum`) of the batch-mean target cosine, updated in training before use.
    """

    def __init__(self, num_classes, m: AngularMargin = 0.5, t_momentum: EmaRate = 0.01, **kwargs):
        super().__init__(num_classes, **kwargs)
        self.m, self.t_momentum = float(m), float(t_momentum)

    def build(self, input_shape):
        super().build(input_shape)
        self.t = self.add_weight(name="t", shape=(), initializer="zeros", trainable=False)

    def apply_margin(self, cosine, labels, embeddings=None, training=False):
        target = target_cosine(cosine, labels)
        cos_theta_m = cos_plus_margin(target, self.m)
        t = self.t
        if training:
            t = self.t_momentum * ops.mean(ops.stop_gradient(target)) + (1.0 - self.t_momentum) * self.t
            self.t.assign(t)
        hard = cosine > cos_theta_m[:, None]
        logits = ops.where(hard, cosine * (t + cosine), cosine)
        return self.s * replace_target(logits, labels, arc_margin(target, self.m))

    def get_config(self):
        return {**super().get_config(), "m": self.m, "t_momentum": self.t_momentum}
