"""A published weights file (arcface_torch .pth state dict or ONNX graph) → a backbone of the same shape.

The architecture (IResNet or MobileFaceNet) is read from the file unless given: a state dict by its
module names, an ONNX graph by its first convolution (IResNet's stem keeps the resolution,
MobileFaceNet's halves it).
"""
from pathlib import Path

from arcface_keras.pretrained import iresnet, mobilefacenet

ARCHITECTURES = {"iresnet": iresnet, "mobilefacenet": mobilefacenet}


def state_dict_architecture(state_dict, source):
    if "conv1.weight" in state_dict:
        return "iresnet"
    if f"{mobilefacenet.STEM}.layers.0.weight" in state_dict:
        return "mobilefacenet"
    raise ValueError(f"{source}: neither conv1.weight (IResNet) nor {mobilefacenet.STEM}.layers.0.weight "
                     "(MobileFaceNet): not an arcface_torch backbone state dict")


def graph_architecture(graph):
    from arcface_keras.pretrained.onnx_graph import attributes

    stem = graph.only_next(graph.input, "Conv")
    return "mobilefacenet" if list(attributes(stem).get("strides", [1, 1])) == [2, 2] else "iresnet"


def read_onnx(path, architecture=None):
    from arcface_keras.pretrained.onnx_graph import OnnxGraph
    from arcface_keras.pretrained.onnx_iresnet import iresnet_state_dict
    from arcface_keras.pretrained.onnx_mobilefacenet import mobilefacenet_state_dict

    graph = OnnxGraph.load(path)
    architecture = architecture or graph_architecture(graph)
    reader = {"iresnet": iresnet_state_dict, "mobilefacenet": mobilefacenet_state_dict}[architecture]
    return architecture, reader(graph)


def read_weights(path, architecture=None):
    """(architecture, {torch name: array}) of a .onnx file or a torch.save'd state dict."""
    path = Path(path)
    if architecture is not None and architecture not in ARCHITECTURES:
        raise ValueError(f"architecture must be one of {sorted(ARCHITECTURES)}, got {architecture!r}")
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such weights file")
    if path.suffix.lower() == ".onnx":
        try:
            import onnx  # noqa: F401
        except ImportError:
            raise ValueError(f"{path}: reading ONNX needs the onnx package (pip install onnx)") from None
        return read_onnx(path, architecture)
    from arcface_keras.pretrained.torch_zip import read_state_dict

    state_dict = read_state_dict(path)
    return architecture or state_dict_architecture(state_dict, path), state_dict


def import_backbone(path, architecture=None, input_size=(112, 112), **expected):
    """(the project's backbone holding the weights of an arcface_torch file, the model.backbone spec that
    builds the same network: padding="symmetric", the file's depth or blocks, width and output).

    `architecture`: "iresnet" or "mobilefacenet" (None: read from the file). `expected`: values the
    caller expects (IResNet: depth, width, embedding_size; MobileFaceNet: blocks, width, output,
    embedding_size); one that differs from the file's is an error.
    """
    architecture, state_dict = read_weights(path, architecture)
    return ARCHITECTURES[architecture].from_state_dict(state_dict, path, input_size, **expected)
