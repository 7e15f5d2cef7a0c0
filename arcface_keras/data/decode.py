"""The one image decoder: training and evaluation turn the same bytes into the same pixels.

JPEG and PNG (what training shards hold) decode through TensorFlow in both the tf.data pipeline and
the evaluation loaders. JPEGs use the accurate integer DCT, libjpeg's own default and so what OpenCV
and PIL return; TensorFlow's default, the fast DCT, is up to tens of grey levels off on fine detail.
Formats TensorFlow cannot read (WebP, TIFF, PGM, …) decode with OpenCV; training shards never hold
them (conversion re-encodes them as JPEG). Resizing is area averaging on float pixels, by one op.
A JPEG or PNG cut short is refused before any decoder sees it (data/integrity.py).
"""
import cv2
import numpy as np
import tensorflow as tf

from arcface_keras.data.integrity import JPEG_START, PNG_START, truncation

JPEG_DCT = "INTEGER_ACCURATE"


def decode_tensor(image_bytes):
    """Encoded JPEG/PNG bytes (a string tensor) → uint8 RGB (H, W, 3); usable inside tf.data."""
    image = tf.cond(
        tf.io.is_jpeg(image_bytes),
        lambda: tf.io.decode_jpeg(image_bytes, channels=3, dct_method=JPEG_DCT),
        lambda: tf.io.decode_image(image_bytes, channels=3, expand_animations=False),  # PNG (BMP, GIF)
    )
    image.set_shape([None, None, 3])
    return image


def resize_area(images, size):
    """Float images (H, W, 3) or (N, H, W, 3) → `size` (height, width) by area averaging, float32."""
    return tf.image.resize(images, size, method="area")


def decode_image(image_bytes, image_size):
    """Encoded JPEG/PNG bytes → float32 RGB (image_size, image_size, 3) in [0, 255]: the training decode."""
    image = tf.cast(decode_tensor(image_bytes), tf.float32)
    if image_size is not None:
        same = tf.reduce_all(tf.shape(image)[:2] == image_size)
        image = tf.cond(same, lambda: image, lambda: resize_area(image, (image_size, image_size)))
        image.set_shape([image_size, image_size, 3])
    return image


def decode_rgb(data, where):
    """Encoded image bytes (or a uint8 array of them) → uint8 RGB (H, W, 3); ValueError naming `where`."""
    data = bytes(data) if isinstance(data, (bytes, bytearray)) else np.asarray(data, np.uint8).tobytes()
    reason = truncation(data)
    if reason:
        raise ValueError(f"{where}: {reason}")
    if data.startswith(JPEG_START) or data.startswith(PNG_START):
        try:
            return decode_tensor(tf.constant(data)).numpy()
        except tf.errors.InvalidArgumentError:
            raise ValueError(f"{where}: not a decodable image ({len(data)} bytes)") from None
    image = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR) if data else None
    if image is None:
        raise ValueError(f"{where}: not a decodable image ({len(data)} bytes)")
    return cv2.cvtColor(image, cv2.COLOR_BGR2RGB)
