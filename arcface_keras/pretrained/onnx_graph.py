"""Reading an arcface_torch ONNX export back into a state dict ({torch name: numpy array}).

The readers work on the graph's structure, not on initializer names (exporters and simplifiers
rename them): from the input they follow the network's layers node by node. A BN that PyTorch's
export or a simplifier folded into the convolution before it (the conv then has a bias) is
restored as a BN with unit variance whose shift is that bias, so both files give the same state
dict layout. Anything else fails naming the node or tensor and what was expected there.
"""
import math

import numpy as np

BN_EPSILON = 1e-5
PASS_THROUGH = ("Identity", "Dropout")


def _unsqueeze(inputs, attrs):
    axes = attrs["axes"] if "axes" in attrs else inputs[1].tolist()  # an input from opset 13 on
    return np.expand_dims(inputs[0], tuple(axes))


def _reshape(inputs, attrs):
    shape = [d if d or attrs.get("allowzero") else inputs[0].shape[i] for i, d in enumerate(inputs[1].tolist())]
    return inputs[0].reshape(shape)


# Ops an export leaves on weights when it does not fold constants (PReLU slopes unsqueezed, a
# transposed fc weight, a reshape's shape): evaluated once, so that their outputs read as weights.
CONSTANT_OPS = {
    "Unsqueeze": _unsqueeze,
    "Transpose": lambda inputs, attrs: np.transpose(inputs[0], attrs.get("perm")),
    "Concat": lambda inputs, attrs: np.concatenate(inputs, axis=attrs["axis"]),
    "Reshape": _reshape,
    "Identity": lambda inputs, attrs: inputs[0],
}


class OnnxGraph:
    """An ONNX graph's constants and consumers, walked from its one image input."""

    def __init__(self, model, source):
        import onnx.numpy_helper

        graph = model.graph
        self.source = source
        self.constants = {init.name: onnx.numpy_helper.to_array(init) for init in graph.initializer}
        for node in graph.node:  # in topological order, as ONNX requires
            if node.op_type == "Constant":
                self.constants[node.output[0]] = onnx.numpy_helper.to_array(node.attribute[0].t)
            elif node.op_type in CONSTANT_OPS and all(name in self.constants for name in node.input if name):
                inputs = [self.constants[name] for name in node.input if name]
                self.constants[node.output[0]] = CONSTANT_OPS[node.op_type](inputs, attributes(node))
        self.consumers = {}
        for node in graph.node:
            for name in node.input:
                self.consumers.setdefault(name, []).append(node)
        inputs = [i.name for i in graph.input if i.name not in self.constants]
        if len(inputs) != 1:
            raise ValueError(f"{source}: expected one image input, found {inputs}")
        self.input = inputs[0]

    @classmethod
    def load(cls, path):
        import onnx

        try:
            model = onnx.load(str(path))
        except Exception as error:  # protobuf reports a damaged file in several ways
            raise ValueError(f"{path}: not a readable ONNX file ({type(error).__name__}: {error})") from None
        return cls(model, path)

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
        name = node.input[index] if index < len(node.input) else ""
        if name not in self.constants:
            raise ValueError(f"{self.source}: {node.op_type} {node.name!r} input {index} {name!r} is not a constant")
        return self.constants[name].astype(np.float32)

    def has_input(self, node, index):
        return len(node.input) > index and bool(node.input[index])


def attributes(node):
    import onnx.helper

    return {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}


def conv_bn(graph, node, conv_name, bn_name, weights, network, pad=None):
    """Read a Conv (checking PyTorch's symmetric pads, (k - 1) / 2 unless `pad` is given) and the BN
    after it, or restore a folded one; returns the output tensor."""
    kernel = graph.weight(node, 1)
    pad = (kernel.shape[-1] - 1) // 2 if pad is None else pad
    pads = list(attributes(node).get("pads", [0] * 4))
    if pads != [pad] * 4:
        raise ValueError(f"{graph.source}: Conv {node.name!r} has pads {pads}, expected {network}'s {[pad] * 4}")
    weights[f"{conv_name}.weight"] = kernel
    bias = graph.weight(node, 2) if graph.has_input(node, 2) else None
    following = graph.next_nodes(node.output[0])
    if len(following) == 1 and following[0].op_type == "BatchNormalization":
        if bias is not None:
            raise ValueError(f"{graph.source}: Conv {node.name!r} has both a bias and a BN; {network} convs have neither")
        return batch_norm(graph, following[0], bn_name, weights)
    identity_bn(bn_name, bias if bias is not None else np.zeros(kernel.shape[0], np.float32), weights)
    return node.output[0]


def identity_bn(name, shift, weights):
    """A BN that adds `shift` and nothing else (unit variance, zero mean, scale √(1 + ε))."""
    weights[f"{name}.weight"] = np.full(shift.shape, math.sqrt(1.0 + BN_EPSILON), np.float32)
    weights[f"{name}.bias"] = shift.astype(np.float32)
    weights[f"{name}.running_mean"] = np.zeros(shift.shape, np.float32)
    weights[f"{name}.running_var"] = np.ones(shift.shape, np.float32)


def batch_norm(graph, node, name, weights):
    epsilon = attributes(node).get("epsilon", 1e-5)
    if not math.isclose(epsilon, BN_EPSILON, rel_tol=1e-3):
        raise ValueError(f"{graph.source}: BatchNormalization {node.name!r} has epsilon {epsilon}, expected {BN_EPSILON}")
    for index, key in enumerate(("weight", "bias", "running_mean", "running_var"), start=1):
        weights[f"{name}.{key}"] = graph.weight(node, index)
    return node.output[0]


def prelu(graph, tensor, name, weights):
    node = graph.only_next(tensor, "PRelu")
    weights[f"{name}.weight"] = graph.weight(node, 1).reshape(-1)
    return node.output[0]


def dense(graph, tensor, name, weights):
    """Flatten/Reshape → Gemm or MatMul (+ Add): `name`.weight (out, in) and `name`.bias (zeros when the
    graph has none); returns (output tensor, whether the graph had a bias)."""
    tensor = graph.only_next(tensor, "Flatten", "Reshape").output[0]
    node = graph.only_next(tensor, "Gemm", "MatMul")
    if node.op_type == "Gemm":
        attrs = attributes(node)
        kernel = graph.weight(node, 1) * attrs.get("alpha", 1.0)
        weights[f"{name}.weight"] = kernel if attrs.get("transB", 0) else kernel.T
        has_bias = graph.has_input(node, 2)
        bias = graph.weight(node, 2) * attrs.get("beta", 1.0) if has_bias else None
    else:
        weights[f"{name}.weight"] = graph.weight(node, 1).T
        following = graph.next_nodes(node.output[0])
        has_bias = len(following) == 1 and following[0].op_type == "Add"
        if has_bias:
            node = following[0]
            bias = graph.weight(node, 1)
    outputs = weights[f"{name}.weight"].shape[0]
    weights[f"{name}.bias"] = bias if has_bias else np.zeros(outputs, np.float32)
    return node.output[0], has_bias


def final_batch_norm(graph, tensor, name, weights, shift):
    """The embedding's BN after the dense layer, or (folded into it, or absent) a BN adding `shift`;
    nothing may follow it."""
    following = graph.next_nodes(tensor)
    if len(following) == 1 and following[0].op_type == "BatchNormalization":
        tensor = batch_norm(graph, following[0], name, weights)
    else:
        identity_bn(name, shift, weights)
    rest = graph.next_nodes(tensor)
    if rest:
        raise ValueError(f"{graph.source}: the embedding {tensor!r} should end the graph, found "
                         f"{rest[0].op_type} {rest[0].name!r} after it")
