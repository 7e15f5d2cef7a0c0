"""Synthetic face identities: stylised, seeded faces drawn around the ArcFace 5-point template.

Each identity has fixed traits (face shape, skin tone, eyes, brows, nose, mouth, hair, beard,
glasses, moles); each image adds nuisance (expression, slight yaw, pose as one similarity warp,
background clutter, lighting gradient, colour cast, blur, noise). The pixels depend only on
(seed, identity, image), so any range of identities can be generated in any order, and a held-out
set is simply another range of identity indices from the same distribution.
"""
import concurrent.futures
import functools
import json
import logging
import multiprocessing
import time
from pathlib import Path

import cv2
import numpy as np

from arcface_keras.io import atomic_path, write_json

GENERATOR_VERSION = 1  # bump whenever the pixels change: cached folders are keyed by it
SIZE = 112
TEMPLATE = np.array(
    [[38.2946, 51.6963], [73.5318, 51.5014], [56.0252, 71.7366], [41.5493, 92.3655], [70.7299, 92.2041]],
    np.float32,
)  # left eye, right eye, nose tip, left and right mouth corner (x, y) in a 112x112 crop
MANIFEST = "synthetic.json"
JPEG_QUALITY = 95

_IDENTITY_STREAM, _IMAGE_STREAM = 0, 1  # keeps identity and image random streams apart
_PAD = 16  # the face is drawn on a padded canvas so the pose warp never exposes its edges
_SHIFT = 4  # fractional bits of cv2 drawing coordinates
_HAIR_COLOURS = np.array(
    [[22, 18, 16], [45, 30, 20], [75, 50, 30], [110, 75, 45], [150, 105, 60], [195, 160, 100],
     [140, 60, 30], [120, 115, 110], [185, 180, 175]],
    np.float32,
)
_IRIS_COLOURS = np.array(
    [[60, 35, 20], [95, 60, 30], [70, 110, 160], [80, 120, 80], [110, 115, 120], [120, 95, 50]], np.float32
)
_LOG = logging.getLogger(__name__)


def _check_index(name, value):
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 0:
        raise ValueError(f"synthetic {name}={value!r}: expected a non-negative integer")
    return int(value)


def _fixed(points):
    return (np.asarray(points) * (1 << _SHIFT) + 0.5).astype(np.int32).reshape(-1, 1, 2)


@functools.lru_cache(maxsize=None)
def _unit_arc(start, end, n):
    t = np.linspace(start, end, n)
    return np.stack([np.cos(t), np.sin(t)], axis=1)


def _ellipse(cx, cy, a, b, start=0.0, end=2 * np.pi, n=40):
    return _unit_arc(start, end, n) * (a, b) + (cx, cy)


def _rotate(points, centre, degrees):
    t = np.deg2rad(degrees)
    rotation = np.array([[np.cos(t), -np.sin(t)], [np.sin(t), np.cos(t)]])
    return (points - centre) @ rotation.T + centre


class _Canvas:
    """An RGB layer and its coverage mask, drawn with anti-aliased sub-pixel polygons."""

    def __init__(self, size):
        self.image = np.zeros((size, size, 3), np.uint8)
        self.mask = np.zeros((size, size), np.uint8)

    def fill(self, points, colour, silhouette=False):
        points = [_fixed(points)]
        cv2.fillPoly(self.image, points, tuple(float(c) for c in colour), cv2.LINE_AA, _SHIFT)
        if silhouette:
            cv2.fillPoly(self.mask, points, 255, cv2.LINE_AA, _SHIFT)

    def line(self, points, colour, thickness):
        colour = tuple(float(c) for c in colour)
        cv2.polylines(self.image, [_fixed(points)], False, colour, max(1, round(thickness)), cv2.LINE_AA, _SHIFT)


@functools.lru_cache(maxsize=256)
def identity_traits(seed, identity):
    """The fixed appearance of one identity: a dict of shapes, sizes and colours (canonical 112 frame)."""
    rng = np.random.default_rng([_check_index("seed", seed), _IDENTITY_STREAM, _check_index("identity", identity)])
    u = rng.uniform
    tone = u(0, 1)
    skin = (1 - tone) * np.array([235, 198, 170]) + tone * np.array([105, 68, 48]) + rng.normal(0, 7, 3)
    hair = _HAIR_COLOURS[rng.integers(len(_HAIR_COLOURS))] * u(0.8, 1.2) + rng.normal(0, 8, 3)
    return {
        "skin": np.clip(skin, 30, 250),
        "face": dict(cy=u(58, 64), a=u(33, 43), b=u(45, 53), jaw=u(1.7, 3.2), chin=u(0.0, 0.3)),
        "ear": dict(size=u(7, 12), y=u(54, 66)),
        "eye": dict(dx=u(-4, 4), dy=u(-4, 3), w=u(6.5, 10.5), h=u(2.8, 5.0), tilt=u(-10, 10),
                    iris=_IRIS_COLOURS[rng.integers(len(_IRIS_COLOURS))] + rng.normal(0, 10, 3), iris_r=u(2.6, 3.8)),
        "brow": dict(gap=u(4.5, 10), thick=u(1.5, 4.5), arch=u(-1, 4), angle=u(-12, 12), length=u(0.9, 1.5),
                     colour=np.clip(hair * u(0.5, 0.9), 0, 255)),
        "nose": dict(tip=u(-5, 6), w=u(4.5, 9.5), bridge=u(0, 1) < 0.5, nostril=u(1.2, 2.4)),
        "mouth": dict(dy=u(-4, 4), w=u(10, 17), upper=u(1.5, 4.0), lower=u(2.0, 5.5),
                      colour=np.clip(skin * u(0.55, 0.85) + np.array([45, 0, 5]) * u(0.3, 1.2), 0, 255)),
        "hair": dict(colour=np.clip(hair, 0, 255), style=rng.choice(["bald", "short", "short", "long", "long", "buzz"]),
                     line=u(16, 34), curve=u(-10, 10), tilt=u(-8, 8), volume=u(2, 10)),
        "beard": rng.choice(["none"] * 6 + ["moustache", "full", "goatee", "stubble"]),
        "glasses": dict(kind=rng.choice(["none"] * 6 + ["round", "square"]), colour=rng.uniform(0, 200, 3),
                        size=u(0.9, 1.3)),
        "moles": [(u(-0.7, 0.7), u(-0.2, 0.8), u(0.9, 1.8)) for _ in range(rng.integers(0, 4))],
    }


def _image_nuisance(rng):
    u = rng.uniform
    return {
        "yaw": u(-1, 1), "pitch": u(-1, 1),
        "mouth_open": u(0.2, 1.0) if u() < 0.3 else 0.0, "smile": u(-0.3, 1.0),
        "eye_open": 0.15 if u() < 0.05 else u(0.55, 1.0), "gaze": rng.normal(0, 0.8, 2), "brow_raise": u(-1.5, 2.5),
        "angle": float(np.clip(rng.normal(0, 6), -15, 15)), "scale": float(np.exp(np.clip(rng.normal(0, 0.06), -0.15, 0.15))),
        "shift": np.clip(rng.normal(0, 2.5, 2), -6, 6),
        "shirt": u(0, 255, 3),
    }


def _draw_person(t, n):
    """Draw the face of traits `t` with expression/yaw `n` on a padded canvas (canonical frame + _PAD)."""
    size = SIZE + 2 * _PAD
    c = _Canvas(size)
    p = _PAD
    cx = 56 + p - 1.0 * n["yaw"]
    f = t["face"]
    cy, a, b = f["cy"] + p, f["a"], f["b"]
    skin, hair, hs = t["skin"], t["hair"]["colour"], t["hair"]
    hair_cy = cy - 2

    if hs["style"] == "long":  # hair behind the head, falling to the shoulders
        top = _ellipse(cx, hair_cy, a + hs["volume"], b + hs["volume"], np.pi, 2 * np.pi)
        c.fill(np.vstack([top, [[cx + a + hs["volume"] + 2, size], [cx - a - hs["volume"] - 2, size]]]), hair, True)
    c.fill(_ellipse(56 + p, size + 18, 62, 42), n["shirt"], True)  # shoulders
    neck_top, neck_w = cy + 0.3 * b, 0.55 * a
    c.fill([[cx - neck_w, neck_top], [cx + neck_w, neck_top], [cx + neck_w + 3, size], [cx - neck_w - 3, size]],
           skin * 0.82, True)
    for side in (-1, 1):  # ears
        ex = cx + side * (a - 1.5)
        ey = t["ear"]["y"] + p
        c.fill(_ellipse(ex, ey, 0.5 * t["ear"]["size"], t["ear"]["size"]), skin * 0.9, True)
        start = -0.5 * np.pi if side > 0 else 0.5 * np.pi
        c.line(_ellipse(ex + side * 1.2, ey, 0.25 * t["ear"]["size"], 0.6 * t["ear"]["size"], start, start + np.pi),
               skin * 0.7, 1)

    # Face: upper half an ellipse, lower half a superellipse narrowing towards the chin.
    s = np.linspace(0, np.pi, 40)
    lower_x = np.sign(np.cos(s)) * np.abs(np.cos(s)) ** (2 / f["jaw"]) * (1 - f["chin"] * np.sin(s) ** 2)
    lower = np.stack([cx + a * lower_x, cy + b * np.abs(np.sin(s)) ** (2 / f["jaw"])], axis=1)
    outline = np.vstack([lower, _ellipse(cx, cy, a, b, np.pi, 2 * np.pi)])
    c.fill(outline, skin, True)

    if hs["style"] != "bald":
        volume = 1.0 if hs["style"] == "buzz" else hs["volume"]
        arc = _ellipse(cx, hair_cy, a + 0.6 * volume, b + volume, np.pi, 2 * np.pi)
        xs = np.linspace(a + 0.6 * volume, -a - 0.6 * volume, 20)
        line_y = hs["line"] + p + hs["curve"] * (xs / a) ** 2 + hs["tilt"] * xs / a
        c.fill(np.vstack([arc, np.stack([cx + xs, np.minimum(line_y, cy - 4)], axis=1)]), hair, True)
    else:
        for side in (-1, 1):
            c.fill(_ellipse(cx + side * (a - 2), cy - 6, 3.5, 10), hair, True)

    eye = t["eye"]
    eye_cy = TEMPLATE[0, 1] + p + eye["dy"] + 0.8 * n["pitch"]
    for side, tx in ((-1, TEMPLATE[0, 0]), (1, TEMPLATE[1, 0])):
        ex = tx + p + side * eye["dx"] + 2.5 * n["yaw"]
        _draw_eye(c, ex, eye_cy, side, eye, n, skin)
        _draw_brow(c, ex, eye_cy, side, eye, t["brow"], n)

    nose = t["nose"]
    nx = TEMPLATE[2, 0] + p + 4.0 * n["yaw"]
    tip = TEMPLATE[2, 1] + p + nose["tip"] + 1.5 * n["pitch"]
    shadow = skin * 0.72
    if nose["bridge"]:
        c.line([[nx - 2.5 - 1.5 * n["yaw"], eye_cy + 4], [nx - nose["w"] * 0.45, tip - 3]], shadow, 1)
    c.line(np.stack([nx + np.linspace(-nose["w"], nose["w"], 9),
                     tip - 2.5 + 3.5 * (1 - np.linspace(-1, 1, 9) ** 2)], axis=1), shadow, 1)
    for side in (-1, 1):
        c.fill(_ellipse(nx + side * nose["w"] * 0.45, tip + 0.5, nose["nostril"], nose["nostril"] * 0.6), skin * 0.45)

    _draw_beard(c, t, outline, cx, tip)
    _draw_mouth(c, t["mouth"], n, TEMPLATE[3:, 0].mean() + p + 3.0 * n["yaw"], TEMPLATE[3:, 1].mean() + p)

    for mx, my, r in t["moles"]:
        c.fill(_ellipse(cx + mx * a, cy + my * b * 0.6, r, r, n=12), skin * 0.45)
    glasses = t["glasses"]
    if glasses["kind"] != "none":
        centres = [(tx + p + side * eye["dx"] + 2.5 * n["yaw"], eye_cy)
                   for side, tx in ((-1, TEMPLATE[0, 0]), (1, TEMPLATE[1, 0]))]
        half = eye["w"] * glasses["size"] + 2
        for gx, gy in centres:
            if glasses["kind"] == "round":
                rim = _ellipse(gx, gy, half, half * 0.8)
            else:
                rim = np.array([[gx - half, gy - 0.7 * half], [gx + half, gy - 0.7 * half],
                                [gx + half, gy + 0.7 * half], [gx - half, gy + 0.7 * half], [gx - half, gy - 0.7 * half]])
            c.line(rim, glasses["colour"], 1.6)
        c.line([[centres[0][0] + half, eye_cy - 1], [centres[1][0] - half, eye_cy - 1]], glasses["colour"], 1.6)
    return c


def _draw_eye(c, ex, ey, side, eye, n, skin):
    w, h = eye["w"], eye["h"] * n["eye_open"]
    xs = np.linspace(-1, 1, 13)
    upper = np.stack([ex + w * xs, ey - h * (1 - xs ** 2) ** 0.8], axis=1)
    lower = np.stack([ex + w * xs, ey + 0.7 * eye["h"] * (1 - xs ** 2)], axis=1)
    tilt = -side * eye["tilt"]
    upper, lower = _rotate(upper, (ex, ey), tilt), _rotate(lower, (ex, ey), tilt)
    c.fill(np.vstack([upper, lower[::-1]]), (240, 238, 232))
    r = eye["iris_r"]
    ix, iy = ex + n["gaze"][0], ey + 0.3 * n["gaze"][1]
    c.fill(_ellipse(ix, iy, r, r, n=20), eye["iris"])
    c.fill(_ellipse(ix, iy, 0.45 * r, 0.45 * r, n=12), (15, 12, 12))
    c.fill(_ellipse(ix + 0.4 * r, iy - 0.4 * r, 0.3 * r, 0.3 * r, n=8), (250, 250, 250))
    box = r + 2
    c.fill(np.vstack([upper, [[ex + w + 1, ey - box - 1], [ex - w - 1, ey - box - 1]]]), skin)  # eyelids
    c.fill(np.vstack([lower, [[ex + w + 1, ey + box + 1], [ex - w - 1, ey + box + 1]]]), skin)
    c.line(upper, (35, 25, 25), 1.5)
    c.line(lower, skin * 0.7, 1)


def _draw_brow(c, ex, ey, side, eye, brow, n):
    xs = np.linspace(-1, 1, 9) * eye["w"] * brow["length"]
    ys = ey - eye["h"] - brow["gap"] - n["brow_raise"] - brow["arch"] * (1 - (xs / xs[-1]) ** 2)
    centre = (ex, ey - eye["h"] - brow["gap"])
    c.line(_rotate(np.stack([ex + xs, ys], axis=1), centre, -side * brow["angle"]), brow["colour"], brow["thick"])


def _draw_mouth(c, mouth, n, mx, my):
    my += mouth["dy"]
    w = mouth["w"]
    xs = np.linspace(-1, 1, 15)
    bulge = 1 - xs ** 2
    seam = my - 4.0 * n["smile"] * xs ** 2
    gap = 8.0 * n["mouth_open"] * bulge
    upper_bottom = seam - 0.5 * gap
    upper_top = upper_bottom - mouth["upper"] * bulge ** 0.6 + 0.8 * np.exp(-((xs / 0.15) ** 2))
    lower_top = seam + 0.5 * gap
    lower_bottom = lower_top + mouth["lower"] * bulge ** 0.7
    x = mx + w * xs
    if n["mouth_open"] > 0:
        c.fill(np.vstack([np.stack([x, upper_bottom], 1), np.stack([x, lower_top], 1)[::-1]]), (70, 20, 25))
        teeth = np.minimum(upper_bottom + 2.0, lower_top)
        c.fill(np.vstack([np.stack([x, upper_bottom], 1), np.stack([x, teeth], 1)[::-1]]), (235, 230, 215))
    c.fill(np.vstack([np.stack([x, upper_top], 1), np.stack([x, upper_bottom], 1)[::-1]]), mouth["colour"])
    c.fill(np.vstack([np.stack([x, lower_top], 1), np.stack([x, lower_bottom], 1)[::-1]]), mouth["colour"] * 1.08)
    c.line(np.stack([x, seam - 0.5 * gap], 1), mouth["colour"] * 0.6, 1)


def _draw_beard(c, t, outline, cx, tip):
    kind, colour = t["beard"], t["hair"]["colour"]
    if kind == "none":
        return
    mouth_y = TEMPLATE[3:, 1].mean() + _PAD + t["mouth"]["dy"]
    if kind in ("full", "stubble"):
        chin = outline[outline[:, 1] > tip + 2]
        shade = colour if kind == "full" else 0.6 * t["skin"] + 0.4 * colour
        c.fill(chin, shade)
    if kind in ("moustache", "full"):
        w = t["mouth"]["w"] + 2
        c.fill([[cx - w, mouth_y + 1], [cx - 3, tip + 3], [cx + 3, tip + 3], [cx + w, mouth_y + 1],
                [cx, mouth_y - 3]], colour)
    if kind == "goatee":
        c.fill(_ellipse(cx, mouth_y + 10, 7, 7), colour)


def _background(rng):
    u = rng.uniform
    base = u(0, 255, 3)
    ramp = np.linspace(-1, 1, SIZE, dtype=np.float32)
    direction = u(0, 2 * np.pi)
    field = np.cos(direction) * ramp[None, :] + np.sin(direction) * ramp[:, None]
    image = np.clip(base + field[..., None] * u(-60, 60, 3), 0, 255).astype(np.uint8)
    for _ in range(rng.integers(3, 11)):
        colour = tuple(float(v) for v in u(0, 255, 3))
        kind = rng.integers(4)
        x, y = u(-10, SIZE + 10, 2)
        if kind == 0:
            w, h = u(5, 50, 2)
            cv2.rectangle(image, (int(x), int(y)), (int(x + w), int(y + h)), colour, -1)
        elif kind == 1:
            cv2.circle(image, (int(x), int(y)), int(u(3, 30)), colour, -1, cv2.LINE_AA)
        elif kind == 2:
            x2, y2 = u(-10, SIZE + 10, 2)
            cv2.line(image, (int(x), int(y)), (int(x2), int(y2)), colour, int(u(1, 8)), cv2.LINE_AA)
        else:
            cv2.fillPoly(image, [_fixed(u(-10, SIZE + 10, (3, 2)))], colour, cv2.LINE_AA, _SHIFT)
    if u() < 0.5:
        image = cv2.GaussianBlur(image, (0, 0), u(0.8, 2.5))
    return image.astype(np.float32)


def render_identity_image(seed, identity, image):
    """Image `image` of identity `identity` under `seed`: np.uint8 (112, 112, 3) RGB, deterministic."""
    traits = identity_traits(seed, identity)
    rng = np.random.default_rng([int(seed), _IMAGE_STREAM, int(identity), _check_index("image", image)])
    nuisance = _image_nuisance(rng)
    person = _draw_person(traits, nuisance)

    centre = (56.0, 62.0)
    warp = cv2.getRotationMatrix2D(centre, nuisance["angle"], nuisance["scale"])
    warp[:, 2] += nuisance["shift"] - warp[:, :2] @ [_PAD, _PAD]  # canvas -> canonical -> posed
    face = cv2.warpAffine(person.image, warp, (SIZE, SIZE), flags=cv2.INTER_LINEAR).astype(np.float32)
    alpha = cv2.warpAffine(person.mask, warp, (SIZE, SIZE), flags=cv2.INTER_LINEAR).astype(np.float32)[..., None] / 255
    pixels = _background(rng) * (1 - alpha) + face * alpha

    ramp = np.linspace(-1, 1, SIZE, dtype=np.float32)
    direction = rng.uniform(0, 2 * np.pi)
    light = 1 + rng.uniform(0, 0.5) * (np.cos(direction) * ramp[None, :] + np.sin(direction) * ramp[:, None])
    pixels *= (light * rng.uniform(0.75, 1.2))[..., None] * np.exp(rng.normal(0, 0.07, 3))
    if rng.uniform() < 0.6:
        pixels = cv2.GaussianBlur(pixels, (0, 0), rng.uniform(0.3, 1.2))
    pixels += rng.normal(0, rng.uniform(1, 7), pixels.shape).astype(np.float32)
    return np.clip(np.rint(pixels), 0, 255).astype(np.uint8)
