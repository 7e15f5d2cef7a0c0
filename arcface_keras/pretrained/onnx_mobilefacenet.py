"""An arcface_torch MobileFaceNet ("mbf") ONNX graph read back into its state dict ({torch name: array}).

From the input it follows the stem conv block (stride 2), the stem's grouped conv block or its
residual units, three stages of a stride-2 DepthWise unit (1x1 conv block → depthwise 3x3 conv
block → 1x1 conv → [BN]) and residual units (the same at stride 1, added to their input), `conv_sep`,
then either the GDC output (depthwise conv over the whole map → [BN] → flatten → Gemm → [BN]) or
insightface's published one (1x1 conv block → flatten → Gemm with bias → [BN]). A conv block is
conv → [BN] → PReLU (see onnx_graph for folded batch norms). Any other node fails naming it.
"""
import numpy as np

from arcface_keras.pretrained.onnx_graph import attributes, conv_bn, dense, final_batch_norm, prelu

NETWORK = "MobileFaceNet"


def _conv_block(graph, node, name, weights, activation=True, strides=1, pad=None):
    """conv → [BN] (→ PReLU): `name`.layers.0/1(/2), checking the conv's strides."""
    found = list(attributes(node).get("strides", [1, 1]))
    if found != [strides] * 2:
        raise ValueError(f"{graph.source}: Conv {node.name!r} has strides {found}, expected {[strides] * 2} "
                         f"for {name} of an arcface_torch {NETWORK}")
    tensor = conv_bn(graph, node, f"{name}.layers.0", f"{name}.layers.1", weights, NETWORK, pad)
    return prelu(graph, tensor, f"{name}.layers.2", weights) if activation else tensor


def _is_residual(graph, tensor):
    return any(node.op_type == "Add" for node in graph.next_nodes(tensor))


def _unit(graph, tensor, name, weights, residual):
    """A DepthWise unit reading `tensor` (stride 1 and added to it when `residual`, else stride 2)."""
    convs = [node for node in graph.next_nodes(tensor) if node.op_type == "Conv"]
    if len(convs) != 1:
        raise ValueError(f"{graph.source}: tensor {tensor!r} feeds {len(convs)} Conv nodes, a DepthWise unit one")
    y = _conv_block(graph, convs[0], f"{name}.layers.0", weights)
    y = _conv_block(graph, graph.only_next(y, "Conv"), f"{name}.layers.1", weights, strides=1 if residual else 2)
    y = _conv_block(graph, graph.only_next(y, "Conv"), f"{name}.layers.2", weights, activation=False)
    if not residual:
        return y
    add = graph.only_next(y, "Add")
    if tensor not in add.input:
        raise ValueError(f"{graph.source}: Add {add.name!r} does not add the unit's input {tensor!r}")
    return add.output[0]


def _residual_units(graph, tensor, module, weights):
    unit = 0
    while _is_residual(graph, tensor):
        tensor = _unit(graph, tensor, f"{module}.layers.{unit}", weights, residual=True)
        unit += 1
    return tensor


def _gdc_output(graph, node, weights):
    """GDC: depthwise conv over the whole map → [BN] → flatten → bias-free Gemm → [BN] (a folded
    BN leaves its shift as the Gemm's bias, which becomes the final BN's shift)."""
    tensor = _conv_block(graph, node, "features.layers.0", weights, activation=False, pad=0)
    tensor, has_bias = dense(graph, tensor, "features.layers.2", weights)
    shift = weights.pop("features.layers.2.bias")
    following = graph.next_nodes(tensor)
    if has_bias and following and following[0].op_type == "BatchNormalization":
        raise ValueError(f"{graph.source}: the GDC's Gemm has a bias and a BN follows; arcface_torch's linear has no bias")
    final_batch_norm(graph, tensor, "features.layers.3", weights, shift)


def _flatten_output(graph, node, weights):
    """insightface's published head: 1x1 conv block → flatten → Gemm (with bias) → [BN]."""
    tensor = _conv_block(graph, node, "conv_reduce", weights)
    tensor, _ = dense(graph, tensor, "fc", weights)
    final_batch_norm(graph, tensor, "features", weights, np.zeros(weights["fc.bias"].shape, np.float32))


def mobilefacenet_state_dict(graph):
    """{arcface_torch name: numpy array} of a MobileFaceNet OnnxGraph (batch norm kept or folded)."""
    weights = {}
    tensor = _conv_block(graph, graph.only_next(graph.input, "Conv"), "layers.0", weights, strides=2)
    if _is_residual(graph, tensor):
        tensor = _residual_units(graph, tensor, "layers.1", weights)
    else:
        tensor = _conv_block(graph, graph.only_next(tensor, "Conv"), "layers.1", weights)
    for stage in (1, 2, 3):
        tensor = _unit(graph, tensor, f"layers.{2 * stage}", weights, residual=False)
        tensor = _residual_units(graph, tensor, f"layers.{2 * stage + 1}", weights)
    tensor = _conv_block(graph, graph.only_next(tensor, "Conv"), "conv_sep", weights)
    node = graph.only_next(tensor, "Conv")
    output = _gdc_output if attributes(node).get("group", 1) > 1 else _flatten_output
    output(graph, node, weights)
    return weights
