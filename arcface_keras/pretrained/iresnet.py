"""arcface_torch IResNet state dict ({torch name: array}) → the project's IResNet of the same shape.

arcface_torch's IResNet and `backbones/resnet.py` are the same network (stem conv-BN-PReLU; IR blocks
BN → conv → BN → PReLU → strided conv → BN plus a 1x1 conv-BN shortcut; BN → flatten → fc → BN),
with one difference: PyTorch pads a strided 3x3 conv with one zero on every side where Keras'
"same" pads only the bottom/right, so imported weights need `padding="symmetric"`, which
`build_imported` sets. Depth, width and embedding size are read from the state dict; a value asked
for that differs, a missing key, an unexpected key or a wrong shape fails naming it.
"""
import numpy as np

from arcface_keras.backbones.resnet import DEPTHS, STAGE_CHANNELS

IGNORED_SUFFIXES = ("num_batches_tracked",)


def keras_to_torch_names(depth):
    """[(keras layer name, torch module name, kind)] of IResNet-`depth`; kind is conv, bn, prelu or fc."""
    names = [("stem_conv", "conv1", "conv"), ("stem_bn", "bn1", "bn"), ("stem_prelu", "prelu", "prelu")]
    for stage, units in enumerate(DEPTHS[depth], start=1):
        for unit in range(units):
            keras_unit, torch_unit = f"stage{stage}_unit{unit + 1}", f"layer{stage}.{unit}"
            names += [
                (f"{keras_unit}_bn1", f"{torch_unit}.bn1", "bn"), (f"{keras_unit}_1_conv", f"{torch_unit}.conv1", "conv"),
                (f"{keras_unit}_1_bn", f"{torch_unit}.bn2", "bn"), (f"{keras_unit}_1_prelu", f"{torch_unit}.prelu", "prelu"),
                (f"{keras_unit}_2_conv", f"{torch_unit}.conv2", "conv"), (f"{keras_unit}_2_bn", f"{torch_unit}.bn3", "bn"),
            ]
            if unit == 0:
                names += [(f"{keras_unit}_shortcut_conv", f"{torch_unit}.downsample.0", "conv"),
                          (f"{keras_unit}_shortcut_bn", f"{torch_unit}.downsample.1", "bn")]
    return names + [("output_bn", "bn2", "bn"), ("output_dense", "fc", "fc"), ("embedding", "features", "bn")]


def describe(state_dict, source):
    """(depth, width, embedding_size) of an arcface_torch IResNet state dict."""
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
    return depths[units], width, int(state_dict["fc.weight"].shape[0])


def check_expected(found, expected, source):
    """One line naming the first of depth/width/embedding_size that differs from what was asked for."""
    for name, have, want in zip(("depth", "width", "embedding_size"), found, expected):
        if want is not None and have != want:
            raise ValueError(f"{source}: {name} is {have:g} in the weights, {want:g} was asked for")


def _keras_weights(kind, tensors, layer, torch_name, model):
    if kind == "conv":
        return [tensors["weight"].transpose(2, 3, 1, 0)]  # (out, in, kh, kw) → (kh, kw, in, out)
    if kind == "bn":
        return [tensors[k] for k in ("weight", "bias", "running_mean", "running_var")]
    if kind == "prelu":
        return [tensors["weight"].reshape(layer.get_weights()[0].shape)]
    # fc: torch flattens (C, H, W), Keras (H, W, C): reorder the input rows to match.
    height, width, chans = model.get_layer("output_flatten").input.shape[1:]
    weight = tensors["weight"]
    if weight.shape[1] != height * width * chans:
        raise ValueError(f"{torch_name}.weight takes {weight.shape[1]} inputs; this input size gives "
                         f"{chans}x{height}x{width} = {chans * height * width} (arcface_torch's fc expects 112x112 images)")
    kernel = weight.reshape(-1, chans, height, width).transpose(2, 3, 1, 0).reshape(height * width * chans, -1)
    return [kernel, tensors["bias"]]


def load_into(model, state_dict, depth, source):
    """Assign `state_dict` to the IResNet `model` (built with padding="symmetric"), checking every key and shape."""
    used = set()
    for keras_name, torch_name, kind in keras_to_torch_names(depth):
        layer = model.get_layer(keras_name)
        keys = ("weight",) if kind in ("conv", "prelu") else ("weight", "bias") if kind == "fc" else (
            "weight", "bias", "running_mean", "running_var")
        tensors = {}
        for key in keys:
            full = f"{torch_name}.{key}"
            if full not in state_dict:
                raise ValueError(f"{source}: missing key {full!r}")
            tensors[key] = np.asarray(state_dict[full], np.float32)
            used.add(full)
        weights = _keras_weights(kind, tensors, layer, torch_name, model)
        for index, (have, want) in enumerate(zip(weights, layer.get_weights())):
            if have.shape != want.shape:
                raise ValueError(f"{source}: {torch_name}.{keys[min(index, len(keys) - 1)]} has shape "
                                 f"{tensors[keys[min(index, len(keys) - 1)]].shape}, layer {keras_name} needs {want.shape}")
        layer.set_weights(weights)
    unexpected = sorted(k for k in state_dict if k not in used and not k.endswith(IGNORED_SUFFIXES))
    if unexpected:
        raise ValueError(f"{source}: unexpected key {unexpected[0]!r} ({len(unexpected)} in all): not a plain IResNet")


def read_weights(path):
    """{torch name: array} of an arcface_torch IResNet: a .onnx file or a torch.save'd state dict."""
    from pathlib import Path

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such weights file")
    if path.suffix.lower() == ".onnx":
        try:
            import onnx  # noqa: F401
        except ImportError:
            raise ValueError(f"{path}: reading ONNX needs the onnx package (pip install onnx)") from None
        from arcface_keras.pretrained.onnx_iresnet import read_onnx_state_dict

        return read_onnx_state_dict(path)
    from arcface_keras.pretrained.torch_zip import read_state_dict

    return read_state_dict(path)


def import_iresnet(path, input_size=(112, 112), depth=None, width=None, embedding_size=None):
    """The project's IResNet (padding="symmetric") holding the weights of an arcface_torch file.

    `depth`, `width`, `embedding_size`: what the caller expects (None: whatever the file holds).
    """
    from arcface_keras.backbones.resnet import iresnet

    state_dict = read_weights(path)
    found = describe(state_dict, path)
    check_expected(found, (depth, width, embedding_size), path)
    model = iresnet(found[0], (*input_size, 3), found[2], width=found[1], padding="symmetric")
    load_into(model, state_dict, found[0], path)
    return model
