"""IResNet (the ArcFace paper's "IR" ResNets, as insightface's arcface_torch builds them)."""
import typing
from typing import Annotated, Literal

import keras
from annotated_types import Interval, doc

from arcface_keras.backbones.layers import (
    CONV_INIT, EmbeddingSize, InputShape, Padding, Width, batch_norm, channels, check_arguments, conv_bn, gdc_embedding,
    prelu,
)
from arcface_keras.registry import BACKBONES

STAGE_CHANNELS = (64, 128, 256, 512)
DEPTHS = {18: (2, 2, 2, 2), 34: (3, 4, 6, 3), 50: (3, 4, 14, 3), 100: (3, 13, 30, 3)}
Output = Literal["E", "GDC"]
OUTPUTS, PADDINGS = typing.get_args(Output), typing.get_args(Padding)
Dropout = Annotated[float, Interval(ge=0, lt=1), doc("the fraction of units dropped")]
SE_REDUCTION = 16


def squeeze_excite(x, name):
    """Channel gates: global average → 1x1 conv (C/16) → PReLU → 1x1 conv (C) → sigmoid → scale."""
    filters = x.shape[-1]
    gate = keras.layers.GlobalAveragePooling2D(keepdims=True, name=f"{name}_pool")(x)
    gate = keras.layers.Conv2D(max(1, filters // SE_REDUCTION), 1, kernel_initializer=CONV_INIT,
                               name=f"{name}_reduce")(gate)
    gate = prelu(f"{name}_prelu")(gate)
    gate = keras.layers.Conv2D(filters, 1, activation="sigmoid", name=f"{name}_expand")(gate)
    return keras.layers.Multiply(name=f"{name}_scale")([x, gate])


def ir_unit(x, filters, strides, se, name, padding="same"):
    """BN → conv3x3 → BN → PReLU → conv3x3 (strided) → BN (→ SE), plus the shortcut.

    `padding` only matters for the strided conv: "same" (Keras) or "symmetric" (PyTorch, one zero
    pixel on every side); stride-1 3x3 and 1x1 convs pad alike either way."""
    y = batch_norm(f"{name}_bn1")(x)
    y = conv_bn(y, filters, 3, f"{name}_1")
    y = conv_bn(y, filters, 3, f"{name}_2", strides=strides, activation=False,
                padding=padding if strides != 1 else "same")
    if se:
        y = squeeze_excite(y, f"{name}_se")
    shortcut = x
    if strides != 1 or x.shape[-1] != filters:
        shortcut = conv_bn(x, filters, 1, f"{name}_shortcut", strides=strides, activation=False)
    return keras.layers.Add(name=f"{name}_add")([shortcut, y])


def e_embedding(x, embedding_size, dropout):
    """Output layer "E": BN → dropout → flatten → dense → BN (float32)."""
    x = batch_norm("output_bn")(x)
    x = keras.layers.Dropout(dropout, name="output_dropout")(x)
    x = keras.layers.Flatten(name="output_flatten")(x)
    x = keras.layers.Dense(embedding_size, name="output_dense")(x)
    return batch_norm("embedding", dtype="float32")(x)


def iresnet(depth, input_shape=(112, 112, 3), embedding_size=512, dropout=0.0, se=False, output="E", width=1.0,
            padding="same"):
    """IResNet-`depth`: image (B, H, W, 3) in [-1, 1] → embedding (B, embedding_size).

    Four stages of IR units, each halving the resolution (112 → 7). `width` scales the
    64/128/256/512 channels; `se` adds squeeze-excitation to every unit; `output` is "E"
    (BN-dropout-flatten-dense-BN) or "GDC" (global depthwise conv, then dense-BN, no dropout).
    `padding` of the four strided convs: "same" (Keras' default, the odd pixel at the bottom/right)
    or "symmetric" (PyTorch's, as arcface_torch: needed for weights imported from it).
    """
    name = f"resnet{depth}"
    if depth not in DEPTHS:
        raise ValueError(f"IResNet depth must be one of {sorted(DEPTHS)}, got {depth!r}")
    input_shape = check_arguments(name, input_shape, embedding_size, width)
    if output not in OUTPUTS:
        raise ValueError(f"{name}: output must be one of {OUTPUTS}, got {output!r}")
    if padding not in PADDINGS:
        raise ValueError(f"{name}: padding must be one of {PADDINGS}, got {padding!r}")
    if not 0.0 <= dropout < 1.0:
        raise ValueError(f"{name}: dropout must be in [0, 1), got {dropout!r}")
    try:
        dropout_needs_output_e({"dropout": dropout, "output": output})
    except ValueError as exc:
        raise ValueError(f"{name}: {exc}") from None

    inputs = keras.Input(shape=input_shape, name="image")
    x = conv_bn(inputs, channels(STAGE_CHANNELS[0], width), 3, "stem")
    for stage, (filters, units) in enumerate(zip(STAGE_CHANNELS, DEPTHS[depth]), start=1):
        for unit in range(1, units + 1):
            strides = 2 if unit == 1 else 1
            x = ir_unit(x, channels(filters, width), strides, se, f"stage{stage}_unit{unit}", padding)
    if output == "E":
        outputs = e_embedding(x, embedding_size, dropout)
    else:
        outputs = gdc_embedding(x, embedding_size)
    return keras.Model(inputs, outputs, name=name)


def dropout_needs_output_e(keywords, experiment=None):
    """Dropout is a layer of output "E" only: "GDC" has none, so a dropout there would do nothing."""
    if keywords["dropout"] and keywords["output"] != "E":
        raise ValueError(f"got dropout={keywords['dropout']!r} with output={keywords['output']!r}: expected "
                         "dropout=0 with output 'GDC' (it has no dropout layer), or output 'E'")


def _register(depth):
    def build(input_shape: InputShape = (112, 112, 3), embedding_size: EmbeddingSize = 512, dropout: Dropout = 0.0,
              se: bool = False, output: Output = "E", width: Width = 1.0, padding: Padding = "same"):
        return iresnet(depth, input_shape, embedding_size, dropout, se, output, width, padding)

    build.__name__ = build.__qualname__ = f"resnet{depth}"
    build.__doc__ = f"IResNet-{depth}; see `iresnet`."
    return BACKBONES.register(f"resnet{depth}", check=dropout_needs_output_e)(build)


resnet18, resnet34, resnet50, resnet100 = (_register(depth) for depth in DEPTHS)
