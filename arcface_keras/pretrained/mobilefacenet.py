"""arcface_torch MobileFaceNet ("mbf") state dict ({torch name: array}) → the project's MobileFaceNet.

arcface_torch's `MobileFaceNet(fp16, num_features, blocks, scale)` is `backbones/mobilefacenet.py`
with `width=scale` and the same `blocks`: `layers.0` the stem conv block (conv, BN, PReLU), `layers.1`
the stem's grouped conv block (blocks[0] == 1) or its residual units, then per stage a downsampling
`DepthWise` (`layers.2/4/6`: expand conv block, depthwise conv block, linear conv-BN) and a
`Residual` of such units (`layers.3/5/7.layers.N`), `conv_sep`, and the GDC output `features`
(depthwise conv-BN, flatten, bias-free linear, BN). insightface's published w600k_mbf ends instead
with a 1x1 conv block to 64 channels, flatten, `fc` (with bias) and the BN `features`; its reduction
conv has no name in the ONNX file and is `conv_reduce` here. As for IResNet, PyTorch pads the
strided convs symmetrically: the model is built with padding="symmetric". Blocks, width, output
and embedding size are read from the state dict; a value asked for that differs, a missing or
unexpected key or a wrong shape fails naming it.
"""
from arcface_keras.backbones.mobilefacenet import STEM_CHANNELS
from arcface_keras.pretrained.state_dict import assign, check_expected

NETWORK = "MobileFaceNet"
STEM, CONV_SEP = "layers.0", "conv_sep"


def _conv_block(keras_name, torch_name, activation=True):
    names = [(f"{keras_name}_conv", f"{torch_name}.layers.0"), (f"{keras_name}_bn", f"{torch_name}.layers.1")]
    return names + [(f"{keras_name}_prelu", f"{torch_name}.layers.2")] if activation else names


def _depthwise(keras_name, torch_name):
    """arcface_torch's DepthWise unit: expand, depthwise, linear projection."""
    return (_conv_block(f"{keras_name}_expand", f"{torch_name}.layers.0")
            + _conv_block(f"{keras_name}_dw", f"{torch_name}.layers.1")
            + _conv_block(f"{keras_name}_project", f"{torch_name}.layers.2", activation=False))


def keras_to_torch_names(blocks, output):
    """[(keras layer name, torch module name)] of a MobileFaceNet with these `blocks` and `output`."""
    names = _conv_block("stem", STEM)
    if blocks[0] == 1:
        names += _conv_block("stem_dw", "layers.1")
    else:
        for unit in range(blocks[0]):
            names += _depthwise(f"stem_unit{unit + 1}", f"layers.1.layers.{unit}")
    for stage, repeats in enumerate(blocks[1:], start=1):
        names += _depthwise(f"stage{stage}_down", f"layers.{2 * stage}")
        for unit in range(repeats):
            names += _depthwise(f"stage{stage}_unit{unit + 1}", f"layers.{2 * stage + 1}.layers.{unit}")
    names += _conv_block("head", CONV_SEP)
    if output == "GDC":
        return names + [("gdc_dwconv", "features.layers.0.layers.0"), ("gdc_bn", "features.layers.0.layers.1"),
                        ("gdc_dense", "features.layers.2"), ("embedding", "features.layers.3")]
    return names + _conv_block("output_reduce", "conv_reduce") + [("output_dense", "fc"), ("embedding", "features")]


def _units(state_dict, module):
    """How many units the Residual `module` holds (0 when it has none)."""
    return len({key.split(".")[3] for key in state_dict if key.startswith(f"{module}.layers.")})


def describe(state_dict, source):
    """{blocks, width, output, embedding_size} of an arcface_torch MobileFaceNet state dict."""
    for key in (f"{STEM}.layers.0.weight", f"{CONV_SEP}.layers.0.weight"):
        if key not in state_dict:
            raise ValueError(f"{source}: missing key {key!r}: not an arcface_torch MobileFaceNet state dict")
    stem_units = 1 if "layers.1.layers.0.weight" in state_dict else _units(state_dict, "layers.1")
    if not stem_units:
        raise ValueError(f"{source}: missing key 'layers.1.layers.0.weight' (the stem's grouped conv) "
                         "or its residual units")
    blocks = (stem_units, *(_units(state_dict, f"layers.{2 * stage + 1}") for stage in (1, 2, 3)))
    if "features.layers.2.weight" in state_dict:
        output, dense = "GDC", state_dict["features.layers.2.weight"]
    elif "fc.weight" in state_dict:
        output, dense = "flatten", state_dict["fc.weight"]
    else:
        raise ValueError(f"{source}: neither features.layers.2.weight (GDC output) nor fc.weight (flatten output)")
    width = state_dict[f"{STEM}.layers.0.weight"].shape[0] / STEM_CHANNELS
    return {"blocks": blocks, "width": width, "output": output, "embedding_size": int(dense.shape[0])}


def from_state_dict(state_dict, source, input_size=(112, 112), **expected):
    """(the project's MobileFaceNet holding `state_dict`, its model.backbone spec); `expected` (blocks,
    width, output, embedding_size) makes a differing value an error."""
    from arcface_keras.backbones.mobilefacenet import mobilefacenet

    found = describe(state_dict, source)
    check_expected(found, expected, source, NETWORK)
    spec = {"type": "mobilefacenet", "width": found["width"], "blocks": list(found["blocks"]),
            "padding": "symmetric", "output": found["output"]}
    model = mobilefacenet((*input_size, 3), found["embedding_size"], **{k: v for k, v in spec.items() if k != "type"})
    assign(model, state_dict, keras_to_torch_names(found["blocks"], found["output"]), source, NETWORK)
    return model, spec
