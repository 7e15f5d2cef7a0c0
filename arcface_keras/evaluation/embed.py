"""Embeddings of face images as the verification protocol wants them: flip-summed, L2-normalised."""
import numpy as np

from arcface_keras.data.decode import resize_area
from arcface_keras.data.pipeline import scale
from arcface_keras.evaluation.verification import l2_normalize


def model_inputs(images, size):
    """uint8 RGB images (N, H, W, 3) → float32 model inputs in [-1, 1] at size = (height, width).

    Resized by area averaging on float pixels, the op the training pipeline uses, so that an image
    is fed to the model the same in training and in evaluation.
    """
    images = np.asarray(images).astype(np.float32)
    if None not in size and images.shape[1:3] != tuple(size):
        images = np.asarray(resize_area(images, size))
    return scale(images)


def embed_images(embedder, images, batch_size=128, flip=True):
    """L2-normalised float32 embeddings (N, D) of uint8 RGB images (N, H, W, 3).

    `embedder` is a Keras model mapping float images in [-1, 1] (B, H, W, 3) to (B, D); images are
    resized to its input size when that is fixed and differs. With `flip`, the raw embeddings of
    each image and of its horizontal mirror are summed before normalising (as insightface does).
    """
    return l2_normalize(raw_embeddings(embedder, images, batch_size, flip)).astype(np.float32)


def raw_embeddings(embedder, images, batch_size=128, flip=True):
    """`embed_images` before the normalisation: the embedding (plus the mirror's with `flip`), float32."""
    images = np.asarray(images)
    if images.dtype != np.uint8 or images.ndim != 4 or images.shape[-1] != 3:
        raise ValueError(f"expected uint8 RGB images (N, H, W, 3), got {images.dtype} {images.shape}")
    if len(images) == 0:
        raise ValueError("no images to embed")
    size = tuple(embedder.input_shape[1:3])
    chunks = []
    for start in range(0, len(images), batch_size):
        batch = images[start : start + batch_size]
        batch = model_inputs(batch, size)
        embedding = np.asarray(embedder.predict_on_batch(batch), np.float32)
        if flip:
            embedding = embedding + np.asarray(embedder.predict_on_batch(np.ascontiguousarray(batch[:, :, ::-1])), np.float32)
        chunks.append(embedding)
    return np.concatenate(chunks)
