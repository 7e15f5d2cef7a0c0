"""Building blocks shared by the backbones: a fused batch norm, a fast grouped conv and the conv/BN/PReLU helpers."""
import math
import numbers
from typing import Annotated, Literal

import keras
from annotated_types import Ge, Gt, doc
from keras import ops

# The keywords every backbone takes (their ranges are checked when an experiment loads, see registry.py).
InputShape = tuple[int, int, int]  # (height, width, channels)
EmbeddingSize = Annotated[int, Ge(1)]
Width = Annotated[float, Gt(0), doc("a multiplier of the channels")]
Padding = Literal["same", "symmetric"]  # of the strided convs: Keras' or PyTorch's (see conv_bn)

# PyTorch's defaults (momentum 0.1 of the new batch, eps 1e-5), as insightface trains its models.
BN_MOMENTUM = 0.9
BN_EPSILON = 1e-5
PRELU_INIT = 0.25
CONV_INIT = "he_normal"

_FUSABLE_DTYPES = ("float16", "bfloat16", "float32")


@keras.saving.register_keras_serializable(package="arcface_keras")
class FastBatchNormalization(keras.layers.BatchNormalization):
    """BatchNormalization that runs TensorFlow's fused kernel for 4-D channels-last inputs.

    Same weights, config, outputs and moving-statistics updates as `keras.layers.BatchNormalization`.
    On the TensorFlow backend a (B, H, W, C) input goes through one `FusedBatchNormV3` op (and its
    fused gradient) instead of the mean/variance/rsqrt graph Keras 3 emits; any other backend,
    rank, mask, renorm or synchronized setting uses the parent's call.
    """

    def call(self, inputs, training=None, mask=None):
        if not self._fusable(inputs, mask):
            return super().call(inputs, training=training, mask=mask)
        import tensorflow as tf

        gamma = self.gamma if self.scale else tf.ones(self.moving_mean.shape)
        beta = self.beta if self.center else tf.zeros(self.moving_mean.shape)
        if training and self.trainable:
            outputs, mean, variance, *_ = tf.raw_ops.FusedBatchNormV3(
                x=inputs, scale=gamma, offset=beta, mean=tf.constant([]), variance=tf.constant([]),
                epsilon=self.epsilon, is_training=True,
            )
            # The kernel reports the unbiased batch variance; Keras tracks the biased one.
            count = tf.cast(tf.size(inputs) // tf.shape(inputs)[-1], variance.dtype)
            variance = variance * (count - 1.0) / count
            self.moving_mean.assign(self.moving_mean * self.momentum + mean * (1.0 - self.momentum))
            self.moving_variance.assign(
                self.moving_variance * self.momentum + variance * (1.0 - self.momentum)
            )
        else:
            outputs, *_ = tf.raw_ops.FusedBatchNormV3(
                x=inputs, scale=gamma, offset=beta, mean=self.moving_mean, variance=self.moving_variance,
                epsilon=self.epsilon, is_training=False,
            )
        return ops.cast(outputs, self.compute_dtype)

    def _fusable(self, inputs, mask):
        return (
            keras.backend.backend() == "tensorflow"
            and len(inputs.shape) == 4
            and self.axis % 4 == 3
            and mask is None
            and not self.renorm
            and not self.synchronized
            and keras.backend.standardize_dtype(inputs.dtype) in _FUSABLE_DTYPES
        )


@keras.saving.register_keras_serializable(package="arcface_keras")
class GroupedConv2D(keras.layers.Conv2D):
    """Conv2D with groups that are not depthwise, computed as a depthwise convolution and a sum per group.

    Same kernel (kh, kw, in/groups, filters), config and outputs (up to the order of a sum) as
    `keras.layers.Conv2D`, on every backend. TensorFlow's CPU kernel for such a convolution is the slow
    path: a training step of one 3x3 layer, 128 channels in 64 groups (MobileFaceNet's stem at width 2),
    batch 32 at 56x56, took 148 s, where the depthwise form takes well under a second.
    """

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        if self.data_format != "channels_last":
            raise ValueError(f"{self.name}: GroupedConv2D needs channels_last, got {self.data_format!r}")

    def convolution_op(self, inputs, kernel):
        height, width, group_in, filters = kernel.shape
        group_out = filters // self.groups
        # input channel g*group_in + i feeds outputs g*group_out + j: one depthwise filter per (i, j)
        kernel = ops.reshape(kernel, (height, width, group_in, self.groups, group_out))
        kernel = ops.reshape(ops.transpose(kernel, (0, 1, 3, 2, 4)), (height, width, self.groups * group_in, group_out))
        y = ops.depthwise_conv(inputs, kernel, strides=self.strides, padding=self.padding,
                               dilation_rate=self.dilation_rate, data_format=self.data_format)
        _, rows, columns, _ = ops.shape(y)
        y = ops.reshape(y, (-1, rows, columns, self.groups, group_in, group_out))
        return ops.reshape(ops.sum(y, axis=4), (-1, rows, columns, filters))


def channels(base, width):
    """`base` channels scaled by `width`, at least one."""
    return max(1, int(round(base * width)))


def batch_norm(name, **kwargs):
    """FastBatchNormalization with PyTorch's momentum and epsilon."""
    return FastBatchNormalization(momentum=BN_MOMENTUM, epsilon=BN_EPSILON, name=name, **kwargs)


def prelu(name):
    """PReLU with one slope per channel."""
    return keras.layers.PReLU(
        alpha_initializer=keras.initializers.Constant(PRELU_INIT), shared_axes=[1, 2], name=name
    )


def conv(filters, kernel_size, name, strides=1, groups=1, padding="same"):
    """Bias-free convolution (a batch norm always follows); `groups=filters` means depthwise."""
    if groups == filters and groups > 1:
        return keras.layers.DepthwiseConv2D(
            kernel_size, strides=strides, padding=padding, use_bias=False,
            depthwise_initializer=CONV_INIT, name=name,
        )
    layer = GroupedConv2D if groups > 1 else keras.layers.Conv2D
    return layer(
        filters, kernel_size, strides=strides, padding=padding, groups=groups, use_bias=False,
        kernel_initializer=CONV_INIT, name=name,
    )


def conv_bn(x, filters, kernel_size, name, strides=1, groups=1, activation=True, padding="same"):
    """conv → BN (→ PReLU when `activation`). `padding="symmetric"` pads (k - 1) / 2 zeros on every
    side, as PyTorch does, where Keras' "same" puts the odd pixel of a strided conv at the bottom/right."""
    if padding == "symmetric":
        x = keras.layers.ZeroPadding2D((kernel_size - 1) // 2, name=f"{name}_pad")(x)
        padding = "valid"
    x = conv(filters, kernel_size, f"{name}_conv", strides=strides, groups=groups, padding=padding)(x)
    x = batch_norm(f"{name}_bn")(x)
    return prelu(f"{name}_prelu")(x) if activation else x


def gdc_embedding(x, embedding_size, name="gdc"):
    """Global depthwise convolution output: linear depthwise conv over the whole map → BN → flatten →
    bias-free dense → BN (float32). The kernel is the feature map's own size, so any input size works."""
    height, width = x.shape[1], x.shape[2]
    if height is None or width is None:
        raise ValueError(f"GDC output needs a static input size, got feature map {tuple(x.shape)}")
    x = keras.layers.DepthwiseConv2D(
        (height, width), padding="valid", use_bias=False, depthwise_initializer=CONV_INIT,
        name=f"{name}_dwconv",
    )(x)
    x = batch_norm(f"{name}_bn")(x)
    x = keras.layers.Flatten(name=f"{name}_flatten")(x)
    x = keras.layers.Dense(embedding_size, use_bias=False, name=f"{name}_dense")(x)
    return batch_norm("embedding", dtype="float32")(x)


def check_arguments(backbone, input_shape, embedding_size, width):
    """One-line errors for a non-static (H, W, C) input shape or a non-positive size; returns the shape."""
    shape_ok = isinstance(input_shape, (tuple, list)) and len(input_shape) == 3
    if not shape_ok or not all(isinstance(d, numbers.Integral) and d > 0 for d in input_shape):
        raise ValueError(f"{backbone}: input_shape must be (height, width, channels) ints, got {input_shape!r}")
    if not (isinstance(embedding_size, numbers.Integral) and embedding_size > 0):
        raise ValueError(f"{backbone}: embedding_size must be a positive int, got {embedding_size!r}")
    if not (isinstance(width, numbers.Real) and width > 0):
        raise ValueError(f"{backbone}: width must be a positive number, got {width!r}")
    return tuple(int(d) for d in input_shape)


def group_count(filters, groups):
    """A group count that divides `filters`: `groups` itself when it can, else their greatest common divisor."""
    return math.gcd(filters, groups)
