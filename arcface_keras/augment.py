"""Batch augmentations for tf.data, registered by name, each applied to every image with probability p.

Input and output: float32 RGB batches (B, H, W, 3) with values in [0, 255]. A pipeline is built from
specs, each a name or {"type": name, "p": probability, **options}:

    augment = build_augmentation(["flip", {"type": "color_jitter", "p": 0.8}], seed=0)
    batches = batches.map(lambda images, labels: (augment(images), labels))

Keras preprocessing layers do the work where Keras has one; every augmentation decides per image
whether to apply itself, and a seed makes the whole pipeline repeatable (same seed and input,
same output). Build it outside a distribution strategy scope: its random state lives on the host.
"""
import math

import keras
import numpy as np
import tensorflow as tf

from arcface_keras.registry import AUGMENTATIONS, split_spec

LOW, HIGH = 0.0, 255.0
ARCFACE_ZOOM = 128 / 112  # arcface-tf2: resize 112 → 128, then crop 112


class Augmentation:
    """One augmentation: `transform` changes a whole batch (by default through `self.steps`, in
    order), `__call__` keeps the result for each image with probability p (drawn per image) and
    the original for the others."""

    steps = ()

    def __init__(self, p, seed):
        if isinstance(p, bool) or not isinstance(p, (int, float)) or not 0 <= p <= 1:
            raise ValueError(f"augmentation {type(self).__name__}: p={p!r}, expected a probability in [0, 1]")
        self.p = float(p)
        seeds = np.random.SeedSequence(seed).generate_state(8)  # seed None: fresh entropy
        self.rng = tf.random.Generator.from_seed(int(seeds[0]))
        self._layer_seeds = iter(int(s) for s in seeds[1:])

    def layer(self, cls, **kwargs):
        """A Keras preprocessing layer with its own seed, computing in float32 whatever the policy."""
        return cls(seed=next(self._layer_seeds), dtype="float32", **kwargs)

    def transform(self, images):
        for step in self.steps:
            images = step(images)
        return images

    def __call__(self, images):
        if self.p == 0:
            return images
        changed = tf.ensure_shape(tf.clip_by_value(self.transform(images), LOW, HIGH), images.shape)
        if self.p == 1:
            return changed
        chosen = self.rng.uniform([tf.shape(images)[0]]) < self.p
        return tf.where(chosen[:, None, None, None], changed, images)


def keras_step(layer):
    return lambda images: layer(images, training=True)


def crop_and_resize(images, boxes):
    """Crop each image to its normalised box [y1, x1, y2, x2] and resize back to the batch's size."""
    return tf.image.crop_and_resize(images, boxes, tf.range(tf.shape(images)[0]), tf.shape(images)[1:3])


def check_range(name, value, low, high):
    """`value` as a (low, high) pair inside [low, high], or a one-line error naming the option."""
    pair = tuple(value) if isinstance(value, (list, tuple)) else None
    if pair is None or len(pair) != 2 or not low <= pair[0] <= pair[1] <= high:
        raise ValueError(f"augmentation option {name}={value!r}: expected (min, max) with {low} <= min <= max <= {high}")
    return pair


@AUGMENTATIONS.register("flip")
class Flip(Augmentation):
    """Mirror left-right."""

    def __init__(self, p=0.5, seed=None):
        super().__init__(p, seed)

    def transform(self, images):
        return tf.reverse(images, axis=[2])


@AUGMENTATIONS.register("random_crop")
class RandomCrop(Augmentation):
    """Enlarge by `zoom` and crop back to size at a random place (arcface-tf2: resize to 128, crop 112)."""

    def __init__(self, p=1.0, zoom=ARCFACE_ZOOM, seed=None):
        super().__init__(p, seed)
        if not zoom > 1:
            raise ValueError(f"augmentation random_crop: zoom={zoom!r}, expected a number > 1")
        self.size = 1.0 / zoom

    def transform(self, images):
        corners = self.rng.uniform([tf.shape(images)[0], 2], 0.0, 1.0 - self.size)
        return crop_and_resize(images, tf.concat([corners, corners + self.size], axis=1))


@AUGMENTATIONS.register("center_crop")
class CenterCrop(Augmentation):
    """Crop the central 1/zoom and resize back to size (the "ccrop" of arcface-tf2)."""

    def __init__(self, p=1.0, zoom=ARCFACE_ZOOM, seed=None):
        super().__init__(p, seed)
        if not zoom >= 1:
            raise ValueError(f"augmentation center_crop: zoom={zoom!r}, expected a number >= 1")
        margin = (1.0 - 1.0 / zoom) / 2
        self.box = [margin, margin, 1.0 - margin, 1.0 - margin]

    def transform(self, images):
        return crop_and_resize(images, tf.tile([self.box], [tf.shape(images)[0], 1]))


def color_steps(augmentation, brightness=0.0, contrast=0.0, saturation=None, hue=0.0):
    """Keras colour layers, one seed each: brightness shift up to ±brightness of the range,
    contrast × [1 − contrast, 1 + contrast], saturation × (min, max), hue turned up to ±hue of a circle."""
    steps = []
    if brightness:
        steps.append(keras_step(augmentation.layer(keras.layers.RandomBrightness, factor=brightness,
                                                   value_range=(LOW, HIGH))))
    if contrast:
        steps.append(keras_step(augmentation.layer(keras.layers.RandomContrast, factor=contrast,
                                                   value_range=(LOW, HIGH))))
    if saturation:
        low, high = check_range("saturation", saturation, 0.0, math.inf)
        # Keras maps a factor f to the multiplier f / (1 − f); it clips saturation to the value
        # range, so it works on [0, 1] images.
        layer = augmentation.layer(keras.layers.RandomSaturation, factor=(low / (1 + low), high / (1 + high)),
                                   value_range=(0.0, 1.0))
        steps.append(lambda images: layer(images / HIGH, training=True) * HIGH)
    if hue:
        if not 0 < hue <= 0.5:
            raise ValueError(f"augmentation option hue={hue!r}: expected a fraction of the colour circle in (0, 0.5]")
        steps.append(keras_step(augmentation.layer(keras.layers.RandomHue, factor=2 * hue, value_range=(LOW, HIGH))))
    return steps


@AUGMENTATIONS.register("color_jitter")
class ColorJitter(Augmentation):
    """Random brightness, contrast, saturation and hue (each with its own random amount per image)."""

    def __init__(self, p=0.8, brightness=0.2, contrast=0.2, saturation=(0.6, 1.4), hue=0.05, seed=None):
        super().__init__(p, seed)
        self.steps = color_steps(self, brightness, contrast, saturation, hue)


@AUGMENTATIONS.register("variety")
class Variety(Augmentation):
    """"Variety images": a random gamma curve (gamma log-uniform in `gamma`, the lookup table
    255·(v/255)^gamma), then random hue and saturation shifts."""

    def __init__(self, p=0.5, gamma=(2 / 3, 1.5), hue=0.05, saturation=(0.7, 1.3), seed=None):
        super().__init__(p, seed)
        low, high = check_range("gamma", gamma, 1e-3, 1e3)
        self.log_gamma = (math.log(low), math.log(high))
        self.steps = color_steps(self, saturation=saturation, hue=hue)

    def transform(self, images):
        gamma = tf.exp(self.rng.uniform([tf.shape(images)[0], 1, 1, 1], *self.log_gamma))
        return super().transform(HIGH * tf.pow(images / HIGH, gamma))


@AUGMENTATIONS.register("random_erasing")
class RandomErasing(Augmentation):
    """Replace a random rectangle (a `scale` fraction of each side, squared) with noise or `fill_value`."""

    def __init__(self, p=0.5, scale=(0.02, 0.33), fill_value=None, seed=None):
        super().__init__(p, seed)
        self.steps = [keras_step(self.layer(keras.layers.RandomErasing, factor=(1.0, 1.0),
                                            scale=check_range("scale", scale, 0.0, 1.0),
                                            fill_value=fill_value, value_range=(LOW, HIGH)))]


@AUGMENTATIONS.register("gaussian_blur")
class GaussianBlur(Augmentation):
    """Gaussian blur with `kernel_size` (odd) and a standard deviation in pixels drawn from `sigma`
    (Keras allows at most 1); borders are mirrored first, so that edges do not darken."""

    def __init__(self, p=0.2, kernel_size=5, sigma=(0.1, 1.0), seed=None):
        super().__init__(p, seed)
        self.blur = self.layer(keras.layers.RandomGaussianBlur, factor=(1.0, 1.0), kernel_size=kernel_size,
                               sigma=check_range("sigma", sigma, 0.0, 1.0), value_range=(LOW, HIGH))
        self.border = kernel_size // 2

    def transform(self, images):
        b = self.border
        padded = tf.pad(images, [[0, 0], [b, b], [b, b], [0, 0]], mode="REFLECT")
        return self.blur(padded, training=True)[:, b:tf.shape(padded)[1] - b, b:tf.shape(padded)[2] - b]


@AUGMENTATIONS.register("grayscale")
class Grayscale(Augmentation):
    """Grey levels copied to the three channels."""

    def __init__(self, p=0.2, seed=None):
        super().__init__(p, seed)
        self.steps = [keras_step(self.layer(keras.layers.RandomGrayscale, factor=1.0))]


@AUGMENTATIONS.register("low_resolution")
class LowResolution(Augmentation):
    """Shrink each image to a random `scale` of its size (area averaging), then enlarge it back (bilinear)."""

    def __init__(self, p=0.2, scale=(0.25, 0.75), seed=None):
        super().__init__(p, seed)
        self.scale = check_range("scale", scale, 1e-3, 1.0)

    def transform(self, images):
        size = tf.shape(images)[1:3]

        def down_up(image_and_scale):
            image, scale = image_and_scale
            small = tf.maximum(tf.cast(tf.round(tf.cast(size, tf.float32) * scale), tf.int32), 1)
            return tf.image.resize(tf.image.resize(image, small, method="area"), size, method="bilinear")

        scales = self.rng.uniform([tf.shape(images)[0]], *self.scale)
        return tf.map_fn(down_up, (images, scales), fn_output_signature=tf.float32)


class AugmentationPipeline:
    """Augmentations applied in order to a float32 batch (B, H, W, 3) in [0, 255]; returns the same."""

    def __init__(self, steps, names):
        self.steps, self.names = list(steps), list(names)

    def __call__(self, images):
        images = tf.cast(images, tf.float32)
        if images.shape.rank != 4 or images.shape[-1] != 3:
            raise ValueError(f"augmentation expects a batch of RGB images (B, H, W, 3), got shape {images.shape}")
        for step in self.steps:
            images = step(images)
        return images

    def __repr__(self):
        return f"AugmentationPipeline({', '.join(self.names)})"


def build_augmentation(specs, seed=None):
    """Specs (a name, a {"type": name, "p": …} dict, or a list of them) → one AugmentationPipeline."""
    if specs is None:
        specs = []
    if isinstance(specs, (str, dict)):
        specs = [specs]
    seeds = np.random.SeedSequence(seed).generate_state(len(specs)) if seed is not None else [None] * len(specs)
    steps = [AUGMENTATIONS.build(spec, seed=None if s is None else int(s)) for spec, s in zip(specs, seeds)]
    return AugmentationPipeline(steps, [split_spec(spec, "augmentation")[0] for spec in specs])
