"""Batch augmentations for tf.data, registered by name, each applied to every image with probability p.

Input and output: float32 RGB batches (B, H, W, 3) with values in [0, 255]. A pipeline is built from
specs, each a name or {"type": name, "p": probability, **options}:

    augment = build_augmentation(["flip", {"type": "color_jitter", "p": 0.8}], seed=0)
    batches = batches.map(lambda images, labels: (augment(images), labels))
    batches = batches.map(lambda images, labels, key: (augment(images, seed=(0, key)), labels))  # seeded per batch

Every augmentation draws per image whether to apply itself and transforms only the chosen images.
The Keras preprocessing layers were measured first: colour, erasing and blur are a few tensor
operations here, 2.5-4× less CPU time than RandomHue, RandomSaturation, RandomErasing and
RandomGaussianBlur on 112×112 batches, and colour jitter is one affine map per image instead of
four passes.

Every random number is drawn with TensorFlow's stateless ops from a per-call seed, so a batch's
augmentation is a function of (seed, input) alone. The training pipeline passes (train.seed, a
fingerprint of the batch): a resumed run augments its remaining batches exactly as an uninterrupted one. Called
without a seed, the pipeline draws one per call from a generator seeded at build time: same build
seed and inputs, same outputs. Build it outside a distribution strategy scope.
"""
import math
from typing import Annotated, Optional

import numpy as np
import tensorflow as tf
from annotated_types import Ge, Gt, Interval, doc

from arcface_keras.registry import AUGMENTATIONS, split_spec

LOW, HIGH = 0.0, 255.0
ARCFACE_ZOOM = 128 / 112  # arcface-tf2: resize 112 → 128, then crop 112
LUMA = (0.299, 0.587, 0.114)
RGB_TO_YIQ = np.array([[0.299, 0.587, 0.114], [0.596, -0.274, -0.322], [0.211, -0.523, 0.312]], np.float32)

# The options' ranges, checked when an experiment loads (registry.py); a (min, max) pair is a tuple of two.
Probability = Annotated[float, Interval(ge=0, le=1), doc("a probability")]
Fraction = Annotated[float, Interval(ge=0, le=1)]
Hue = Annotated[float, Interval(ge=0, le=0.5), doc("a fraction of the colour circle, either way")]
Factor = Annotated[float, Interval(ge=1e-3, le=1e3)]
NonNegative = Annotated[float, Ge(0)]
Sigma = Annotated[float, Interval(ge=1e-3, le=100), doc("pixels")]
Shrink = Annotated[float, Interval(ge=1e-3, le=1), doc("a fraction of the size")]


class Augmentation:
    """One augmentation: `transform` changes a batch; `__call__` draws per image whether to apply
    it (probability p) and transforms only those images."""

    def __init__(self, p):
        self.p = float(p)
        self.seed, self.draws = None, 0  # the call's seed; draws made from it so far (counted while tracing)

    def draw(self, shape, low=0.0, high=1.0):
        """Uniform numbers of `shape`, each draw of a call from its own stream of the call's seed."""
        self.draws += 1
        seed = tf.random.experimental.stateless_fold_in(self.seed, self.draws)
        return tf.random.stateless_uniform(shape, seed, low, high)

    def uniform(self, images, low, high, per="image"):
        """One random number per image, shaped (B,) or, with per="pixel", (B, 1, 1, 1)."""
        shape = [tf.shape(images)[0]] + ([1, 1, 1] if per == "pixel" else [])
        return self.draw(shape, low, high)

    def transform(self, images):
        raise NotImplementedError

    def __call__(self, images, seed):
        """Augment the batch `images` with the (2,) integer `seed`."""
        self.seed, self.draws = tf.cast(seed, tf.int64), 0
        if self.p == 0:
            return images
        if self.p == 1:
            return self._transform_checked(images)
        chosen = tf.where(self.draw([tf.shape(images)[0]]) < self.p)
        return tf.cond(
            tf.size(chosen) > 0,
            lambda: tf.tensor_scatter_nd_update(images, chosen, self._transform_checked(tf.gather_nd(images, chosen))),
            lambda: images,
        )

    def _transform_checked(self, images):
        out = tf.clip_by_value(self.transform(images), LOW, HIGH)
        return tf.ensure_shape(out, [None, *images.shape[1:]])


def crop_and_resize(images, boxes):
    """Crop each image to its normalised box [y1, x1, y2, x2] and resize back to the batch's size."""
    return tf.image.crop_and_resize(images, boxes, tf.range(tf.shape(images)[0]), tf.shape(images)[1:3])


def ordered(name, value):
    """A (min, max) option as a tuple with min <= max (its bounds are in the annotation), or a one-line error."""
    low, high = value
    if not low <= high:
        raise ValueError(f"augmentation option {name}={value!r}: expected (min, max) with min <= max")
    return float(low), float(high)


def color_transform(images, shift, contrast, saturation, turns):
    """Brightness, contrast, saturation and hue in one affine map per image, each argument (B,):

    x + shift, then contrast around the mean grey level (× contrast), then saturation as a blend
    with the grey image (0 grey, 1 unchanged, as PIL and torchvision), then the hue turned by
    `turns` of the colour circle (a rotation of the I, Q plane of YIQ).
    """
    luma = tf.constant(LUMA)
    eye = tf.eye(3)
    saturate = (saturation[:, None, None] * eye
                + (1 - saturation)[:, None, None] * tf.ones([3, 1]) * luma[None, :])
    angle = -2 * math.pi * turns  # the sign makes positive turns go red → green → blue, as in HSV
    cos, sin, one, zero = tf.cos(angle), tf.sin(angle), tf.ones_like(angle), tf.zeros_like(angle)
    rotate = tf.stack([tf.stack([one, zero, zero], -1), tf.stack([zero, cos, -sin], -1),
                       tf.stack([zero, sin, cos], -1)], axis=1)
    yiq = tf.constant(RGB_TO_YIQ)
    matrices = tf.linalg.inv(yiq)[None] @ rotate @ yiq[None] @ saturate  # (B, 3, 3)
    mean_grey = tf.reduce_mean(tf.reduce_sum(images * luma, axis=-1), axis=[1, 2])
    offset = ((1 - contrast) * mean_grey + shift)[:, None] * tf.ones([1, 3])
    out = tf.einsum("bhwc,bdc->bhwd", images, contrast[:, None, None] * matrices)
    return out + tf.einsum("bc,bdc->bd", offset, matrices)[:, None, None, :]


@AUGMENTATIONS.register("flip")
class Flip(Augmentation):
    """Mirror left-right."""

    def __init__(self, p: Probability = 0.5):
        super().__init__(p)

    def transform(self, images):
        return tf.reverse(images, axis=[2])


@AUGMENTATIONS.register("random_crop")
class RandomCrop(Augmentation):
    """Enlarge by `zoom` and crop back to size at a random place (arcface-tf2: resize to 128, crop 112)."""

    def __init__(self, p: Probability = 1.0, zoom: Annotated[float, Gt(1)] = ARCFACE_ZOOM):
        super().__init__(p)
        self.size = 1.0 / zoom

    def transform(self, images):
        corners = self.draw([tf.shape(images)[0], 2], 0.0, 1.0 - self.size)
        return crop_and_resize(images, tf.concat([corners, corners + self.size], axis=1))


@AUGMENTATIONS.register("center_crop")
class CenterCrop(Augmentation):
    """Crop the central 1/zoom and resize back to size (the "ccrop" of arcface-tf2)."""

    def __init__(self, p: Probability = 1.0, zoom: Annotated[float, Ge(1)] = ARCFACE_ZOOM):
        super().__init__(p)
        margin = (1.0 - 1.0 / zoom) / 2
        self.box = [margin, margin, 1.0 - margin, 1.0 - margin]

    def transform(self, images):
        return crop_and_resize(images, tf.tile([self.box], [tf.shape(images)[0], 1]))


@AUGMENTATIONS.register("color_jitter")
class ColorJitter(Augmentation):
    """Random brightness (shift up to ±brightness of the range), contrast (× 1 ± contrast), saturation
    (× a factor drawn from `saturation`) and hue (turned up to ±hue of the circle), drawn per image."""

    def __init__(self, p: Probability = 0.8, brightness: Fraction = 0.2, contrast: Fraction = 0.2,
                 saturation: Optional[tuple[NonNegative, NonNegative]] = (0.6, 1.4), hue: Hue = 0.05):
        super().__init__(p)
        self.brightness, self.contrast, self.hue = float(brightness), float(contrast), float(hue)
        self.saturation = ordered("saturation", saturation) if saturation else (1.0, 1.0)

    def transform(self, images):
        return color_transform(images,
                               shift=self.uniform(images, -self.brightness, self.brightness) * HIGH,
                               contrast=self.uniform(images, 1 - self.contrast, 1 + self.contrast),
                               saturation=self.uniform(images, *self.saturation),
                               turns=self.uniform(images, -self.hue, self.hue))


@AUGMENTATIONS.register("variety")
class Variety(Augmentation):
    """"Variety images": a random gamma curve 255·(v/255)^gamma (the lookup table of the original;
    gamma log-uniform in `gamma`), then random saturation and hue shifts."""

    def __init__(self, p: Probability = 0.5, gamma: tuple[Factor, Factor] = (2 / 3, 1.5),
                 saturation: Optional[tuple[NonNegative, NonNegative]] = (0.7, 1.3), hue: Hue = 0.05):
        super().__init__(p)
        low, high = ordered("gamma", gamma)
        self.log_gamma = (math.log(low), math.log(high))
        self.saturation = ordered("saturation", saturation) if saturation else (1.0, 1.0)
        self.hue = float(hue)

    def transform(self, images):
        gamma = tf.exp(self.uniform(images, *self.log_gamma, per="pixel"))
        no_change = tf.zeros([tf.shape(images)[0]])
        return color_transform(HIGH * tf.pow(images / HIGH, gamma), shift=no_change, contrast=no_change + 1,
                               saturation=self.uniform(images, *self.saturation),
                               turns=self.uniform(images, -self.hue, self.hue))


@AUGMENTATIONS.register("random_erasing")
class RandomErasing(Augmentation):
    """Fill a random rectangle with noise (or `fill_value`): area a fraction `scale` of the image,
    height/width ratio log-uniform in `ratio` (Zhong et al., 2020)."""

    def __init__(self, p: Probability = 0.5, scale: tuple[Fraction, Fraction] = (0.02, 0.33),
                 ratio: tuple[Factor, Factor] = (0.3, 3.3),
                 fill_value: Optional[Annotated[float, Interval(ge=LOW, le=HIGH)]] = None):
        super().__init__(p)
        self.scale = ordered("scale", scale)
        low, high = ordered("ratio", ratio)
        self.log_ratio = (math.log(low), math.log(high))
        self.fill_value = fill_value

    def transform(self, images):
        height, width = [tf.cast(tf.shape(images)[axis], tf.float32) for axis in (1, 2)]
        area, ratio = self.uniform(images, *self.scale), tf.exp(self.uniform(images, *self.log_ratio))
        h = tf.minimum(tf.sqrt(area * ratio), 1.0) * height
        w = tf.minimum(tf.sqrt(area / ratio), 1.0) * width
        top, left = self.uniform(images, 0.0, 1.0) * (height - h), self.uniform(images, 0.0, 1.0) * (width - w)
        rows = tf.range(height)[None, :, None]
        cols = tf.range(width)[None, None, :]
        inside = ((rows >= top[:, None, None]) & (rows < (top + h)[:, None, None])
                  & (cols >= left[:, None, None]) & (cols < (left + w)[:, None, None]))
        fill = (self.draw(tf.shape(images), LOW, HIGH) if self.fill_value is None
                else tf.fill(tf.shape(images), float(self.fill_value)))
        return tf.where(inside[..., None], fill, images)


def blur_fits_image(keywords, experiment):
    """The mirrored border (the kernel's radius) must be narrower than the image: tf.pad's REFLECT needs it."""
    radius, size = keywords["kernel_size"] // 2, experiment.data.image_size if experiment else None
    if size is not None and radius >= size:
        raise ValueError(f"got kernel_size={keywords['kernel_size']!r} with data.image_size={size}: expected "
                         f"kernel_size < {2 * size} (its mirrored border must be narrower than the image)")


@AUGMENTATIONS.register("gaussian_blur", check=blur_fits_image)
class GaussianBlur(Augmentation):
    """Gaussian blur, `kernel_size` taps (odd), standard deviation in pixels drawn per image from
    `sigma`; borders are mirrored, so that edges do not darken."""

    def __init__(self, p: Probability = 0.2, kernel_size: Annotated[int, Ge(3)] = 5,
                 sigma: tuple[Sigma, Sigma] = (0.1, 2.0)):
        super().__init__(p)
        if kernel_size % 2 == 0:
            raise ValueError(f"augmentation gaussian_blur: kernel_size={kernel_size!r}, expected an odd integer >= 3")
        self.sigma = ordered("sigma", sigma)
        self.radius = kernel_size // 2

    def transform(self, images):
        r = self.radius
        taps = tf.range(-r, r + 1, dtype=tf.float32)
        sigma = self.uniform(images, *self.sigma)
        weights = tf.exp(-0.5 * (taps[None, :] / sigma[:, None]) ** 2)
        weights = weights / tf.reduce_sum(weights, axis=1, keepdims=True)  # (B, taps)
        padded = tf.pad(images, [[0, 0], [r, r], [r, r], [0, 0]], mode="REFLECT")
        height, width = tf.shape(images)[1], tf.shape(images)[2]
        rows = sum(weights[:, i, None, None, None] * padded[:, i:i + height] for i in range(2 * r + 1))
        return sum(weights[:, i, None, None, None] * rows[:, :, i:i + width] for i in range(2 * r + 1))


@AUGMENTATIONS.register("grayscale")
class Grayscale(Augmentation):
    """Grey levels copied to the three channels."""

    def __init__(self, p: Probability = 0.2):
        super().__init__(p)

    def transform(self, images):
        return tf.image.grayscale_to_rgb(tf.image.rgb_to_grayscale(images))


@AUGMENTATIONS.register("low_resolution")
class LowResolution(Augmentation):
    """Shrink each image to a random `scale` of its size (area averaging), then enlarge it back (bilinear)."""

    def __init__(self, p: Probability = 0.2, scale: tuple[Shrink, Shrink] = (0.25, 0.75)):
        super().__init__(p)
        self.scale = ordered("scale", scale)

    def transform(self, images):
        size = tf.shape(images)[1:3]

        def down_up(image_and_scale):
            image, scale = image_and_scale
            small = tf.maximum(tf.cast(tf.round(tf.cast(size, tf.float32) * scale), tf.int32), 1)
            return tf.image.resize(tf.image.resize(image, small, method="area"), size, method="bilinear")

        return tf.map_fn(down_up, (images, self.uniform(images, *self.scale)), fn_output_signature=tf.float32)


class AugmentationPipeline:
    """Augmentations applied in order to a float32 batch (B, H, W, 3) in [0, 255]; returns the same."""

    def __init__(self, steps, names, seed=None):
        self.steps, self.names = list(steps), list(names)
        self.generator = (tf.random.Generator.from_seed(seed) if seed is not None
                          else tf.random.Generator.from_non_deterministic_state())

    def __call__(self, images, seed=None):
        """Augment a batch; `seed` (two integers) fixes every random choice, else one is drawn."""
        images = tf.cast(images, tf.float32)
        if images.shape.rank != 4 or images.shape[-1] != 3:
            raise ValueError(f"augmentation expects a batch of RGB images (B, H, W, 3), got shape {images.shape}")
        seed = self.generator.make_seeds(1)[:, 0] if seed is None else tf.stack([tf.cast(s, tf.int64) for s in seed])
        for index, step in enumerate(self.steps):
            images = step(images, tf.random.experimental.stateless_fold_in(seed, index))
        return images

    def __repr__(self):
        return f"AugmentationPipeline({', '.join(self.names)})"


def build_augmentation(specs, seed=None):
    """Specs (a name, a {"type": name, "p": …} dict, or a list of them) → one AugmentationPipeline."""
    if specs is None:
        specs = []
    if isinstance(specs, (str, dict)):
        specs = [specs]
    steps = [AUGMENTATIONS.build(spec) for spec in specs]
    return AugmentationPipeline(steps, [split_spec(spec, "augmentation")[0] for spec in specs], seed)
