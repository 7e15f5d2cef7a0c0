"""arcface_torch IResNet and MobileFaceNet files written without PyTorch: a random state dict with its
module names, saved in torch's zip format (data.pkl with persistent storage ids + raw storages) and
as an ONNX graph of the same forward pass (batch norm kept, or folded into the convolutions as
PyTorch's export and simplifiers do).
"""
import collections
import io
import math
import pickle
import types
import zipfile

import numpy as np

BLOCKS = {18: (2, 2, 2, 2), 34: (3, 4, 6, 3), 50: (3, 4, 14, 3), 100: (3, 13, 30, 3)}
EPS = 1e-5


def random_state_dict(depth, base, embedding, feature_hw, seed=0):
    """arcface_torch names and shapes; `base` channels in the stem (64 in the published models)."""
    rng = np.random.default_rng(seed)
    sd = collections.OrderedDict()

    def conv(name, cout, cin, k):
        sd[f"{name}.weight"] = rng.normal(0, np.sqrt(2.0 / (cin * k * k)), (cout, cin, k, k)).astype(np.float32)

    def bn(name, c):
        sd[f"{name}.weight"] = rng.uniform(0.5, 1.5, c).astype(np.float32)
        sd[f"{name}.bias"] = rng.normal(0, 0.1, c).astype(np.float32)
        sd[f"{name}.running_mean"] = rng.normal(0, 0.1, c).astype(np.float32)
        sd[f"{name}.running_var"] = rng.uniform(0.5, 1.5, c).astype(np.float32)
        sd[f"{name}.num_batches_tracked"] = np.array(7, np.int64)

    def prelu(name, c):
        sd[f"{name}.weight"] = rng.uniform(0.0, 0.5, c).astype(np.float32)

    conv("conv1", base, 3, 3), bn("bn1", base), prelu("prelu", base)
    cin = base
    for stage, units in enumerate(BLOCKS[depth], start=1):
        c = base * 2 ** (stage - 1)
        for unit in range(units):
            p = f"layer{stage}.{unit}"
            bn(f"{p}.bn1", cin), conv(f"{p}.conv1", c, cin, 3), bn(f"{p}.bn2", c), prelu(f"{p}.prelu", c)
            conv(f"{p}.conv2", c, c, 3), bn(f"{p}.bn3", c)
            if unit == 0:
                conv(f"{p}.downsample.0", c, cin, 1), bn(f"{p}.downsample.1", c)
            cin = c
    bn("bn2", cin)
    sd["fc.weight"] = rng.normal(0, np.sqrt(1.0 / (cin * feature_hw**2)), (embedding, cin * feature_hw**2)).astype(np.float32)
    sd["fc.bias"] = rng.normal(0, 0.1, embedding).astype(np.float32)
    bn("features", embedding)
    sd["features.weight"][:] = 1.0  # arcface_torch fixes it at 1
    return sd


# --- torch's zip format ---------------------------------------------------------------------------

def _named(obj, module, name):
    obj.__module__, obj.__qualname__, obj.__name__ = module, name, name
    return obj


_rebuild_tensor_v2 = _named(lambda *args: None, "torch._utils", "_rebuild_tensor_v2")
_STORAGES = {np.dtype(np.float32): _named(type("FloatStorage", (), {}), "torch", "FloatStorage"),
             np.dtype(np.int64): _named(type("LongStorage", (), {}), "torch", "LongStorage")}


class _Storage:
    def __init__(self, key, array):
        self.key, self.array = key, array


class _Tensor:
    def __init__(self, storage, layout=None):
        self.storage, self.layout = storage, layout

    def __reduce__(self):
        a = self.storage.array
        offset, size, stride = self.layout or (0, a.shape, tuple(s // a.itemsize for s in a.strides))
        return _rebuild_tensor_v2, (self.storage, offset, size, stride, False, collections.OrderedDict())


class _TorchPickler(pickle._Pickler):
    def save_global(self, obj, name=None):  # write the name; torch need not be importable here
        self.write(pickle.GLOBAL + f"{obj.__module__}\n{obj.__qualname__}\n".encode())
        self.memoize(obj)

    dispatch = {**pickle._Pickler.dispatch, types.FunctionType: save_global}

    def persistent_id(self, obj):
        if isinstance(obj, _Storage):
            return ("storage", _STORAGES[obj.array.dtype], obj.key, "cpu", obj.array.size)
        return None


def write_torch_zip(path, state_dict, archive="archive", layouts=None):
    """`layouts` {key: (storage offset, shape, strides)} replaces a tensor's own, as a damaged or hostile
    file would (its storage stays the array's bytes)."""
    storages = [_Storage(str(i), np.array(v, order="C")) for i, v in enumerate(state_dict.values())]
    layouts = layouts or {}
    data = collections.OrderedDict((k, _Tensor(s, layouts.get(k))) for k, s in zip(state_dict, storages))
    buffer = io.BytesIO()
    _TorchPickler(buffer, protocol=2).dump(data)
    with zipfile.ZipFile(path, "w", zipfile.ZIP_STORED) as z:
        z.writestr(f"{archive}/data.pkl", buffer.getvalue())
        z.writestr(f"{archive}/byteorder", "little")
        for s in storages:
            z.writestr(f"{archive}/data/{s.key}", s.array.tobytes())
        z.writestr(f"{archive}/version", "3\n")


# --- ONNX ------------------------------------------------------------------------------------------

def _fold(sd, conv, bn):
    scale = sd[f"{bn}.weight"] / np.sqrt(sd[f"{bn}.running_var"] + EPS)
    weight = sd[f"{conv}.weight"] * scale.reshape(-1, *[1] * (sd[f"{conv}.weight"].ndim - 1))
    bias = sd.get(f"{conv}.bias", 0.0)  # the fc has one, the convs have none
    return weight.astype(np.float32), (sd[f"{bn}.bias"] + (bias - sd[f"{bn}.running_mean"]) * scale).astype(np.float32)


class _GraphBuilder:
    """`unfolded`: the ops PyTorch's export leaves on weights without constant folding (PReLU slopes
    through Unsqueeze, flatten as a Reshape to a Concat-built shape, the fc as MatMul of a Transpose)."""

    def __init__(self, sd, fold, unfolded=False):
        self.sd, self.fold, self.unfolded, self.nodes, self.inits, self.count = sd, fold, unfolded, [], [], 0

    def const(self, array, name=None, dtype=np.float32):
        from onnx import numpy_helper

        name = name or f"c{len(self.inits)}"
        self.inits.append(numpy_helper.from_array(np.asarray(array, dtype), name))
        return name

    def node(self, op, inputs, **attrs):
        from onnx import helper

        self.count += 1
        out = f"t{self.count}"
        self.nodes.append(helper.make_node(op, inputs, [out], name=f"{op}_{self.count}", **attrs))
        return out

    def bn(self, x, name):
        params = [self.const(self.sd[f"{name}.{k}"], f"{name}.{k}") for k in ("weight", "bias", "running_mean", "running_var")]
        return self.node("BatchNormalization", [x, *params], epsilon=EPS)

    def conv_bn(self, x, conv, bn, stride, group=1, pad=None):
        k = self.sd[f"{conv}.weight"].shape[-1]
        pads = [(k - 1) // 2 if pad is None else pad] * 4
        attrs = {"strides": [stride, stride], "kernel_shape": [k, k], "group": group}
        if self.fold:
            weight, bias = _fold(self.sd, conv, bn)
            return self.node("Conv", [x, self.const(weight), self.const(bias)], pads=pads, **attrs)
        y = self.node("Conv", [x, self.const(self.sd[f"{conv}.weight"], f"{conv}.weight")], pads=pads, **attrs)
        return self.bn(y, bn)

    def prelu(self, x, name):
        if self.unfolded:
            slope = self.node("Unsqueeze", [self.const(self.sd[f"{name}.weight"], f"{name}.weight"),
                                            self.const([1, 2], dtype=np.int64)])
            return self.node("PRelu", [x, slope])
        return self.node("PRelu", [x, self.const(self.sd[f"{name}.weight"].reshape(-1, 1, 1), f"{name}.weight")])

    def flatten(self, x):
        if not self.unfolded:
            return self.node("Flatten", [x], axis=1)
        dims = [self.node("Unsqueeze", [self.const(d, dtype=np.int64), self.const([0], dtype=np.int64)]) for d in (0, -1)]
        return self.node("Reshape", [x, self.node("Concat", dims, axis=0)])

    def linear(self, x, weight, bias, name=None):
        """x @ weightᵀ (+ bias): Gemm, or MatMul of a Transpose (+ Add) when `unfolded`."""
        if not self.unfolded:
            return self.node("Gemm", [x, self.const(weight, name and f"{name}.weight")]
                             + ([self.const(bias, name and f"{name}.bias")] if bias is not None else []), transB=1)
        y = self.node("MatMul", [x, self.node("Transpose", [self.const(weight, name and f"{name}.weight")], perm=[1, 0])])
        return self.node("Add", [y, self.const(bias, name and f"{name}.bias")]) if bias is not None else y


def write_onnx(path, sd, input_size, fold_bn=False):
    """The IResNet forward pass as ONNX (opset 13), input "data" NCHW; `fold_bn` folds conv-BN pairs and
    the final BN into the conv/Gemm (what graph simplifiers do)."""
    g = _GraphBuilder(sd, fold_bn)
    x = g.prelu(g.conv_bn("data", "conv1", "bn1", 1), "prelu")
    stages = sorted({int(k.split(".")[0][5:]) for k in sd if k.startswith("layer")})
    for stage in stages:
        units = sorted({int(k.split(".")[1]) for k in sd if k.startswith(f"layer{stage}.")})
        for unit in units:
            p = f"layer{stage}.{unit}"
            y = g.bn(x, f"{p}.bn1")
            y = g.prelu(g.conv_bn(y, f"{p}.conv1", f"{p}.bn2", 1), f"{p}.prelu")
            y = g.conv_bn(y, f"{p}.conv2", f"{p}.bn3", 2 if unit == 0 else 1)
            shortcut = g.conv_bn(x, f"{p}.downsample.0", f"{p}.downsample.1", 2) if unit == 0 else x
            x = g.node("Add", [y, shortcut])
    x = g.node("Flatten", [g.node("Dropout", [g.bn(x, "bn2")])], axis=1)
    if fold_bn:
        weight, bias = _fold(sd, "fc", "features")
        out = g.node("Gemm", [x, g.const(weight), g.const(bias)], transB=1)
    else:
        out = g.bn(g.node("Gemm", [x, g.const(sd["fc.weight"], "fc.weight"), g.const(sd["fc.bias"], "fc.bias")], transB=1), "features")
    _save(path, g, "iresnet", input_size, out, sd["fc.weight"].shape[0])


# --- MobileFaceNet ("mbf") --------------------------------------------------------------------------

# (down expansion, out channels, residual expansion) per stage, at width 1, as arcface_torch's mbf.
MBF_STAGES = ((128, 64, 128), (256, 128, 256), (512, 128, 256))


def random_mbf_state_dict(width, blocks, embedding, output="GDC", feature_hw=7, seed=0):
    """arcface_torch MobileFaceNet names and shapes. `width` scales the 64/128 channels (arcface_torch's
    `scale`); below 1 it scales the expansions and the 512-channel head too. `output`: "GDC" (arcface_torch)
    or "flatten" (insightface's published w600k_mbf: conv block to 64 channels, flatten, fc, features)."""
    rng = np.random.default_rng(seed)
    sd = collections.OrderedDict()
    narrow = lambda c: max(1, round(c * width))  # noqa: E731
    wide = lambda c: max(1, round(c * min(width, 1.0)))  # noqa: E731

    def block(name, cin, cout, k, groups=1, activation=True):
        sd[f"{name}.layers.0.weight"] = rng.normal(0, np.sqrt(2.0 / (cin // groups * k * k)),
                                                   (cout, cin // groups, k, k)).astype(np.float32)
        sd.update(_random_bn(rng, f"{name}.layers.1", cout))
        sd[f"{name}.layers.1.num_batches_tracked"] = np.array(7, np.int64)
        if activation:
            sd[f"{name}.layers.2.weight"] = rng.uniform(0.0, 0.5, cout).astype(np.float32)

    def depthwise(name, cin, cout, expansion):
        block(f"{name}.layers.0", cin, expansion, 1)
        block(f"{name}.layers.1", expansion, expansion, 3, groups=expansion)
        block(f"{name}.layers.2", expansion, cout, 1, activation=False)

    stem = narrow(64)
    block("layers.0", 3, stem, 3)
    if blocks[0] == 1:
        block("layers.1", stem, stem, 3, groups=math.gcd(stem, wide(64)))
    else:
        for unit in range(blocks[0]):
            depthwise(f"layers.1.layers.{unit}", stem, stem, wide(128))
    cin = stem
    for stage, (down_expansion, out, expansion) in enumerate(MBF_STAGES, start=1):
        depthwise(f"layers.{2 * stage}", cin, narrow(out), wide(down_expansion))
        cin = narrow(out)
        for unit in range(blocks[stage]):
            depthwise(f"layers.{2 * stage + 1}.layers.{unit}", cin, cin, wide(expansion))
    head = wide(512)
    block("conv_sep", cin, head, 1)
    if output == "GDC":
        block("features.layers.0", head, head, feature_hw, groups=head, activation=False)
        sd["features.layers.2.weight"] = rng.normal(0, np.sqrt(1.0 / head), (embedding, head)).astype(np.float32)
        sd.update(_random_bn(rng, "features.layers.3", embedding))
        return sd
    block("conv_reduce", head, wide(64), 1)
    inputs = wide(64) * feature_hw**2
    sd["fc.weight"] = rng.normal(0, np.sqrt(1.0 / inputs), (embedding, inputs)).astype(np.float32)
    sd["fc.bias"] = rng.normal(0, 0.1, embedding).astype(np.float32)
    sd.update(_random_bn(rng, "features", embedding))
    sd["features.weight"][:] = 1.0  # fixed at 1 in the published model
    return sd


def _random_bn(rng, name, c):
    return {f"{name}.weight": rng.uniform(0.5, 1.5, c).astype(np.float32),
            f"{name}.bias": rng.normal(0, 0.1, c).astype(np.float32),
            f"{name}.running_mean": rng.normal(0, 0.1, c).astype(np.float32),
            f"{name}.running_var": rng.uniform(0.5, 1.5, c).astype(np.float32)}


def write_mbf_onnx(path, sd, input_size, fold_bn=False, fold_final=True, unfolded=False):
    """The MobileFaceNet forward pass as ONNX (opset 13), input "data" NCHW. `fold_bn` folds every
    conv-BN pair, and the final BN into the Gemm when `fold_final` (PyTorch's export of the published
    model folds the convs' and keeps the final one); `unfolded`: see _GraphBuilder."""
    g = _GraphBuilder(sd, fold_bn, unfolded)

    def block(x, cin, name, stride=1, activation=True, pad=None):
        group = cin // sd[f"{name}.layers.0.weight"].shape[1]
        y = g.conv_bn(x, f"{name}.layers.0", f"{name}.layers.1", stride, group=group, pad=pad)
        return g.prelu(y, f"{name}.layers.2") if activation else y

    def depthwise(x, name, residual):
        cin = sd[f"{name}.layers.0.layers.0.weight"].shape[1]
        y = block(x, cin, f"{name}.layers.0")
        y = block(y, sd[f"{name}.layers.1.layers.0.weight"].shape[0], f"{name}.layers.1", stride=1 if residual else 2)
        y = block(y, sd[f"{name}.layers.2.layers.0.weight"].shape[1], f"{name}.layers.2", activation=False)
        return g.node("Add", [x, y]) if residual else y

    def units(x, module):
        count = len({k.split(".")[3] for k in sd if k.startswith(f"{module}.layers.")})
        for unit in range(count):
            x = depthwise(x, f"{module}.layers.{unit}", residual=True)
        return x

    x = block("data", 3, "layers.0", stride=2)
    stem = sd["layers.0.layers.0.weight"].shape[0]
    x = block(x, stem, "layers.1") if "layers.1.layers.0.weight" in sd else units(x, "layers.1")
    for stage in (1, 2, 3):
        x = units(depthwise(x, f"layers.{2 * stage}", residual=False), f"layers.{2 * stage + 1}")
    x = block(x, sd["conv_sep.layers.0.weight"].shape[1], "conv_sep")
    if "fc.weight" in sd:
        x = g.flatten(block(x, sd["conv_reduce.layers.0.weight"].shape[1], "conv_reduce"))
        fc, bn = "fc", "features"
    else:
        head = sd["conv_sep.layers.0.weight"].shape[0]
        x = g.flatten(block(x, head, "features.layers.0", activation=False, pad=0))
        fc, bn = "features.layers.2", "features.layers.3"
    if fold_bn and fold_final:
        out = g.linear(x, *_fold(sd, fc, bn))
    else:
        out = g.bn(g.linear(x, sd[f"{fc}.weight"], sd.get(f"{fc}.bias"), fc), bn)
    _save(path, g, "mobilefacenet", input_size, out, sd[f"{fc}.weight"].shape[0])


def _save(path, g, name, input_size, out, embedding):
    import onnx
    from onnx import TensorProto, helper

    graph = helper.make_graph(
        g.nodes, name, [helper.make_tensor_value_info("data", TensorProto.FLOAT, [None, 3, input_size, input_size])],
        [helper.make_tensor_value_info(out, TensorProto.FLOAT, [None, embedding])], initializer=g.inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    onnx.checker.check_model(model)
    onnx.save(model, str(path))


def onnxruntime_embeddings(path, images_nhwc):
    """Raw embeddings of float images in [-1, 1] (N, H, W, 3) through onnxruntime."""
    import onnxruntime

    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return session.run(None, {"data": np.ascontiguousarray(images_nhwc.transpose(0, 3, 1, 2), np.float32)})[0]
