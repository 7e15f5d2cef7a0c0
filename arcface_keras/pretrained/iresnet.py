"""arcface_torch IResNet state dict ({torch name: array}) → the project's IResNet of the same shape.

arcface_torch's IResNet and `backbones/resnet.py` are the same network (stem conv-BN-PReLU; IR blocks
BN → conv → BN → PReLU → strided conv → BN plus a 1x1 conv-BN shortcut; BN → flatten → fc → BN),
with one difference: PyTorch pads a strided 3x3 conv with one zero on every side where Keras'
"same" pads only the bottom/right, so imported weights need `padding="symmetric"`, which
`from_state_dict` sets. Depth, width and embedding size are read from the state dict; a value asked
for that differs, a missing key, an unexpected key or a wrong shape fails naming it.
"""
from arcface_keras.backbones.resnet import DEPTHS, STAGE_CHANNELS
from arcface_keras.pretrained.state_dict import assign, check_expected


def keras_to_torch_names(depth):
    """[(keras layer name, torch module name)] of IResNet-`depth`."""
    names = [("stem_conv", "conv1"), ("stem_bn", "bn1"), ("stem_prelu", "prelu")]
    for stage, units in enumerate(DEPTHS[depth], start=1):
        for unit in range(units):
            keras_unit, torch_unit = f"stage{stage}_unit{unit + 1}", f"layer{stage}.{unit}"
            names += [
                (f"{keras_unit}_bn1", f"{torch_unit}.bn1"), (f"{keras_unit}_1_conv", f"{torch_unit}.conv1"),
                (f"{keras_unit}_1_bn", f"{torch_unit}.bn2"), (f"{keras_unit}_1_prelu", f"{torch_unit}.prelu"),
                (f"{keras_unit}_2_conv", f"{torch_unit}.conv2"), (f"{keras_unit}_2_bn", f"{torch_unit}.bn3"),
            ]
            if unit == 0:
                names += [(f"{keras_unit}_shortcut_conv", f"{torch_unit}.downsample.0"),
                          (f"{keras_unit}_shortcut_bn", f"{torch_unit}.downsample.1")]
    return names + [("output_bn", "bn2"), ("output_dense", "fc"), ("embedding", "features")]


def describe(state_dict, source):
    """{depth, width, embedding_size} of an arcface_torch IResNet state dict."""
    for key in ("conv1.weight", "fc.weight"):
        if key not in state_dict:
            raise ValueError(f"{source}: missing key {key!r}: not an arcface_torch IResNet state dict")
    units = tuple(
        len({k.split(".")[1] for k in state_dict if k.startswith(f"layer{stage}.")}) for stage in range(1, 5)
    )
    depths = {v: k for k, v in DEPTHS.items()}
    if units not in depths:
        raise ValueError(f"{source}: blocks per stage {units} match no IResNet depth ({DEPTHS})")
    width = state_dict["conv1.weight"].shape[0] / STAGE_CHANNELS[0]
    return {"depth": depths[units], "width": width, "embedding_size": int(state_dict["fc.weight"].shape[0])}


def from_state_dict(state_dict, source, input_size=(112, 112), **expected):
    """(the project's IResNet holding `state_dict`, its model.backbone spec); `expected` (depth, width,
    embedding_size) makes a differing value an error."""
    from arcface_keras.backbones.resnet import iresnet

    found = describe(state_dict, source)
    check_expected(found, expected, source, "IResNet")
    spec = {"type": f"resnet{found['depth']}", "width": found["width"], "padding": "symmetric"}
    model = iresnet(found["depth"], (*input_size, 3), found["embedding_size"], width=found["width"],
                    padding="symmetric")
    assign(model, state_dict, keras_to_torch_names(found["depth"]), source, "IResNet")
    return model, spec
