"""An arcface_torch IResNet ONNX graph read back into its state dict ({torch name: numpy array}).

From the input it follows stem conv → [BN] → PReLU, then IR blocks (BN → conv → [BN] → PReLU →
conv → [BN], added to the input or to a 1x1 conv → [BN] shortcut), then BN → flatten → Gemm (or
MatMul + Add) → [BN] (see onnx_graph for folded batch norms). Any other node fails with its name
and type.
"""
import numpy as np

from arcface_keras.pretrained.onnx_graph import batch_norm, conv_bn, dense, final_batch_norm, prelu

NETWORK = "IResNet"


def _conv_bn(graph, node, conv_name, bn_name, weights):
    return conv_bn(graph, node, conv_name, bn_name, weights, NETWORK)


def _block(graph, tensor, name, weights):
    """One IR block starting at `tensor`; returns the Add's output."""
    nodes = graph.next_nodes(tensor)
    bns = [n for n in nodes if n.op_type == "BatchNormalization"]
    shortcut = [n for n in nodes if n.op_type == "Conv"]
    if len(bns) != 1 or len(shortcut) > 1:
        raise ValueError(f"{graph.source}: tensor {tensor!r} does not start an IR block (found "
                         f"{', '.join(n.op_type for n in nodes)})")
    y = batch_norm(graph, bns[0], f"{name}.bn1", weights)
    y = _conv_bn(graph, graph.only_next(y, "Conv"), f"{name}.conv1", f"{name}.bn2", weights)
    y = prelu(graph, y, f"{name}.prelu", weights)
    y = _conv_bn(graph, graph.only_next(y, "Conv"), f"{name}.conv2", f"{name}.bn3", weights)
    if shortcut:
        _conv_bn(graph, shortcut[0], f"{name}.downsample.0", f"{name}.downsample.1", weights)
    return graph.only_next(y, "Add").output[0]


def _is_block_start(graph, tensor):
    return len(graph.next_nodes(tensor)) > 1


def _embedding(graph, tensor, weights):
    """bn2 → Flatten/Reshape → Gemm or MatMul+Add → [features BN]."""
    tensor = batch_norm(graph, graph.only_next(tensor, "BatchNormalization"), "bn2", weights)
    tensor, _ = dense(graph, tensor, "fc", weights)
    final_batch_norm(graph, tensor, "features", weights, np.zeros(weights["fc.bias"].shape, np.float32))


def iresnet_state_dict(graph):
    """{arcface_torch name: numpy array} of an IResNet OnnxGraph (batch norm kept or folded)."""
    weights = {}
    tensor = _conv_bn(graph, graph.only_next(graph.input, "Conv"), "conv1", "bn1", weights)
    tensor = prelu(graph, tensor, "prelu", weights)
    stage, unit = 0, 0
    while _is_block_start(graph, tensor):
        shortcut = any(n.op_type == "Conv" for n in graph.next_nodes(tensor))
        stage, unit = (stage + 1, 0) if shortcut else (stage, unit + 1)
        if stage == 0:
            raise ValueError(f"{graph.source}: the first IR block has no downsampling shortcut")
        tensor = _block(graph, tensor, f"layer{stage}.{unit}", weights)
    _embedding(graph, tensor, weights)
    return weights
