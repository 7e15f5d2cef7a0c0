"""Bounded work per photo: faces are found on a copy of at most MAX_DETECT_SIDE pixels a side, and the
crop is warped from the photo at the resolution it needs.

MTCNN scans an image pyramid that starts at 0.6 of the photo, so its time and memory grow with the
photo's pixels (an 8000x8000 JPEG: 73 s and 6.5 GB). A larger photo is detected on a copy whose
longer side is MAX_DETECT_SIDE and the faces are mapped back; a face then has to be at least
20 * side / MAX_DETECT_SIDE pixels to be found (bench/bench_preprocess.py measures a large photo).
A large JPEG is decoded straight to 1/2, 1/4 or 1/8 of its size by libjpeg's DCT scaling (OpenCV's
IMREAD_REDUCED_*), for the detection copy and again for the warp when the face is large enough that
the crop needs no more pixels; photos no larger than MAX_DETECT_SIDE are decoded once, in full.

Coordinates follow OpenCV's pixel centres: on a copy reduced by f (per axis), x maps to (x + 0.5) f - 0.5.
"""
import cv2
import numpy as np

from arcface_keras.data.integrity import truncation
from arcface_keras.faces.detect import Face

MAX_DETECT_SIDE = 1024
_JPEG = b"\xff\xd8\xff"
_READ_FLAGS = {1: cv2.IMREAD_COLOR, 2: cv2.IMREAD_REDUCED_COLOR_2, 4: cv2.IMREAD_REDUCED_COLOR_4,
               8: cv2.IMREAD_REDUCED_COLOR_8}


def decode(data, reduction=1):
    """Encoded bytes → RGB uint8, a JPEG at 1/`reduction` of its size (1, 2, 4 or 8); None when unreadable
    (a JPEG or PNG cut short too, which OpenCV would decode in part)."""
    if truncation(data):
        return None
    data = np.frombuffer(data, np.uint8)
    image = cv2.imdecode(data, _READ_FLAGS[reduction]) if data.size else None
    return None if image is None else cv2.cvtColor(image, cv2.COLOR_BGR2RGB)


def shrink(image, max_side=MAX_DETECT_SIDE):
    """(copy, factors): the image itself and (1, 1) when its longer side is at most `max_side`, else an
    area-averaged copy with that longer side and the per-axis factors (x, y) from the copy to the image."""
    height, width = image.shape[:2]
    if max(height, width) <= max_side:
        return image, np.ones(2)
    scale = max_side / max(height, width)
    size = (max(1, round(width * scale)), max(1, round(height * scale)))
    return cv2.resize(image, size, interpolation=cv2.INTER_AREA), np.array([width / size[0], height / size[1]])


def to_photo(points, factors):
    """Points of a copy reduced by `factors` (x, y) → the photo's pixels."""
    return (np.asarray(points, np.float64) + 0.5) * factors - 0.5


def from_photo(points, factors):
    """Points of the photo → a copy reduced by `factors` (x, y)."""
    return (np.asarray(points, np.float64) + 0.5) / factors - 0.5


def face_in_photo(face, factors):
    """A face found on a reduced copy, with its box and landmarks in the photo's pixels."""
    x, y = to_photo([face.box[:2]], factors)[0]
    return Face(box=(x, y, face.box[2] * factors[0], face.box[3] * factors[1]), confidence=face.confidence,
                landmarks=to_photo(face.landmarks, factors))


def detection_copy(data, max_side=MAX_DETECT_SIDE):
    """(copy, factors, photo) of encoded bytes: the copy to detect on, its factors to the photo's pixels,
    and the full photo when it had to be decoded anyway (small photos, formats other than JPEG), else
    None. (None, None, None) when the bytes do not decode."""
    reduction = 1
    if bytes(data[:3]) == _JPEG:
        probe = decode(data, 8)  # 1/64 of the pixels: enough to learn the size
        if probe is None:
            return None, None, None
        reduction = next(r for r in (8, 4, 2, 1) if r == 1 or max(probe.shape[:2]) * 8 // r >= max_side)
    image = decode(data, reduction)
    if image is None:
        return None, None, None
    copy, factors = shrink(image, max_side)
    return copy, factors * reduction, image if reduction == 1 else None


def warp_source(data, scale):
    """(image, reduction): the JPEG decoded at the largest reduction r in 1, 2, 4, 8 at which a crop
    of `scale` (crop pixels per photo pixel) still samples at most one pixel per crop pixel (scale * r <= 1)."""
    reduction = next(r for r in (8, 4, 2, 1) if scale * r <= 1 or r == 1)
    return decode(data, reduction), reduction
