"""Face detection with MTCNN (the `mtcnn` package, TensorFlow): boxes, confidences and 5 landmarks.

MTCNN expects RGB images (uint8, 0..255). The detector is built on first use, once per process,
so that worker processes each build their own.
"""
from dataclasses import dataclass

import numpy as np

LANDMARK_NAMES = ("left_eye", "right_eye", "nose", "mouth_left", "mouth_right")  # as seen in the image
PICK_MODES = ("largest", "confident", "center")

_detector = None


@dataclass(frozen=True)
class Face:
    """box: (x, y, width, height) in pixels; landmarks: (5, 2) x, y in LANDMARK_NAMES order."""

    box: tuple
    confidence: float
    landmarks: np.ndarray

    @property
    def size(self):
        """The shorter side of the box, in pixels."""
        return min(self.box[2], self.box[3])


def detector():
    """The process's MTCNN detector, built on first call."""
    global _detector
    if _detector is None:
        from mtcnn import MTCNN

        _detector = MTCNN()
    return _detector


def detect(image_rgb, min_size=20):
    """All faces of at least about `min_size` pixels in an RGB (H, W, 3) uint8 image."""
    image_rgb = np.asarray(image_rgb)
    if image_rgb.ndim != 3 or image_rgb.shape[2] != 3:
        raise ValueError(f"detect: expected an RGB image of shape (H, W, 3), got {image_rgb.shape}")
    # Rows of the numpy output: image index, x1, y1, x2, y2, confidence, the five landmark x, the five y.
    # (The default dict output rounds landmarks to whole pixels; this keeps them sub-pixel.)
    rows = detector().detect_faces(image_rgb, min_face_size=min_size, output_type="numpy", box_format="xyxy")
    return [
        Face(
            box=(float(row[1]), float(row[2]), float(row[3] - row[1]), float(row[4] - row[2])),
            confidence=float(row[5]),
            landmarks=np.stack([row[6:11], row[11:16]], axis=1).astype(np.float64),
        )
        for row in np.asarray(rows).reshape(-1, 16)
    ]


def pick_face(faces, mode="largest", image_shape=None):
    """The face to keep of several; None when there are no faces.

    largest: the largest box area. confident: the highest confidence. center: for photos centred on
    their subject (LFW), insightface's rule (align_lfw.py, build_eval_pack.py): the largest box area
    minus twice the squared distance, in pixels, of the box centre from the photo's centre; it needs
    `image_shape` (height, width, ...).
    """
    if mode not in PICK_MODES:
        raise ValueError(f"pick mode {mode!r}: expected one of {', '.join(PICK_MODES)}")
    if not faces:
        return None
    if mode == "largest":
        return max(faces, key=lambda face: face.box[2] * face.box[3])
    if mode == "confident":
        return max(faces, key=lambda face: face.confidence)
    if image_shape is None:
        raise ValueError("pick mode 'center' needs the photo's shape")
    center_y, center_x = image_shape[0] / 2.0, image_shape[1] / 2.0

    def centred_area(face):
        x, y, w, h = face.box
        return w * h - 2.0 * ((x + w / 2.0 - center_x) ** 2 + (y + h / 2.0 - center_y) ** 2)

    return max(faces, key=centred_area)
