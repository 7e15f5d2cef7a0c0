"""MobileFaceNet (Chen et al. 2018): inverted-residual bottlenecks, PReLU and a GDC embedding layer."""
import numbers
import typing
from typing import Annotated, Literal

import keras
from annotated_types import Ge

from arcface_keras.backbones.layers import (
    EmbeddingSize, InputShape, Padding, Width, batch_norm, channels, check_arguments, conv_bn, gdc_embedding,
    group_count,
)
from arcface_keras.registry import BACKBONES

# One stage per row: a stride-2 bottleneck without shortcut, then residual bottlenecks (how many:
# `blocks[1:]`). (down expansion, out channels, residual expansion), at width 1. In the paper's table:
# (t2, c64, n5, s2), (t4, c128, n1, s2) + (t2, c128, n6, s1), (t4, c128, n1, s2) + (t2, c128, n2, s1).
STAGES = ((128, 64, 128), (256, 128, 256), (512, 128, 256))
# arcface_torch's MobileFaceNet(blocks=...): residual units at the stem (1: one grouped 3x3 conv
# instead, as the paper), then per stage. (1, 4, 6, 2) is the paper's and insightface's "mbf".
BLOCKS = (1, 4, 6, 2)
STEM_CHANNELS = 64
STEM_EXPANSION = 128
HEAD_CHANNELS = 512
REDUCED_CHANNELS = 64
Output = Literal["GDC", "flatten"]
Blocks = tuple[Annotated[int, Ge(1)], Annotated[int, Ge(0)], Annotated[int, Ge(0)], Annotated[int, Ge(0)]]
OUTPUTS, PADDINGS = typing.get_args(Output), typing.get_args(Padding)


def bottleneck(x, expansion, out_channels, strides, name, padding="same"):
    """1x1 expand → 3x3 depthwise → linear 1x1 project; identity shortcut when shapes agree.
    `padding` applies to a strided depthwise conv (a stride-1 3x3 pads alike either way)."""
    y = conv_bn(x, expansion, 1, f"{name}_expand")
    y = conv_bn(y, expansion, 3, f"{name}_dw", strides=strides, groups=expansion,
                padding=padding if strides != 1 else "same")
    y = conv_bn(y, out_channels, 1, f"{name}_project", activation=False)
    if strides == 1 and x.shape[-1] == out_channels:
        y = keras.layers.Add(name=f"{name}_add")([x, y])
    return y


def flatten_embedding(x, embedding_size, reduced_channels):
    """Output "flatten": 1x1 conv to `reduced_channels` → BN → PReLU → flatten → dense (with bias) → BN
    (float32). The dense sees every position, so it fixes the input size."""
    x = conv_bn(x, reduced_channels, 1, "output_reduce")
    x = keras.layers.Flatten(name="output_flatten")(x)
    x = keras.layers.Dense(embedding_size, name="output_dense")(x)
    return batch_norm("embedding", dtype="float32")(x)


def check_options(blocks, padding, output):
    """One-line errors for blocks, padding and output; returns blocks as a tuple."""
    if not (isinstance(blocks, (tuple, list)) and len(blocks) == 4
            and all(isinstance(b, numbers.Integral) and not isinstance(b, bool) and b >= 0 for b in blocks)
            and blocks[0] >= 1):
        raise ValueError(f"mobilefacenet: blocks must be 4 ints (stem >= 1, stages >= 0), got {blocks!r}")
    if padding not in PADDINGS:
        raise ValueError(f"mobilefacenet: padding must be one of {PADDINGS}, got {padding!r}")
    if output not in OUTPUTS:
        raise ValueError(f"mobilefacenet: output must be one of {OUTPUTS}, got {output!r}")
    return tuple(int(b) for b in blocks)


@BACKBONES.register("mobilefacenet")
def mobilefacenet(input_shape: InputShape = (112, 112, 3), embedding_size: EmbeddingSize = 128, width: Width = 1.0,
                  blocks: Blocks = BLOCKS, padding: Padding = "same", output: Output = "GDC"):
    """MobileFaceNet: image (B, H, W, 3) in [-1, 1] → embedding (B, embedding_size).

    `width` multiplies the stem and bottleneck channels (64, 128); the wide channels (depthwise
    expansions 128/256/512, the 512-channel head, the stem's depthwise groups) follow `min(width, 1)`,
    so width 2 with a 512-d embedding is insightface's "mbf" and widths below 1 shrink everything.
    `blocks`: residual units at the stem (1: a grouped 3x3 conv instead) and in each stage, as
    arcface_torch's `blocks` ((2, 8, 12, 4) at width 4 is its "mbf_large"). `padding` of the four
    strided convs: "same" (Keras) or "symmetric" (PyTorch's, needed for weights imported from it).
    `output`: "GDC" (global depthwise conv → BN → dense → BN) or "flatten" (1x1 conv to 64 channels
    at width >= 1 → BN → PReLU → flatten → dense → BN, as insightface's published w600k_mbf).
    """
    input_shape = check_arguments("mobilefacenet", input_shape, embedding_size, width)
    blocks = check_options(blocks, padding, output)
    narrow = lambda c: channels(c, width)  # noqa: E731
    wide = lambda c: channels(c, min(width, 1.0))  # noqa: E731

    inputs = keras.Input(shape=input_shape, name="image")
    stem = narrow(STEM_CHANNELS)
    x = conv_bn(inputs, stem, 3, "stem", strides=2, padding=padding)
    if blocks[0] == 1:
        x = conv_bn(x, stem, 3, "stem_dw", groups=group_count(stem, wide(STEM_CHANNELS)))
    else:
        for unit in range(1, blocks[0] + 1):
            x = bottleneck(x, wide(STEM_EXPANSION), stem, 1, f"stem_unit{unit}")
    for stage, ((down_expansion, out_channels, expansion), repeats) in enumerate(zip(STAGES, blocks[1:]), start=1):
        x = bottleneck(x, wide(down_expansion), narrow(out_channels), 2, f"stage{stage}_down", padding)
        for unit in range(1, repeats + 1):
            x = bottleneck(x, wide(expansion), narrow(out_channels), 1, f"stage{stage}_unit{unit}")
    x = conv_bn(x, wide(HEAD_CHANNELS), 1, "head")
    if output == "GDC":
        outputs = gdc_embedding(x, embedding_size)
    else:
        outputs = flatten_embedding(x, embedding_size, wide(REDUCED_CHANNELS))
    return keras.Model(inputs, outputs, name="mobilefacenet")
