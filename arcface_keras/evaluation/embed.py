"""Embeddings of face images as the verification protocol wants them: flip-summed, L2-normalised."""
import cv2
import numpy as np

from arcface_keras.data.pipeline import scale
from arcface_keras.evaluation.verification import l2_normalize


def resize_images(images, size):
    """Resize uint8 (N, H, W, 3) images to size = (height, width) with cv2.INTER_AREA."""
    height, width = size
    if images.shape[1:3] == (height, width):
        return images
    return np.stack([cv2.resize(image, (width, height), interpolation=cv2.INTER_AREA) for image in images])


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
        batch = scale((batch if None in size else resize_images(batch, size)).astype(np.float32))
        embedding = np.asarray(embedder.predict_on_batch(batch), np.float32)
        if flip:
            embedding = embedding + np.asarray(embedder.predict_on_batch(np.ascontiguousarray(batch[:, :, ::-1])), np.float32)
        chunks.append(embedding)
    return np.concatenate(chunks)
