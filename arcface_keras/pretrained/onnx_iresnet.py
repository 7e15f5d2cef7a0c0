"""An arcface_torch IResNet ONNX graph read back into its state dict ({torch name: numpy array}).

Works on the graph's structure, not on initializer names (exporters and simplifiers rename them):
from the input it follows stem conv → [BN] → PReLU, then IR blocks (BN → conv → [BN] → PReLU →
conv → [BN], added to the input or to a 1x1 conv → [BN] shortcut), then BN → flatten → Gemm (or
MatMul + Add) → [BN]. A BN that a simplifier folded into the convolution before it (the conv then
has a bias) is restored as a BN with unit variance whose shift is that bias, so the two files give
the same state dict layout. Any other node fails with its name and type.
"""
import math

import numpy as np

BN_EPSILON = 1e-5
PASS_THROUGH = ("Identity", "Dropout")


class _Graph:
    def __init__(self, model, source):
        import onnx.numpy_helper

        graph = model.graph
        self.source = source
        self.constants = {init.name: onnx.numpy_helper.to_array(init) for init in graph.initializer}
        for node in graph.node:
            if node.op_type == "Constant":
                self.constants[node.output[0]] = onnx.numpy_helper.to_array(node.attribute[0].t)
        self.consumers = {}
        for node in graph.node:
            for name in node.input:
                self.consumers.setdefault(name, []).append(node)
        inputs = [i.name for i in graph.input if i.name not in self.constants]
        if len(inputs) != 1:
            raise ValueError(f"{source}: expected one image input, found {inputs}")
        self.input = inputs[0]

    def next_nodes(self, tensor):
        """The nodes reading `tensor`, seen through Identity/Dropout nodes."""
        found = []
        for node in self.consumers.get(tensor, []):
            found += self.next_nodes(node.output[0]) if node.op_type in PASS_THROUGH else [node]
        return found

    def only_next(self, tensor, *op_types):
        nodes = self.next_nodes(tensor)
        if len(nodes) != 1 or nodes[0].op_type not in op_types:
            found = ", ".join(f"{n.op_type} {n.name!r}" for n in nodes) or "nothing"
            raise ValueError(f"{self.source}: after tensor {tensor!r} expected {'/'.join(op_types)}, found {found}")
        return nodes[0]

    def weight(self, node, index):
        name = node.input[index]
        if name not in self.constants:
            raise ValueError(f"{self.source}: {node.op_type} {node.name!r} input {name!r} is not a constant")
        return self.constants[name].astype(np.float32)


def _attributes(node):
    import onnx.helper

    return {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}


def _conv_bn(graph, node, conv_name, bn_name, weights):
    """Read a Conv (checking its padding) and the BN after it, or restore a folded one; returns the output."""
    kernel = graph.weight(node, 1)
    attrs = _attributes(node)
    pad = (kernel.shape[-1] - 1) // 2
    if list(attrs.get("pads", [0] * 4)) != [pad] * 4 or attrs.get("group", 1) != 1:
        raise ValueError(f"{graph.source}: Conv {node.name!r} has pads {attrs.get('pads')} group {attrs.get('group', 1)}, "
                         f"expected IResNet's symmetric pads {[pad] * 4} and group 1")
    weights[f"{conv_name}.weight"] = kernel
    bias = graph.weight(node, 2) if len(node.input) > 2 and node.input[2] else None
    following = graph.next_nodes(node.output[0])
    if len(following) == 1 and following[0].op_type == "BatchNormalization":
        if bias is not None:
            raise ValueError(f"{graph.source}: Conv {node.name!r} has both a bias and a BN; IResNet convs have neither")
        return _batch_norm(graph, following[0], bn_name, weights)
    _identity_bn(bn_name, bias if bias is not None else np.zeros(kernel.shape[0], np.float32), weights)
    return node.output[0]


def _identity_bn(name, shift, weights):
    """A BN that adds `shift` and nothing else (unit variance, zero mean, scale √(1 + ε))."""
    weights[f"{name}.weight"] = np.full(shift.shape, math.sqrt(1.0 + BN_EPSILON), np.float32)
    weights[f"{name}.bias"] = shift.astype(np.float32)
    weights[f"{name}.running_mean"] = np.zeros(shift.shape, np.float32)
    weights[f"{name}.running_var"] = np.ones(shift.shape, np.float32)


def _batch_norm(graph, node, name, weights):
    epsilon = _attributes(node).get("epsilon", 1e-5)
    if not math.isclose(epsilon, BN_EPSILON, rel_tol=1e-3):
        raise ValueError(f"{graph.source}: BatchNormalization {node.name!r} has epsilon {epsilon}, expected {BN_EPSILON}")
    for index, key in enumerate(("weight", "bias", "running_mean", "running_var"), start=1):
        weights[f"{name}.{key}"] = graph.weight(node, index)
    return node.output[0]


def _prelu(graph, tensor, name, weights):
    node = graph.only_next(tensor, "PRelu")
    weights[f"{name}.weight"] = graph.weight(node, 1).reshape(-1)
    return node.output[0]


def _block(graph, tensor, name, weights):
    """One IR block starting at `tensor`; returns the Add's output."""
    nodes = graph.next_nodes(tensor)
    bns = [n for n in nodes if n.op_type == "BatchNormalization"]
    shortcut = [n for n in nodes if n.op_type == "Conv"]
    if len(bns) != 1 or len(shortcut) > 1:
        raise ValueError(f"{graph.source}: tensor {tensor!r} does not start an IR block (found "
                         f"{', '.join(n.op_type for n in nodes)})")
    y = _batch_norm(graph, bns[0], f"{name}.bn1", weights)
    y = _conv_bn(graph, graph.only_next(y, "Conv"), f"{name}.conv1", f"{name}.bn2", weights)
    y = _prelu(graph, y, f"{name}.prelu", weights)
    y = _conv_bn(graph, graph.only_next(y, "Conv"), f"{name}.conv2", f"{name}.bn3", weights)
    if shortcut:
        _conv_bn(graph, shortcut[0], f"{name}.downsample.0", f"{name}.downsample.1", weights)
    return graph.only_next(y, "Add").output[0]


def _is_block_start(graph, tensor):
    return len(graph.next_nodes(tensor)) > 1


def _embedding(graph, tensor, weights):
    """bn2 → Flatten/Reshape → Gemm or MatMul+Add → [features BN]."""
    tensor = _batch_norm(graph, graph.only_next(tensor, "BatchNormalization"), "bn2", weights)
    tensor = graph.only_next(tensor, "Flatten", "Reshape").output[0]
    node = graph.only_next(tensor, "Gemm", "MatMul")
    if node.op_type == "Gemm":
        attrs = _attributes(node)
        kernel = graph.weight(node, 1) * attrs.get("alpha", 1.0)
        weights["fc.weight"] = kernel if attrs.get("transB", 0) else kernel.T
        outputs = weights["fc.weight"].shape[0]
        has_bias = len(node.input) > 2 and node.input[2]
        weights["fc.bias"] = graph.weight(node, 2) * attrs.get("beta", 1.0) if has_bias else np.zeros(outputs, np.float32)
    else:
        weights["fc.weight"] = graph.weight(node, 1).T
        node = graph.only_next(node.output[0], "Add")
        weights["fc.bias"] = graph.weight(node, 1)
    following = graph.next_nodes(node.output[0])
    if following and following[0].op_type == "BatchNormalization":
        _batch_norm(graph, following[0], "features", weights)
    else:
        _identity_bn("features", np.zeros(weights["fc.bias"].shape, np.float32), weights)


def read_onnx_state_dict(path):
    """{arcface_torch name: numpy array} of an IResNet ONNX file (batch norm kept or folded)."""
    import onnx

    graph = _Graph(onnx.load(str(path)), path)
    weights = {}
    tensor = _conv_bn(graph, graph.only_next(graph.input, "Conv"), "conv1", "bn1", weights)
    tensor = _prelu(graph, tensor, "prelu", weights)
    stage, unit = 0, 0
    while _is_block_start(graph, tensor):
        shortcut = any(n.op_type == "Conv" for n in graph.next_nodes(tensor))
        stage, unit = (stage + 1, 0) if shortcut else (stage, unit + 1)
        if stage == 0:
            raise ValueError(f"{path}: the first IR block has no downsampling shortcut")
        tensor = _block(graph, tensor, f"layer{stage}.{unit}", weights)
    _embedding(graph, tensor, weights)
    return weights
