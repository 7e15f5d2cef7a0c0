"""The face model: backbone (image → embedding) + head ((embedding, label) → logits)."""
import keras

from arcface_keras import backbones, heads  # noqa: F401  (registers the components)
from arcface_keras.registry import BACKBONES, HEADS


def build_face_model(model_config, num_classes, image_size):
    """Return (training model, embedder, head).

    The training model takes [image, label] and returns the head's output; the embedder is the
    backbone alone (image in [-1, 1] → un-normalised embedding), the part that is saved and evaluated.
    """
    embedder = BACKBONES.build(
        model_config.backbone, input_shape=(image_size, image_size, 3), embedding_size=model_config.embedding_size
    )
    head = HEADS.build(model_config.head, num_classes=num_classes)
    image = keras.Input((image_size, image_size, 3), name="image")
    label = keras.Input((), dtype="int32", name="label")
    output = head([embedder(image), label])
    return keras.Model([image, label], output, name="face_model"), embedder, head


def check_model_config(model_config):
    """Fail before any work on an unknown backbone/head name or keyword."""
    BACKBONES.check(model_config.backbone)
    HEADS.check(model_config.head)
