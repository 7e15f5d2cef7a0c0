"""Synthetic face identities: stylised, seeded faces drawn around the ArcFace 5-point template.

Each identity has fixed traits (face shape, skin tone, eyes, brows, nose, mouth, hair, beard,
glasses, moles); each image adds nuisance (expression, slight yaw/pitch, pose as one similarity
warp, background clutter, lighting gradient, colour cast, blur, noise). The pixels depend only on
(seed, identity, image), so identities can be generated in any order and number, and a held-out set
is simply another range of identity indices drawn from the same distribution.
"""
import concurrent.futures
import contextlib
import functools
import json
import logging
import math
import multiprocessing
from pathlib import Path

import cv2
import numpy as np

from arcface_keras.evaluation.verification import kfold_accuracy, pair_distances
from arcface_keras.io import atomic_path, write_json

GENERATOR_VERSION = 1  # bump whenever the pixels change: cached folders are keyed by it
SIZE = 112
TEMPLATE = np.array(
    [[38.2946, 51.6963], [73.5318, 51.5014], [56.0252, 71.7366], [41.5493, 92.3655], [70.7299, 92.2041]]
)  # left eye, right eye, nose tip, left and right mouth corner (x, y) in a 112x112 crop
MANIFEST = "synthetic.json"
JPEG_QUALITY = 95

_MOUTH = TEMPLATE[3:].mean(axis=0)  # centre of the mouth
_POSE_CENTRE = tuple(float(v) for v in TEMPLATE.mean(axis=0))  # the pose warp turns and scales about it
_IDENTITY_STREAM, _IMAGE_STREAM = 0, 1  # keeps the identity and the image random streams apart
_PAD = 16  # the person is drawn on a padded canvas so that the pose warp never exposes its edges
_SHIFT = 4  # fractional bits of cv2 drawing coordinates
_RAMP = np.linspace(-1, 1, SIZE, dtype=np.float32)
_HAIR_COLOURS = np.array(
    [[22, 18, 16], [45, 30, 20], [75, 50, 30], [110, 75, 45], [150, 105, 60], [195, 160, 100],
     [140, 60, 30], [120, 115, 110], [185, 180, 175]]
)
_IRIS_COLOURS = np.array([[60, 35, 20], [95, 60, 30], [70, 110, 160], [80, 120, 80], [110, 115, 120], [120, 95, 50]])
_HAIR_STYLES = ("bald", "short", "short", "long", "long", "buzz")
_BEARDS = ("none",) * 6 + ("moustache", "full", "goatee", "stubble")
_GLASSES = ("none",) * 6 + ("round", "square")
_EYE_WHITE, _PUPIL, _LASHES = (240.0, 238.0, 232.0), (15.0, 12.0, 12.0), (35.0, 25.0, 25.0)
_MOUTH_INSIDE, _TEETH = (70.0, 20.0, 25.0), (235.0, 230.0, 215.0)
_LOG = logging.getLogger(__name__)


def _check_index(name, value, minimum=0):
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
        raise ValueError(f"synthetic {name}={value!r}: expected an integer >= {minimum}")
    return int(value)


# ---------------------------------------------------------------------------------------------- drawing


def _fixed(points):
    return (np.asarray(points) * (1 << _SHIFT) + 0.5).astype(np.int32).reshape(-1, 1, 2)


@functools.lru_cache(maxsize=None)
def _unit_arc(start, end, n):
    t = np.linspace(start, end, n)
    return np.stack([np.cos(t), np.sin(t)], axis=1)


@functools.lru_cache(maxsize=None)
def _grid(n):
    return np.linspace(-1, 1, n)


def _ellipse(cx, cy, a, b, start=0.0, end=2 * np.pi, n=32):
    return _unit_arc(start, end, n) * (a, b) + (cx, cy)


def _curve(x, y):
    return np.stack([x, y], axis=1)


class _Canvas:
    """An RGB layer and its coverage mask, drawn anti-aliased with sub-pixel coordinates."""

    def __init__(self, size=None, image=None):
        self.image = np.zeros((size, size, 3), np.uint8) if image is None else image
        self.mask = np.zeros(self.image.shape[:2], np.uint8)

    def fill(self, points, colour, silhouette=False):
        points = [_fixed(points)]
        cv2.fillPoly(self.image, points, colour, cv2.LINE_AA, _SHIFT)
        if silhouette:
            cv2.fillPoly(self.mask, points, 255, cv2.LINE_AA, _SHIFT)

    def line(self, points, colour, thickness=1):
        cv2.polylines(self.image, [_fixed(points)], False, colour, thickness, cv2.LINE_AA, _SHIFT)

    def ellipse(self, cx, cy, a, b, colour, angle=0.0, arc=(0, 360), thickness=-1, silhouette=False):
        """A filled ellipse (or sector, for an arc), or its outline when thickness > 0; angles in degrees."""
        one = 1 << _SHIFT
        centre, axes = (int(cx * one + 0.5), int(cy * one + 0.5)), (int(a * one + 0.5) or 1, int(b * one + 0.5) or 1)
        cv2.ellipse(self.image, centre, axes, angle, arc[0], arc[1], colour, thickness, cv2.LINE_AA, _SHIFT)
        if silhouette:
            cv2.ellipse(self.mask, centre, axes, angle, arc[0], arc[1], 255, thickness, cv2.LINE_AA, _SHIFT)


def _rgb(colour):
    return tuple(float(c) for c in np.clip(colour, 0, 255))


# ---------------------------------------------------------------------------------------------- identity


@functools.lru_cache(maxsize=256)
def identity_traits(seed, identity):
    """The fixed appearance of one identity: a dict of shapes, sizes and colours (canonical 112 frame).

    Outlines are relative to the face centre; the returned arrays are shared: do not modify them.
    """
    rng = np.random.default_rng([_check_index("seed", seed), _IDENTITY_STREAM, _check_index("identity", identity)])
    u = rng.uniform
    tone = u(0, 1)
    skin = (1 - tone) * np.array([235, 198, 170]) + tone * np.array([105, 68, 48])  # light to dark
    skin = np.clip(skin + rng.normal(0, 7, 3), 30, 250)
    hair = np.clip(_HAIR_COLOURS[rng.integers(len(_HAIR_COLOURS))] * u(0.8, 1.2) + rng.normal(0, 8, 3), 0, 255)
    cy, a, b, jaw, chin = u(58, 64), u(33, 43), u(45, 53), u(1.7, 3.2), u(0.0, 0.3)
    eye = dict(dx=u(-4, 4), dy=u(-4, 3), w=u(6.5, 10.5), h=u(2.8, 5.0), tilt=u(-10, 10), iris_r=u(2.6, 3.8),
               iris=_rgb(_IRIS_COLOURS[rng.integers(len(_IRIS_COLOURS))] + rng.normal(0, 10, 3)))
    style = _HAIR_STYLES[rng.integers(len(_HAIR_STYLES))]
    hair_line, curve, tilt, volume = u(16, 34), u(-10, 10), u(-8, 8), u(2, 10)

    # Face outline: upper half an ellipse, lower half a superellipse narrowing towards the chin.
    s = np.linspace(0, np.pi, 32)
    lower_x = np.sign(np.cos(s)) * np.abs(np.cos(s)) ** (2 / jaw) * (1 - chin * np.sin(s) ** 2)
    outline = np.vstack([_curve(a * lower_x, b * np.sin(s) ** (2 / jaw)), _ellipse(0, 0, a, b, np.pi, 2 * np.pi)])

    # Hair cap: between the top of a head-sized ellipse and the hairline, down to the temples at the sides.
    cap = long_hair = None
    if style != "bald":
        volume = 1.0 if style == "buzz" else volume
        width, height = a + 0.6 * volume, b + volume
        x = np.linspace(-width, width, 24)
        top = -2 - height * np.sqrt(np.clip(1 - (x / width) ** 2, 0, 1))
        line = np.minimum(hair_line + curve * (x / a) ** 2 + tilt * x / a, TEMPLATE[0, 1] + eye["dy"] - 14) - cy
        temple = TEMPLATE[0, 1] + eye["dy"] - 2 - cy
        drop = np.clip((np.abs(x) / a - 0.78) / 0.3, 0, 1) ** 2
        cap = np.vstack([_curve(x, top), _curve(x, np.maximum(line * (1 - drop) + temple * drop, top))[::-1]])
        if style == "buzz":
            hair = 0.5 * hair + 0.5 * skin
    if style == "long":  # hair behind the head, falling to the shoulders
        side = a + volume + 2
        long_hair = np.vstack([_ellipse(0, -2, a + volume, b + volume, np.pi, 2 * np.pi),
                               [[side, SIZE + _PAD - cy + 20], [-side, SIZE + _PAD - cy + 20]]])

    lips = skin * u(0.55, 0.85) + np.array([45, 0, 5]) * u(0.3, 1.2)
    lips = {"upper": _rgb(lips), "lower": _rgb(lips * 1.08), "seam": _rgb(lips * 0.6)}
    return {
        "skin": {shade: _rgb(skin * factor) for shade, factor in
                 (("face", 1), ("ear", 0.9), ("neck", 0.82), ("shadow", 0.72), ("lid", 0.7), ("dark", 0.45))},
        "stubble": _rgb(0.6 * skin + 0.4 * hair),
        "face": dict(cy=cy, a=a, b=b, outline=outline),
        "hair": dict(colour=_rgb(hair), cap=cap, long=long_hair),
        "ear": dict(size=u(7, 12), y=u(54, 66)),
        "eye": eye,
        "brow": dict(gap=u(4.5, 10), thick=int(rng.integers(1, 5)), arch=u(0.5, 4), angle=u(-12, 12),
                     length=u(0.9, 1.5), colour=_rgb(hair * u(0.5, 0.9))),
        "nose": dict(tip=u(-5, 6), w=u(4.5, 9.5), bridge=u() < 0.5, nostril=u(1.2, 2.4)),
        "mouth": dict(dy=u(-4, 4), w=u(10, 17), upper=u(1.5, 4.0), lower=u(2.0, 5.5), colour=lips),
        "beard": _BEARDS[rng.integers(len(_BEARDS))],
        "glasses": dict(kind=_GLASSES[rng.integers(len(_GLASSES))], colour=_rgb(u(0, 200, 3)), size=u(0.9, 1.3)),
        "moles": [(u(-0.7, 0.7), u(-0.2, 0.8), u(0.9, 1.8)) for _ in range(rng.integers(0, 4))],
    }


def _image_nuisance(rng):
    """Expression, head turn and pose of one image (values drawn in blocks: generator calls are the cost)."""
    yaw, pitch, talking, mouth_open, smile, blink, eye_open, brow = rng.random(8).tolist()
    angle, scale, shift_x, shift_y, gaze_x, gaze_y = rng.standard_normal(6).tolist()
    return {
        "yaw": 2 * yaw - 1, "pitch": 2 * pitch - 1,
        "mouth_open": 0.2 + 0.8 * mouth_open if talking < 0.3 else 0.0, "smile": 1.3 * smile - 0.3,
        "eye_open": 0.15 if blink < 0.05 else 0.55 + 0.45 * eye_open, "brow_raise": 4 * brow - 1.5,
        "gaze": (0.8 * gaze_x, 0.8 * gaze_y),
        "angle": min(max(6 * angle, -15), 15),  # degrees
        "scale": math.exp(min(max(0.06 * scale, -0.15), 0.15)),
        "shift": np.clip([2.5 * shift_x, 2.5 * shift_y], -6, 6),
    }


@functools.lru_cache(maxsize=32)
def _head(seed, identity):
    """The parts of an identity that no image changes (hair, head, ears, neck, moles, beard): (image, mask).

    Drawn once on a padded canvas (canonical frame + _PAD); the arrays are shared and read-only.
    """
    t = identity_traits(seed, identity)
    size, p = SIZE + 2 * _PAD, _PAD
    c = _Canvas(size)
    face, skin, hair = t["face"], t["skin"], t["hair"]
    cx, cy, a = 56 + p, face["cy"] + p, face["a"]
    if hair["long"] is not None:
        c.fill(hair["long"] + (cx, cy), hair["colour"], True)
    neck_top, neck_w = cy + 0.3 * face["b"], 0.55 * a
    c.fill([[cx - neck_w, neck_top], [cx + neck_w, neck_top], [cx + neck_w + 3, size], [cx - neck_w - 3, size]],
           skin["neck"], True)
    ear = t["ear"]
    for side in (-1, 1):
        ex, ey = cx + side * (a - 1.5), ear["y"] + p
        c.ellipse(ex, ey, 0.5 * ear["size"], ear["size"], skin["ear"], silhouette=True)
        c.ellipse(ex + side * 1.2, ey, 0.25 * ear["size"], 0.6 * ear["size"], skin["lid"],
                  arc=(-90, 90) if side > 0 else (90, 270), thickness=1)
    outline = face["outline"] + (cx, cy)
    c.fill(outline, skin["face"], True)
    if hair["cap"] is not None:
        c.fill(hair["cap"] + (cx, cy), hair["colour"], True)
    if t["beard"] in ("full", "stubble"):
        below_nose = outline[outline[:, 1] > TEMPLATE[2, 1] + p + t["nose"]["tip"] + 2]
        c.fill(below_nose, hair["colour"] if t["beard"] == "full" else t["stubble"])
    for mx, my, r in t["moles"]:
        c.ellipse(cx + mx * a, cy + my * face["b"] * 0.6, r, r, skin["dark"])
    c.image.flags.writeable = c.mask.flags.writeable = False
    return c.image, c.mask


def _draw_face(head, t, n):
    """Eyes, brows, nose, mouth, moustache and glasses of identity `t` under expression and head turn `n`.

    Drawn on a copy of the head image; the features move against the head to suggest yaw and pitch.
    """
    c = _Canvas(image=head.copy())
    p, skin, eye = _PAD, t["skin"], t["eye"]
    eye_y = TEMPLATE[0, 1] + p + eye["dy"] + 0.8 * n["pitch"]
    eyes_x = [TEMPLATE[i, 0] + p + side * eye["dx"] + 3.5 * n["yaw"] for i, side in ((0, -1), (1, 1))]
    for side, ex in zip((-1, 1), eyes_x):
        _draw_eye(c, ex, eye_y, side, eye, n, skin)
        brow = t["brow"]
        brow_y = eye_y - eye["h"] - brow["gap"] - n["brow_raise"] + brow["arch"]
        c.ellipse(ex, brow_y, eye["w"] * brow["length"], brow["arch"], brow["colour"], -side * brow["angle"],
                  (180, 360), brow["thick"])

    nose = t["nose"]
    nx = TEMPLATE[2, 0] + p + 5.0 * n["yaw"]
    tip = TEMPLATE[2, 1] + p + nose["tip"] + 1.5 * n["pitch"]
    if nose["bridge"]:
        c.line([[nx - 2.5 - 1.5 * n["yaw"], eye_y + 4], [nx - nose["w"] * 0.45, tip - 3]], skin["shadow"])
    c.ellipse(nx, tip - 2.5, nose["w"], 3.5, skin["shadow"], arc=(0, 180), thickness=1)
    for side in (-1, 1):
        c.ellipse(nx + side * nose["w"] * 0.45, tip + 0.5, nose["nostril"], nose["nostril"] * 0.6, skin["dark"])

    mouth_x, mouth_y = _MOUTH[0] + p + 4.0 * n["yaw"], _MOUTH[1] + p + t["mouth"]["dy"]
    _draw_moustache(c, t, mouth_x, tip, mouth_y)
    _draw_mouth(c, t["mouth"], n, mouth_x, mouth_y)
    _draw_glasses(c, t["glasses"], eyes_x, eye_y, eye["w"])
    return c.image


def _draw_eye(c, ex, ey, side, eye, n, skin):
    """Almond of two half ellipses; the iris is squeezed to fit between the lids."""
    w, upper, lower = eye["w"], eye["h"] * n["eye_open"], 0.7 * eye["h"]
    tilt = -side * eye["tilt"]
    c.ellipse(ex, ey, w, upper, _EYE_WHITE, tilt, (180, 360))
    c.ellipse(ex, ey, w, lower, _EYE_WHITE, tilt, (0, 180))
    r, half = eye["iris_r"], min(eye["iris_r"], 0.5 * (upper + lower))
    ix, iy = ex + n["gaze"][0], ey + 0.5 * (lower - upper) + 0.3 * n["gaze"][1]
    c.ellipse(ix, iy, r, half, eye["iris"])
    c.ellipse(ix, iy, 0.45 * r, 0.45 * half, _PUPIL)
    c.ellipse(ix + 0.4 * r, iy - 0.4 * half, 0.3 * r, 0.3 * half, _EYE_WHITE)
    c.ellipse(ex, ey, w, upper, _LASHES, tilt, (180, 360), 2 if n["eye_open"] > 0.3 else 1)
    c.ellipse(ex, ey, w, lower, skin["lid"], tilt, (0, 180), 1)


_LIP_X = _grid(15)
_LIP_BULGE = 1 - _LIP_X ** 2
_UPPER_LIP = _LIP_BULGE ** 0.6 - 0.8 * np.exp(-((_LIP_X / 0.15) ** 2))  # with a cupid's bow (per unit thickness)
_LOWER_LIP = _LIP_BULGE ** 0.7


def _draw_mouth(c, mouth, n, mx, my):
    seam = my - 4.0 * n["smile"] * _LIP_X ** 2
    gap = 4.0 * n["mouth_open"] * _LIP_BULGE
    upper_bottom, lower_top = seam - gap, seam + gap
    upper_top = upper_bottom - mouth["upper"] * _UPPER_LIP
    lower_bottom = lower_top + mouth["lower"] * _LOWER_LIP
    x = mx + mouth["w"] * _LIP_X

    def band(top, bottom):
        return np.vstack([_curve(x, top), _curve(x, bottom)[::-1]])

    if n["mouth_open"] > 0:
        c.fill(band(upper_bottom, lower_top), _MOUTH_INSIDE)
        c.fill(band(upper_bottom, np.minimum(upper_bottom + 2.0, lower_top)), _TEETH)
    c.fill(band(upper_top, upper_bottom), mouth["colour"]["upper"])
    c.fill(band(lower_top, lower_bottom), mouth["colour"]["lower"])
    c.line(_curve(x, upper_bottom), mouth["colour"]["seam"])


def _draw_moustache(c, t, mouth_x, tip, mouth_y):
    kind, colour = t["beard"], t["hair"]["colour"]
    if kind in ("moustache", "full"):  # a band over the upper lip, drooping at the ends
        xs = _grid(11)
        x, lip = mouth_x + (t["mouth"]["w"] + 2) * xs, mouth_y - t["mouth"]["upper"] - 1 + 3 * xs ** 2
        c.fill(np.vstack([_curve(x, np.maximum(lip - 4, tip + 2)), _curve(x, lip)[::-1]]), colour)
    if kind == "goatee":
        c.ellipse(mouth_x, mouth_y + 10, 7, 7, colour)


def _draw_glasses(c, glasses, eyes_x, eye_y, eye_w):
    if glasses["kind"] == "none":
        return
    half, colour = eye_w * glasses["size"] + 2, glasses["colour"]
    for gx in eyes_x:
        if glasses["kind"] == "round":
            c.ellipse(gx, eye_y, half, half * 0.8, colour, thickness=2)
        else:
            c.line(np.array([[-1, -0.7], [1, -0.7], [1, 0.7], [-1, 0.7], [-1, -0.7]]) * half + (gx, eye_y), colour, 2)
    c.line([[eyes_x[0] + half, eye_y - 1], [eyes_x[1] - half, eye_y - 1]], colour, 2)


def _gradient(direction):
    """A unit linear ramp across the image in `direction` (radians): float32 (112, 112)."""
    return math.cos(direction) * _RAMP[None, :] + math.sin(direction) * _RAMP[:, None]


def _colour_map(plane, scale, offset=(0, 0, 0)):
    """float32 (112, 112, 3): plane * scale[c] + offset[c] per channel (faster than broadcasting over 3)."""
    return cv2.merge([plane * np.float32(s) + np.float32(o) for s, o in zip(scale, offset)])


def _background(rng):
    """A colour ramp with random shapes and shoulders, sometimes out of focus: float32 (112, 112, 3)."""
    direction, *ramp = rng.random(7).tolist()
    image = _colour_map(_gradient(2 * np.pi * direction), [120 * r - 60 for r in ramp[:3]], [255 * r for r in ramp[3:]])
    for kind, *corners, size, red, green, blue in rng.random((rng.integers(3, 11), 11)).tolist():
        x1, y1, x2, y2, x3, y3 = (int(132 * v) - 10 for v in corners)  # shapes may leave the frame
        colour = (255 * red, 255 * green, 255 * blue)
        if kind < 0.25:
            cv2.rectangle(image, (x1, y1), (x2, y2), colour, -1)
        elif kind < 0.5:
            cv2.circle(image, (x1, y1), int(3 + 27 * size), colour, -1, cv2.LINE_AA)
        elif kind < 0.75:
            cv2.line(image, (x1, y1), (x2, y2), colour, int(1 + 7 * size), cv2.LINE_AA)
        else:
            cv2.fillPoly(image, [np.int32([[x1, y1], [x2, y2], [x3, y3]])], colour, cv2.LINE_AA)
    shoulder_x, blurred, sigma, *shirt = rng.random(6).tolist()
    cv2.ellipse(image, (int(48 + 16 * shoulder_x), SIZE + 34), (62, 42), 0, 0, 360,
                tuple(255 * v for v in shirt), -1, cv2.LINE_AA)
    if blurred < 0.5:  # out of focus
        image = cv2.GaussianBlur(image, (0, 0), 0.8 + 1.7 * sigma)
    return image


@functools.lru_cache(maxsize=1)
def _noise_bank():
    """Fixed zero-mean uniform noise of unit std; each image takes a random window (cheaper than fresh noise)."""
    noise = np.random.default_rng(12345).random((2 * SIZE, 2 * SIZE, 3), dtype=np.float32)
    return (noise - np.float32(0.5)) * np.float32(np.sqrt(12))


def render_identity_image(seed, identity, image):
    """Image `image` of identity `identity` under `seed`: np.uint8 (112, 112, 3) RGB, deterministic."""
    traits = identity_traits(seed, identity)
    rng = np.random.default_rng([int(seed), _IMAGE_STREAM, int(identity), _check_index("image", image)])
    nuisance = _image_nuisance(rng)
    head, mask = _head(seed, identity)
    person = _draw_face(head, traits, nuisance)

    warp = cv2.getRotationMatrix2D(_POSE_CENTRE, nuisance["angle"], nuisance["scale"])
    warp[:, 2] += nuisance["shift"] - warp[:, :2] @ [_PAD, _PAD]  # padded canvas -> canonical -> posed
    face = cv2.warpAffine(person, warp, (SIZE, SIZE), flags=cv2.INTER_LINEAR).astype(np.float32)
    alpha = cv2.warpAffine(mask, warp, (SIZE, SIZE), flags=cv2.INTER_LINEAR).astype(np.float32) / 255
    pixels = cv2.blendLinear(face, _background(rng), alpha, 1 - alpha)

    strength, direction, exposure, blurred, sigma, noise, y, x = rng.random(8).tolist()
    light = 1 + np.float32(0.5 * strength) * _gradient(2 * np.pi * direction)  # lighting gradient
    white_balance = np.exp(0.07 * rng.standard_normal(3)) * (0.75 + 0.45 * exposure)
    pixels *= _colour_map(light, white_balance)
    if blurred < 0.6:
        pixels = cv2.GaussianBlur(pixels, (0, 0), 0.3 + 0.9 * sigma)
    y, x = int(SIZE * y), int(SIZE * x)
    pixels += _noise_bank()[y:y + SIZE, x:x + SIZE] * np.float32(1 + 6 * noise)
    return np.clip(np.rint(pixels), 0, 255).astype(np.uint8)


@contextlib.contextmanager
def _single_threaded_cv2():
    """cv2's own threads only slow down the small images drawn here."""
    threads = cv2.getNumThreads()
    cv2.setNumThreads(1)
    try:
        yield
    finally:
        cv2.setNumThreads(threads)


def render_identities(seed, identities, images_per_identity, first_identity=0):
    """All images of identities first_identity.. in memory: (uint8 (N*K, 112, 112, 3) RGB, int labels 0..N-1)."""
    with _single_threaded_cv2():
        images = np.stack([render_identity_image(seed, first_identity + i, k)
                           for i in range(identities) for k in range(images_per_identity)])
    return images, np.repeat(np.arange(identities), images_per_identity)


# ---------------------------------------------------------------------------------------------- difficulty


def verification_pairs(labels, pairs, seed=0):
    """Balanced same/different pairs, alternating so every contiguous fold is balanced: (first, second, issame)."""
    labels = np.asarray(labels)
    classes = np.unique(labels)
    members = {c: np.flatnonzero(labels == c) for c in classes}
    with_two = [c for c in classes if len(members[c]) >= 2]
    if not with_two or len(classes) < 2:
        raise ValueError(f"verification pairs need 2+ identities, one with 2+ images; got {len(classes)} identities")
    rng = np.random.default_rng([seed, 2])
    first, second = np.empty(pairs, int), np.empty(pairs, int)
    issame = np.arange(pairs) % 2 == 0
    for p in range(pairs):
        if issame[p]:
            first[p], second[p] = rng.choice(members[with_two[rng.integers(len(with_two))]], 2, replace=False)
        else:
            a, b = rng.choice(classes, 2, replace=False)
            first[p], second[p] = rng.choice(members[a]), rng.choice(members[b])
    return first, second, issame


def verification_accuracy(features, labels, pairs=1000, seed=0):
    """10-fold verification accuracy (insightface protocol) of cosine similarity between feature vectors."""
    features = np.asarray(features, np.float64).reshape(len(features), -1)
    first, second, issame = verification_pairs(labels, pairs, seed)
    return kfold_accuracy(pair_distances(features[first], features[second]), issame)


def raw_pixel_accuracy(images, labels, pairs=1000, seed=0):
    """The no-learning baseline: verification accuracy of centred, L2-normalised raw pixels."""
    return verification_accuracy((np.asarray(images, np.float32) - 127.5) / 127.5, labels, pairs, seed)


# ---------------------------------------------------------------------------------------------- folders


def identity_name(identity):
    return f"id_{identity:05d}"


def _image_path(out_dir, identity, image):
    return Path(out_dir) / identity_name(identity) / f"{image:04d}.jpg"


def _is_valid_image(path):
    if not path.is_file():
        return False
    pixels = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    return pixels is not None and pixels.shape == (SIZE, SIZE, 3)


def _write_identity(out_dir, seed, identity, images_per_identity):
    """Write the missing or unreadable images of one identity; return how many were written."""
    written = 0
    for image in range(images_per_identity):
        path = _image_path(out_dir, identity, image)
        if _is_valid_image(path):
            continue
        rgb = render_identity_image(seed, identity, image)
        ok, jpeg = cv2.imencode(".jpg", rgb[..., ::-1], [cv2.IMWRITE_JPEG_QUALITY, JPEG_QUALITY])
        if not ok:
            raise RuntimeError(f"{path}: JPEG encoding failed")
        with atomic_path(path) as tmp:
            tmp.write_bytes(jpeg.tobytes())
        written += 1
    return written


def _manifest(identities, images_per_identity, seed, first_identity):
    return {
        "generator": __name__,
        "version": GENERATOR_VERSION,
        "seed": seed,
        "first_identity": first_identity,
        "identities": identities,
        "images_per_identity": images_per_identity,
        "image_size": SIZE,
        "layout": "id_<identity, 5 digits>/<image, 4 digits>.jpg",
    }


def _read_manifest(path):
    try:
        return json.loads(Path(path).read_text())
    except (OSError, ValueError):
        return None


def write_identities(out_dir, identities, images_per_identity, seed=0, first_identity=0, workers=1):
    """Write identities first_identity.. as `<out_dir>/id_XXXXX/KKKK.jpg`; return out_dir.

    Existing valid images are kept, so an interrupted run resumes. `synthetic.json`, written last,
    marks the folder complete; a folder made with another seed or generator version is refused.
    """
    out_dir = Path(out_dir)
    identities = _check_index("identities", identities, 1)
    images_per_identity = _check_index("images_per_identity", images_per_identity, 1)
    seed, first_identity = _check_index("seed", seed), _check_index("first_identity", first_identity)
    workers = _check_index("workers", workers, 1)
    manifest_path = out_dir / MANIFEST
    old = _read_manifest(manifest_path)
    if old is not None and (old.get("seed"), old.get("version")) != (seed, GENERATOR_VERSION):
        raise ValueError(f"{manifest_path}: holds seed {old.get('seed')} of generator version {old.get('version')},"
                         f" not seed {seed} of version {GENERATOR_VERSION}; use another folder")
    manifest_path.unlink(missing_ok=True)  # complete again only once every image is there
    ids = range(first_identity, first_identity + identities)
    jobs = ([out_dir] * len(ids), [seed] * len(ids), ids, [images_per_identity] * len(ids))
    if workers == 1:
        with _single_threaded_cv2():
            written = sum(map(_write_identity, *jobs))
    else:
        context = multiprocessing.get_context("spawn")  # the caller may hold TensorFlow threads: no fork
        with concurrent.futures.ProcessPoolExecutor(workers, context, initializer=cv2.setNumThreads,
                                                    initargs=(1,)) as pool:
            written = sum(pool.map(_write_identity, *jobs, chunksize=max(1, len(ids) // (8 * workers))))
    write_json(manifest_path, _manifest(identities, images_per_identity, seed, first_identity))
    total = identities * images_per_identity
    _LOG.info("%s: wrote %d images, kept %d existing (%d identities x %d images)",
              out_dir, written, total - written, identities, images_per_identity)
    return out_dir


def ensure_synthetic(cache_dir, identities, images_per_identity, seed, first_identity=0, workers=1):
    """A complete synthetic folder under `cache_dir` keyed by the parameters, generated if absent or incomplete."""
    folder = Path(cache_dir).expanduser() / (
        f"synthetic_v{GENERATOR_VERSION}_seed{seed}_id{first_identity}-{first_identity + identities - 1}"
        f"_x{images_per_identity}")
    if _read_manifest(folder / MANIFEST) == _manifest(identities, images_per_identity, seed, first_identity):
        return folder
    return write_identities(folder, identities, images_per_identity, seed, first_identity, workers)
