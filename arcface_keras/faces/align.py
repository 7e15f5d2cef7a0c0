"""Face crops: 5-point similarity alignment to the ArcFace template, or an enlarged box crop.

Sizes are (height, width). Images are RGB (or any channel order: nothing here looks at colour).
"""
import cv2
import numpy as np

# Left eye, right eye, nose tip, left and right mouth corners (as seen in the image) in a 112x112 crop.
ARCFACE_TEMPLATE = np.array(
    [
        [38.2946, 51.6963],
        [73.5318, 51.5014],
        [56.0252, 71.7366],
        [41.5493, 92.3655],
        [70.7299, 92.2041],
    ],
    np.float64,
)


def parse_size(text):
    """'112' -> (112, 112); '112x96' -> (112, 96) as (height, width)."""
    try:
        parts = [int(p) for p in str(text).lower().split("x")]
    except ValueError:
        parts = []
    if len(parts) == 1:
        parts *= 2
    if len(parts) != 2 or min(parts) <= 0:
        raise ValueError(f"size {text!r}: expected HEIGHT or HEIGHTxWIDTH, e.g. 112 or 112x96")
    return tuple(parts)


def template(size=(112, 112)):
    """The 5 landmark targets for an output of `size`: the 112x112 template scaled by height/112 and
    shifted horizontally by (width - height) / 2, which gives insightface's x - 8 for 112x96."""
    height, width = size
    points = ARCFACE_TEMPLATE * (height / 112.0)
    points[:, 0] += (width - height) / 2.0
    return points


def similarity_transform(src, dst):
    """Least-squares similarity (rotation, uniform scale, shift; no reflection) taking `src` to `dst`.

    Umeyama (1991). `src`, `dst`: (N, 2) points. Returns the 2x3 matrix for cv2.warpAffine.
    """
    src = np.asarray(src, np.float64)
    dst = np.asarray(dst, np.float64)
    if src.shape != dst.shape or src.ndim != 2 or src.shape[1] != 2 or len(src) < 2:
        raise ValueError(f"landmarks: expected two (N, 2) arrays with N >= 2, got {src.shape} and {dst.shape}")
    src_mean, dst_mean = src.mean(axis=0), dst.mean(axis=0)
    src_c, dst_c = src - src_mean, dst - dst_mean
    src_var = (src_c**2).sum() / len(src)
    if src_var < 1e-12:
        raise ValueError("landmarks: all points coincide, no transform can be estimated")
    u, s, vt = np.linalg.svd(dst_c.T @ src_c / len(src))
    signs = np.array([1.0, np.sign(np.linalg.det(u) * np.linalg.det(vt)) or 1.0])
    rotation = u @ np.diag(signs) @ vt
    scale = (s * signs).sum() / src_var
    shift = dst_mean - scale * rotation @ src_mean
    return np.hstack([scale * rotation, shift[:, None]])


def transform_scale(landmarks, size=(112, 112)):
    """Crop pixels per photo pixel of the alignment of `landmarks` to the template of `size`."""
    matrix = similarity_transform(landmarks, template(size))
    return float(np.sqrt(abs(np.linalg.det(matrix[:, :2]))))


def apply_transform(matrix, points):
    """Map (N, 2) points through a 2x3 affine matrix."""
    points = np.asarray(points, np.float64)
    return points @ matrix[:, :2].T + matrix[:, 2]


def align_face(image, landmarks, size=(112, 112)):
    """Warp `image` so that its 5 `landmarks` (left eye, right eye, nose, mouth left, mouth right)
    land on the ArcFace template; returns a (height, width, C) crop with black outside the image."""
    height, width = size
    matrix = similarity_transform(landmarks, template(size))
    return cv2.warpAffine(image, matrix, (width, height), flags=cv2.INTER_LINEAR, borderValue=0)


def crop_box(image, box, margin=0.2, size=(112, 112)):
    """Crop around a detection box (x, y, w, h) without landmarks.

    The box is enlarged by `margin` of its size on every side (plain detector boxes end at the lips),
    widened to the output's aspect ratio (square for 112x112) about its centre, and resized to `size`.
    Parts outside the image are black.
    """
    height, width = size
    x, y, w, h = (float(v) for v in box)
    if w <= 0 or h <= 0:
        raise ValueError(f"box {box}: width and height must be positive")
    center_x, center_y = x + w / 2.0, y + h / 2.0
    w, h = w * (1 + 2 * margin), h * (1 + 2 * margin)
    aspect = width / height
    w, h = max(w, h * aspect), max(h, w / aspect)
    left, top = round(center_x - w / 2.0), round(center_y - h / 2.0)
    right, bottom = left + max(round(w), 1), top + max(round(h), 1)
    rows, cols = image.shape[:2]
    if right <= 0 or bottom <= 0 or left >= cols or top >= rows:
        raise ValueError(f"box {box}: lies outside the {cols}x{rows} image")
    inside = image[max(top, 0) : bottom, max(left, 0) : right]
    padded = cv2.copyMakeBorder(
        inside, max(-top, 0), max(bottom - rows, 0), max(-left, 0), max(right - cols, 0), cv2.BORDER_CONSTANT, value=0
    )
    shrinking = padded.shape[1] > width
    return cv2.resize(padded, (width, height), interpolation=cv2.INTER_AREA if shrinking else cv2.INTER_LINEAR)


# insightface's crop of a photo where no face was found (face_preprocess.preprocess without box or
# landmarks, as align_lfw.py made LFW's crops): the photo inset by 1/16 of each side, then widened by
# half of a 44-pixel margin on each side, clipped to the photo.
CENTER_INSET, CENTER_MARGIN = 0.0625, 44


def center_crop(image, size=(112, 112), margin=CENTER_MARGIN):
    """insightface's fallback crop when no face is found: the box inset by 1/16 of the photo's width and
    height on each side, widened by margin/2 pixels on each side and clipped to the photo, resized to
    `size` (bilinear). For a 250x250 LFW photo that is the whole photo: the face then fills about
    half as much of the crop as the template puts it (docs/lfw.md)."""
    rows, cols = image.shape[:2]
    left, top = int(cols * CENTER_INSET), int(rows * CENTER_INSET)
    right, bottom = cols - left, rows - top
    left, top = max(int(left - margin / 2), 0), max(int(top - margin / 2), 0)
    right, bottom = min(int(right + margin / 2), cols), min(int(bottom + margin / 2), rows)
    return cv2.resize(image[top:bottom, left:right], (size[1], size[0]), interpolation=cv2.INTER_LINEAR)
