"""What a synthetic identity and each of its images look like: seeded traits and nuisance.

Shapes are in the canonical 112x112 frame of the ArcFace 5-point template; render.py draws them.
"""
import functools
import math

import numpy as np

GENERATOR_VERSION = 1  # bump whenever the pixels change: cached folders are keyed by it
SIZE = 112
TEMPLATE = np.array(
    [[38.2946, 51.6963], [73.5318, 51.5014], [56.0252, 71.7366], [41.5493, 92.3655], [70.7299, 92.2041]]
)  # left eye, right eye, nose tip, left and right mouth corner (x, y) in a 112x112 crop
IDENTITY_STREAM, IMAGE_STREAM = 0, 1  # keeps the identity and the image random streams apart
PAD = 16  # the person is drawn on a padded canvas so that the pose warp never exposes its edges
_HAIR_COLOURS = np.array(
    [[22, 18, 16], [45, 30, 20], [75, 50, 30], [110, 75, 45], [150, 105, 60], [195, 160, 100],
     [140, 60, 30], [120, 115, 110], [185, 180, 175]]
)
_IRIS_COLOURS = np.array([[60, 35, 20], [95, 60, 30], [70, 110, 160], [80, 120, 80], [110, 115, 120], [120, 95, 50]])
_HAIR_STYLES = ("bald", "short", "short", "long", "long", "buzz")
_BEARDS = ("none",) * 6 + ("moustache", "full", "goatee", "stubble")
_GLASSES = ("none",) * 6 + ("round", "square")


def check_index(name, value, minimum=0):
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
        raise ValueError(f"synthetic {name}={value!r}: expected an integer >= {minimum}")
    return int(value)


@functools.lru_cache(maxsize=None)
def unit_arc(start, end, n):
    t = np.linspace(start, end, n)
    return np.stack([np.cos(t), np.sin(t)], axis=1)


@functools.lru_cache(maxsize=None)
def unit_grid(n):
    return np.linspace(-1, 1, n)


def ellipse_points(cx, cy, a, b, start=0.0, end=2 * np.pi, n=32):
    return unit_arc(start, end, n) * (a, b) + (cx, cy)


def xy_points(x, y):
    return np.stack([x, y], axis=1)


def rgb(colour):
    return tuple(float(c) for c in np.clip(colour, 0, 255))


@functools.lru_cache(maxsize=256)
def identity_traits(seed, identity):
    """The fixed appearance of one identity: a dict of shapes, sizes and colours (canonical 112 frame).

    Outlines are relative to the face centre; the returned arrays are shared: do not modify them.
    """
    rng = np.random.default_rng([check_index("seed", seed), IDENTITY_STREAM, check_index("identity", identity)])
    u = rng.uniform
    tone = u(0, 1)
    skin = (1 - tone) * np.array([235, 198, 170]) + tone * np.array([105, 68, 48])  # light to dark
    skin = np.clip(skin + rng.normal(0, 7, 3), 30, 250)
    hair = np.clip(_HAIR_COLOURS[rng.integers(len(_HAIR_COLOURS))] * u(0.8, 1.2) + rng.normal(0, 8, 3), 0, 255)
    cy, a, b, jaw, chin = u(58, 64), u(33, 43), u(45, 53), u(1.7, 3.2), u(0.0, 0.3)
    eye = dict(dx=u(-4, 4), dy=u(-4, 3), w=u(6.5, 10.5), h=u(2.8, 5.0), tilt=u(-10, 10), iris_r=u(2.6, 3.8),
               iris=rgb(_IRIS_COLOURS[rng.integers(len(_IRIS_COLOURS))] + rng.normal(0, 10, 3)))
    style = _HAIR_STYLES[rng.integers(len(_HAIR_STYLES))]
    hair_line, curve, tilt, volume = u(16, 34), u(-10, 10), u(-8, 8), u(2, 10)

    # Face outline: upper half an ellipse, lower half a superellipse narrowing towards the chin.
    s = np.linspace(0, np.pi, 32)
    lower_x = np.sign(np.cos(s)) * np.abs(np.cos(s)) ** (2 / jaw) * (1 - chin * np.sin(s) ** 2)
    outline = np.vstack([xy_points(a * lower_x, b * np.sin(s) ** (2 / jaw)),
                         ellipse_points(0, 0, a, b, np.pi, 2 * np.pi)])

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
        cap = np.vstack([xy_points(x, top), xy_points(x, np.maximum(line * (1 - drop) + temple * drop, top))[::-1]])
        if style == "buzz":
            hair = 0.5 * hair + 0.5 * skin
    if style == "long":  # hair behind the head, falling to the shoulders
        side = a + volume + 2
        long_hair = np.vstack([ellipse_points(0, -2, a + volume, b + volume, np.pi, 2 * np.pi),
                               [[side, SIZE + PAD - cy + 20], [-side, SIZE + PAD - cy + 20]]])

    lips = skin * u(0.55, 0.85) + np.array([45, 0, 5]) * u(0.3, 1.2)
    lips = {"upper": rgb(lips), "lower": rgb(lips * 1.08), "seam": rgb(lips * 0.6)}
    return {
        "skin": {shade: rgb(skin * factor) for shade, factor in
                 (("face", 1), ("ear", 0.9), ("neck", 0.82), ("shadow", 0.72), ("lid", 0.7), ("dark", 0.45))},
        "stubble": rgb(0.6 * skin + 0.4 * hair),
        "face": dict(cy=cy, a=a, b=b, outline=outline),
        "hair": dict(colour=rgb(hair), cap=cap, long=long_hair),
        "ear": dict(size=u(7, 12), y=u(54, 66)),
        "eye": eye,
        "brow": dict(gap=u(4.5, 10), thick=int(rng.integers(1, 5)), arch=u(0.5, 4), angle=u(-12, 12),
                     length=u(0.9, 1.5), colour=rgb(hair * u(0.5, 0.9))),
        "nose": dict(tip=u(-5, 6), w=u(4.5, 9.5), bridge=u() < 0.5, nostril=u(1.2, 2.4)),
        "mouth": dict(dy=u(-4, 4), w=u(10, 17), upper=u(1.5, 4.0), lower=u(2.0, 5.5), colour=lips),
        "beard": _BEARDS[rng.integers(len(_BEARDS))],
        "glasses": dict(kind=_GLASSES[rng.integers(len(_GLASSES))], colour=rgb(u(0, 200, 3)), size=u(0.9, 1.3)),
        "moles": [(u(-0.7, 0.7), u(-0.2, 0.8), u(0.9, 1.8)) for _ in range(rng.integers(0, 4))],
    }


def image_nuisance(rng):
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
