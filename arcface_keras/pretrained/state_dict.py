"""A state dict ({torch name: array}) assigned to a Keras backbone, layer by layer, every key and shape checked.

Each layer's tensors follow from its Keras type: a convolution takes `weight` (out, in/groups, kh, kw),
a depthwise convolution `weight` (C, 1, kh, kw), a batch norm `weight`, `bias`, `running_mean`,
`running_var`, a PReLU `weight`, a dense layer `weight` (out, in) and `bias` when it has one.
"""
import keras
import numpy as np

IGNORED_SUFFIXES = ("num_batches_tracked",)


def tensor_keys(layer):
    if isinstance(layer, keras.layers.BatchNormalization):
        return ("weight", "bias", "running_mean", "running_var")
    if isinstance(layer, keras.layers.Dense) and layer.use_bias:
        return ("weight", "bias")
    return ("weight",)


def _flatten_shape(model):
    """(H, W, C) that the model's one Flatten layer flattens."""
    return tuple(next(la for la in model.layers if isinstance(la, keras.layers.Flatten)).input.shape[1:])


def keras_weights(layer, tensors, torch_name, model, source):
    """The layer's weights in Keras layout from its torch tensors (shapes are checked by the caller)."""
    rank = {keras.layers.Conv2D: 4, keras.layers.DepthwiseConv2D: 4, keras.layers.Dense: 2}
    if any(isinstance(layer, kind) and tensors["weight"].ndim != n for kind, n in rank.items()):
        return [tensors[key] for key in tensor_keys(layer)]  # the wrong rank: the shape check names it
    if isinstance(layer, keras.layers.DepthwiseConv2D):
        return [tensors["weight"].transpose(2, 3, 0, 1)]  # (C, 1, kh, kw) → (kh, kw, C, 1)
    if isinstance(layer, keras.layers.Conv2D):
        return [tensors["weight"].transpose(2, 3, 1, 0)]  # (out, in, kh, kw) → (kh, kw, in, out)
    if isinstance(layer, keras.layers.PReLU):
        weight, shape = tensors["weight"], layer.get_weights()[0].shape
        return [weight.reshape(shape) if weight.size == np.prod(shape) else weight]
    if isinstance(layer, keras.layers.Dense):
        # torch flattens (C, H, W), Keras (H, W, C): reorder the input rows to match.
        height, width, chans = _flatten_shape(model)
        weight = tensors["weight"]
        if weight.shape[1] != height * width * chans:
            raise ValueError(f"{source}: {torch_name}.weight takes {weight.shape[1]} inputs; this input size gives "
                             f"{chans}x{height}x{width} = {chans * height * width} "
                             "(the published weights expect 112x112 images)")
        kernel = weight.reshape(-1, chans, height, width).transpose(2, 3, 1, 0).reshape(height * width * chans, -1)
        return [kernel, tensors["bias"]] if layer.use_bias else [kernel]
    return [tensors[key] for key in tensor_keys(layer)]


def assign(model, state_dict, names, source, network):
    """Give `model` the tensors of `state_dict`; `names` pairs each Keras layer with its torch module.

    A missing key, a shape that differs or a key no layer takes fails naming it."""
    used = set()
    for keras_name, torch_name in names:
        layer = model.get_layer(keras_name)
        keys = tensor_keys(layer)
        tensors = {}
        for key in keys:
            full = f"{torch_name}.{key}"
            if full not in state_dict:
                raise ValueError(f"{source}: missing key {full!r}")
            tensors[key] = np.asarray(state_dict[full], np.float32)
            used.add(full)
        weights = keras_weights(layer, tensors, torch_name, model, source)
        for key, have, want in zip(keys, weights, layer.get_weights()):
            if have.shape != want.shape:
                raise ValueError(f"{source}: {torch_name}.{key} has shape {tensors[key].shape}, "
                                 f"layer {keras_name} needs {want.shape}")
        layer.set_weights(weights)
    unexpected = sorted(k for k in state_dict if k not in used and not k.endswith(IGNORED_SUFFIXES))
    if unexpected:
        raise ValueError(f"{source}: unexpected key {unexpected[0]!r} ({len(unexpected)} in all): not a plain {network}")


def check_expected(found, expected, source, network):
    """One line naming the first value of `found` ({name: value}) that differs from `expected`'s (None: any)."""
    unknown = sorted(name for name, want in expected.items() if want is not None and name not in found)
    if unknown:
        raise ValueError(f"{source}: {unknown[0]} does not apply to {network} weights (it has {', '.join(found)})")
    for name, have in found.items():
        want = expected.get(name)
        if want is not None and have != want:
            show = lambda v: f"{v:g}" if isinstance(v, (int, float)) else str(v)  # noqa: E731
            raise ValueError(f"{source}: {name} is {show(have)} in the weights, {show(want)} was asked for")
