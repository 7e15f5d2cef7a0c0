"""MobileFaceNet (Chen et al. 2018): inverted-residual bottlenecks, PReLU and a GDC embedding layer."""
import keras

from arcface_keras.backbones.layers import (EmbeddingSize, InputShape, Width, channels, check_arguments, conv_bn,
                                           gdc_embedding, group_count)
from arcface_keras.registry import BACKBONES

# One stage per row: a stride-2 bottleneck without shortcut, then `repeats` residual bottlenecks.
# (down expansion, out channels, repeats, residual expansion), at width 1. In the paper's table:
# (t2, c64, n5, s2), (t4, c128, n1, s2) + (t2, c128, n6, s1), (t4, c128, n1, s2) + (t2, c128, n2, s1).
STAGES = ((128, 64, 4, 128), (256, 128, 6, 256), (512, 128, 2, 256))
STEM_CHANNELS = 64
HEAD_CHANNELS = 512


def bottleneck(x, expansion, out_channels, strides, name):
    """1x1 expand → 3x3 depthwise → linear 1x1 project; identity shortcut when shapes agree."""
    y = conv_bn(x, expansion, 1, f"{name}_expand")
    y = conv_bn(y, expansion, 3, f"{name}_dw", strides=strides, groups=expansion)
    y = conv_bn(y, out_channels, 1, f"{name}_project", activation=False)
    if strides == 1 and x.shape[-1] == out_channels:
        y = keras.layers.Add(name=f"{name}_add")([x, y])
    return y


@BACKBONES.register("mobilefacenet")
def mobilefacenet(input_shape: InputShape = (112, 112, 3), embedding_size: EmbeddingSize = 128, width: Width = 1.0):
    """MobileFaceNet: image (B, H, W, 3) in [-1, 1] → embedding (B, embedding_size).

    `width` multiplies the stem and bottleneck channels (64, 128); the wide channels (depthwise
    expansions 128/256/512, the 512-channel head, the stem's depthwise groups) follow `min(width, 1)`,
    so width 2 with a 512-d embedding is insightface's "mbf" and widths below 1 shrink everything.
    """
    input_shape = check_arguments("mobilefacenet", input_shape, embedding_size, width)
    narrow = lambda c: channels(c, width)  # noqa: E731
    wide = lambda c: channels(c, min(width, 1.0))  # noqa: E731

    inputs = keras.Input(shape=input_shape, name="image")
    stem = narrow(STEM_CHANNELS)
    x = conv_bn(inputs, stem, 3, "stem", strides=2)
    x = conv_bn(x, stem, 3, "stem_dw", groups=group_count(stem, wide(STEM_CHANNELS)))
    for stage, (down_expansion, out_channels, repeats, expansion) in enumerate(STAGES, start=1):
        x = bottleneck(x, wide(down_expansion), narrow(out_channels), 2, f"stage{stage}_down")
        for unit in range(1, repeats + 1):
            x = bottleneck(x, wide(expansion), narrow(out_channels), 1, f"stage{stage}_unit{unit}")
    x = conv_bn(x, wide(HEAD_CHANNELS), 1, "head")
    outputs = gdc_embedding(x, embedding_size)
    return keras.Model(inputs, outputs, name="mobilefacenet")
