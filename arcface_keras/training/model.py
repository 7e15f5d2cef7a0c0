"""The face model: backbone (image → embedding) + head ((embedding, label) → logits)."""
from pathlib import Path

import keras

from arcface_keras.config import ConfigError
from arcface_keras.registry import BACKBONES, HEADS


def build_face_model(model_config, num_classes, image_size):
    """Return (training model, embedder, head).

    The training model takes [image, label] and returns the head's output; the embedder is the
    backbone alone (image in [-1, 1] → un-normalised embedding), the part that is saved and evaluated.
    """
    embedder = BACKBONES.build(
        model_config.backbone, input_shape=(image_size, image_size, 3), embedding_size=model_config.embedding_size
    )
    if model_config.pretrained:
        copy_pretrained(embedder, model_config.pretrained)
    head = HEADS.build(model_config.head, num_classes=num_classes)
    image = keras.Input((image_size, image_size, 3), name="image")
    label = keras.Input((), dtype="int32", name="label")
    output = head([embedder(image), label])
    return keras.Model([image, label], output, name="face_model"), embedder, head


def _keras_kind(layer):
    """The layer's Keras class: this project's layers (a fused batch norm, a fast grouped conv) hold their
    Keras parent's weights, so a backbone saved with either form loads into the other."""
    return next(kind for kind in type(layer).__mro__ if kind.__module__.startswith("keras.")).__name__


def _layer_list(model):
    return [(layer.name, _keras_kind(layer)) for layer in model.layers[1:]] + [("nothing", "the end")]


def copy_pretrained(embedder, path):
    """Give `embedder` the weights of the .keras backbone at `path`, layer by layer (by name).

    The two must be the same network: the same layers in the same order (padding layers included,
    so a backbone imported with padding="symmetric" needs that in model.backbone) with the same
    weight shapes; the first difference fails naming the layer.
    """
    try:
        source = keras.saving.load_model(Path(path).expanduser(), compile=False)
    except (OSError, ValueError, TypeError, KeyError) as exc:
        raise ConfigError(f"model.pretrained {path}: not a loadable .keras model ({exc})") from None
    ours, theirs = _layer_list(embedder), _layer_list(source)
    for index, (mine, pretrained) in enumerate(zip(ours, theirs)):
        if mine != pretrained:
            raise ConfigError(f"model.pretrained {path}: layer {index} is {pretrained[0]} ({pretrained[1]}) there, "
                             f"{mine[0]} ({mine[1]}) in model.backbone: build the same backbone (depth, output, padding)")
    for layer in embedder.layers:
        weights = source.get_layer(layer.name).get_weights()
        shapes, source_shapes = [tuple(w.shape) for w in layer.weights], [w.shape for w in weights]
        if shapes != source_shapes:
            raise ConfigError(f"model.pretrained {path}: layer {layer.name} has weights {source_shapes} there, "
                             f"{shapes} in model.backbone (width, embedding size and input size must match)")
        layer.set_weights(weights)
