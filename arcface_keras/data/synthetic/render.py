"""Drawing synthetic faces: an identity's traits under one image's nuisance, anti-aliased, on a background."""
import contextlib
import functools
import math

import cv2
import numpy as np

from arcface_keras.data.synthetic.traits import (
    IMAGE_STREAM, PAD, SIZE, TEMPLATE, check_index, identity_traits, image_nuisance, unit_grid, xy_points,
)

_MOUTH = TEMPLATE[3:].mean(axis=0)  # centre of the mouth
_POSE_CENTRE = tuple(float(v) for v in TEMPLATE.mean(axis=0))  # the pose warp turns and scales about it
_SHIFT = 4  # fractional bits of cv2 drawing coordinates
_RAMP = np.linspace(-1, 1, SIZE, dtype=np.float32)
_EYE_WHITE, _PUPIL, _LASHES = (240.0, 238.0, 232.0), (15.0, 12.0, 12.0), (35.0, 25.0, 25.0)
_MOUTH_INSIDE, _TEETH = (70.0, 20.0, 25.0), (235.0, 230.0, 215.0)


def _fixed(points):
    return (np.asarray(points) * (1 << _SHIFT) + 0.5).astype(np.int32).reshape(-1, 1, 2)


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


@functools.lru_cache(maxsize=32)
def _head(seed, identity):
    """The parts of an identity that no image changes (hair, head, ears, neck, moles, beard): (image, mask).

    Drawn once on a padded canvas (canonical frame + PAD); the arrays are shared and read-only.
    """
    t = identity_traits(seed, identity)
    size, p = SIZE + 2 * PAD, PAD
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
    p, skin, eye = PAD, t["skin"], t["eye"]
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


_LIP_X = unit_grid(15)
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
        return np.vstack([xy_points(x, top), xy_points(x, bottom)[::-1]])

    if n["mouth_open"] > 0:
        c.fill(band(upper_bottom, lower_top), _MOUTH_INSIDE)
        c.fill(band(upper_bottom, np.minimum(upper_bottom + 2.0, lower_top)), _TEETH)
    c.fill(band(upper_top, upper_bottom), mouth["colour"]["upper"])
    c.fill(band(lower_top, lower_bottom), mouth["colour"]["lower"])
    c.line(xy_points(x, upper_bottom), mouth["colour"]["seam"])


def _draw_moustache(c, t, mouth_x, tip, mouth_y):
    kind, colour = t["beard"], t["hair"]["colour"]
    if kind in ("moustache", "full"):  # a band over the upper lip, drooping at the ends
        xs = unit_grid(11)
        x, lip = mouth_x + (t["mouth"]["w"] + 2) * xs, mouth_y - t["mouth"]["upper"] - 1 + 3 * xs ** 2
        c.fill(np.vstack([xy_points(x, np.maximum(lip - 4, tip + 2)), xy_points(x, lip)[::-1]]), colour)
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
    rng = np.random.default_rng([int(seed), IMAGE_STREAM, int(identity), check_index("image", image)])
    nuisance = image_nuisance(rng)
    head, mask = _head(seed, identity)
    person = _draw_face(head, traits, nuisance)

    warp = cv2.getRotationMatrix2D(_POSE_CENTRE, nuisance["angle"], nuisance["scale"])
    warp[:, 2] += nuisance["shift"] - warp[:, :2] @ [PAD, PAD]  # padded canvas -> canonical -> posed
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
def single_threaded_cv2():
    """cv2's own threads only slow down the small images drawn here."""
    threads = cv2.getNumThreads()
    cv2.setNumThreads(1)
    try:
        yield
    finally:
        cv2.setNumThreads(threads)


def render_identities(seed, identities, images_per_identity, first_identity=0):
    """All images of identities first_identity.. in memory: (uint8 (N*K, 112, 112, 3) RGB, int labels 0..N-1)."""
    with single_threaded_cv2():
        images = np.stack([render_identity_image(seed, first_identity + i, k)
                           for i in range(identities) for k in range(images_per_identity)])
    return images, np.repeat(np.arange(identities), images_per_identity)
