"""Synthetic face identities: stylised, seeded faces drawn around the ArcFace 5-point template.

Each identity has fixed traits (face shape, skin tone, eyes, brows, nose, mouth, hair, beard,
glasses, moles); each image adds nuisance (expression, slight yaw/pitch, pose as one similarity
warp, background clutter, lighting gradient, colour cast, blur, noise). The pixels depend only on
(seed, identity, image), so identities can be generated in any order and number, and a held-out set
is simply another range of identity indices drawn from the same distribution.
"""
import concurrent.futures
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

    def __init__(self, size):
        self.image = np.zeros((size, size, 3), np.uint8)
        self.mask = np.zeros((size, size), np.uint8)

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
        "mouth": dict(dy=u(-4, 4), w=u(10, 17), upper=u(1.5, 4.0), lower=u(2.0, 5.5),
                      colour=np.clip(skin * u(0.55, 0.85) + np.array([45, 0, 5]) * u(0.3, 1.2), 0, 255)),
        "beard": _BEARDS[rng.integers(len(_BEARDS))],
        "glasses": dict(kind=_GLASSES[rng.integers(len(_GLASSES))], colour=_rgb(u(0, 200, 3)), size=u(0.9, 1.3)),
        "moles": [(u(-0.7, 0.7), u(-0.2, 0.8), u(0.9, 1.8)) for _ in range(rng.integers(0, 4))],
    }


def _image_nuisance(rng):
    u = rng.uniform
    return {
        "yaw": u(-1, 1), "pitch": u(-1, 1),
        "mouth_open": u(0.2, 1.0) if u() < 0.3 else 0.0, "smile": u(-0.3, 1.0),
        "eye_open": 0.15 if u() < 0.05 else u(0.55, 1.0), "gaze": rng.normal(0, 0.8, 2), "brow_raise": u(-1.5, 2.5),
        "angle": float(np.clip(rng.normal(0, 6), -15, 15)),
        "scale": float(np.exp(np.clip(rng.normal(0, 0.06), -0.15, 0.15))),
        "shift": np.clip(rng.normal(0, 2.5, 2), -6, 6),
        "shirt": _rgb(u(0, 255, 3)),
    }


def _draw_person(t, n):
    """Draw identity `t` with expression and head turn `n` on a padded canvas (canonical frame + _PAD)."""
    size, p = SIZE + 2 * _PAD, _PAD
    c = _Canvas(size)
    face, skin, hair = t["face"], t["skin"], t["hair"]
    cx, cy, a = 56 + p - 1.0 * n["yaw"], face["cy"] + p, face["a"]  # the head turns against its features

    if hair["long"] is not None:
        c.fill(hair["long"] + (cx, cy), hair["colour"], True)
    c.ellipse(56 + p, size + 18, 62, 42, n["shirt"], silhouette=True)  # shoulders
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

    eye = t["eye"]
    eye_y = TEMPLATE[0, 1] + p + eye["dy"] + 0.8 * n["pitch"]
    eyes_x = [TEMPLATE[i, 0] + p + side * eye["dx"] + 2.5 * n["yaw"] for i, side in ((0, -1), (1, 1))]
    for side, ex in zip((-1, 1), eyes_x):
        _draw_eye(c, ex, eye_y, side, eye, n, skin)
        brow = t["brow"]
        brow_y = eye_y - eye["h"] - brow["gap"] - n["brow_raise"] + brow["arch"]
        c.ellipse(ex, brow_y, eye["w"] * brow["length"], brow["arch"], brow["colour"], -side * brow["angle"],
                  (180, 360), brow["thick"])

    nose = t["nose"]
    nx = TEMPLATE[2, 0] + p + 4.0 * n["yaw"]
    tip = TEMPLATE[2, 1] + p + nose["tip"] + 1.5 * n["pitch"]
    if nose["bridge"]:
        c.line([[nx - 2.5 - 1.5 * n["yaw"], eye_y + 4], [nx - nose["w"] * 0.45, tip - 3]], skin["shadow"])
    c.ellipse(nx, tip - 2.5, nose["w"], 3.5, skin["shadow"], arc=(0, 180), thickness=1)
    for side in (-1, 1):
        c.ellipse(nx + side * nose["w"] * 0.45, tip + 0.5, nose["nostril"], nose["nostril"] * 0.6, skin["dark"])

    mouth_x, mouth_y = _MOUTH[0] + p + 3.0 * n["yaw"], _MOUTH[1] + p + t["mouth"]["dy"]
    _draw_beard(c, t, outline, mouth_x, tip, mouth_y)
    _draw_mouth(c, t["mouth"], n, mouth_x, mouth_y)
    for mx, my, r in t["moles"]:
        c.ellipse(cx + mx * a, cy + my * face["b"] * 0.6, r, r, skin["dark"])
    _draw_glasses(c, t["glasses"], eyes_x, eye_y, eye["w"])
    return c


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


def _draw_mouth(c, mouth, n, mx, my):
    xs = _grid(15)
    bulge = 1 - xs ** 2
    seam = my - 4.0 * n["smile"] * xs ** 2
    gap = 8.0 * n["mouth_open"] * bulge
    upper_bottom, lower_top = seam - 0.5 * gap, seam + 0.5 * gap
    upper_top = upper_bottom - mouth["upper"] * bulge ** 0.6 + 0.8 * np.exp(-((xs / 0.15) ** 2))
    lower_bottom = lower_top + mouth["lower"] * bulge ** 0.7
    x = mx + mouth["w"] * xs

    def band(top, bottom):
        return np.vstack([_curve(x, top), _curve(x, bottom)[::-1]])

    if n["mouth_open"] > 0:
        c.fill(band(upper_bottom, lower_top), _MOUTH_INSIDE)
        c.fill(band(upper_bottom, np.minimum(upper_bottom + 2.0, lower_top)), _TEETH)
    c.fill(band(upper_top, upper_bottom), _rgb(mouth["colour"]))
    c.fill(band(lower_top, lower_bottom), _rgb(mouth["colour"] * 1.08))
    c.line(_curve(x, upper_bottom), _rgb(mouth["colour"] * 0.6))


def _draw_beard(c, t, outline, mouth_x, tip, mouth_y):
    kind, colour = t["beard"], t["hair"]["colour"]
    if kind in ("full", "stubble"):
        c.fill(outline[outline[:, 1] > tip + 2], colour if kind == "full" else t["stubble"])
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
    """A colour ramp with random shapes, sometimes out of focus: float32 (112, 112, 3)."""
    u = rng.uniform
    image = _colour_map(_gradient(u(0, 2 * np.pi)), u(-60, 60, 3), u(0, 255, 3))
    for _ in range(rng.integers(3, 11)):
        colour = tuple(float(v) for v in u(0, 255, 3))
        kind = rng.integers(4)
        x, y = (int(v) for v in u(-10, SIZE + 10, 2))
        if kind == 0:
            w, h = (int(v) for v in u(5, 50, 2))
            cv2.rectangle(image, (x, y), (x + w, y + h), colour, -1)
        elif kind == 1:
            cv2.circle(image, (x, y), int(u(3, 30)), colour, -1, cv2.LINE_AA)
        elif kind == 2:
            x2, y2 = (int(v) for v in u(-10, SIZE + 10, 2))
            cv2.line(image, (x, y), (x2, y2), colour, int(u(1, 8)), cv2.LINE_AA)
        else:
            cv2.fillPoly(image, [_fixed(u(-10, SIZE + 10, (3, 2)))], colour, cv2.LINE_AA, _SHIFT)
    if u() < 0.5:  # out of focus
        image = cv2.GaussianBlur(image, (0, 0), u(0.8, 2.5))
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
    person = _draw_person(traits, nuisance)

    warp = cv2.getRotationMatrix2D(_POSE_CENTRE, nuisance["angle"], nuisance["scale"])
    warp[:, 2] += nuisance["shift"] - warp[:, :2] @ [_PAD, _PAD]  # padded canvas -> canonical -> posed
    face = cv2.warpAffine(person.image, warp, (SIZE, SIZE), flags=cv2.INTER_LINEAR).astype(np.float32)
    alpha = cv2.warpAffine(person.mask, warp, (SIZE, SIZE), flags=cv2.INTER_LINEAR).astype(np.float32) / 255
    pixels = cv2.blendLinear(face, _background(rng), alpha, 1 - alpha)

    light = 1 + np.float32(rng.uniform(0, 0.5)) * _gradient(rng.uniform(0, 2 * np.pi))  # lighting gradient
    colour = np.exp(rng.normal(0, 0.07, 3)) * rng.uniform(0.75, 1.2)  # white balance and exposure
    pixels *= _colour_map(light, colour)
    if rng.uniform() < 0.6:
        pixels = cv2.GaussianBlur(pixels, (0, 0), rng.uniform(0.3, 1.2))
    y, x = rng.integers(0, SIZE, 2)
    pixels += _noise_bank()[y:y + SIZE, x:x + SIZE] * np.float32(rng.uniform(1, 7))
    return np.clip(np.rint(pixels), 0, 255).astype(np.uint8)


def render_identities(seed, identities, images_per_identity, first_identity=0):
    """All images of identities first_identity.. in memory: (uint8 (N*K, 112, 112, 3) RGB, int labels 0..N-1)."""
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


def _single_threaded_cv2():
    cv2.setNumThreads(1)


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
    old = _read_manifest(manifest_path) if manifest_path.exists() else None
    if old is not None and (old.get("seed"), old.get("version")) != (seed, GENERATOR_VERSION):
        raise ValueError(f"{manifest_path}: holds seed {old.get('seed')} of generator version {old.get('version')},"
                         f" not seed {seed} of version {GENERATOR_VERSION}; use another folder")
    if manifest_path.exists():
        manifest_path.unlink()  # complete again only once every image is there
    ids = range(first_identity, first_identity + identities)
    jobs = ([out_dir] * len(ids), [seed] * len(ids), ids, [images_per_identity] * len(ids))
    if workers == 1:
        written = sum(map(_write_identity, *jobs))
    else:
        context = multiprocessing.get_context("spawn")  # the caller may hold TensorFlow threads: no fork
        with concurrent.futures.ProcessPoolExecutor(workers, context, initializer=_single_threaded_cv2) as pool:
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
