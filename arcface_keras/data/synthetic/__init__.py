"""Synthetic face identities: stylised, seeded faces drawn around the ArcFace 5-point template.

Each identity has fixed traits (face shape, skin tone, eyes, brows, nose, mouth, hair, beard,
glasses, moles); each image adds nuisance (expression, slight yaw/pitch, pose as one similarity
warp, background clutter, lighting gradient, colour cast, blur, noise). The pixels depend only on
(seed, identity, image), so identities can be generated in any order and number, and a held-out set
is simply another range of identity indices drawn from the same distribution.

    traits.py   what an identity and each of its images look like (seeded numbers, canonical frame)
    render.py   drawing them: uint8 RGB 112x112 images
    harness.py  how hard the task is: verification pairs and the raw-pixel baseline
    folders.py  identity folders on disk, resumable, and a cache keyed by the parameters
"""
from arcface_keras.data.synthetic.folders import ensure_synthetic, identity_name, write_identities
from arcface_keras.data.synthetic.harness import raw_pixel_accuracy, verification_accuracy, verification_pairs
from arcface_keras.data.synthetic.render import render_identities, render_identity_image
from arcface_keras.data.synthetic.traits import SIZE, TEMPLATE, identity_traits

__all__ = ["SIZE", "TEMPLATE", "ensure_synthetic", "identity_name", "identity_traits", "raw_pixel_accuracy",
           "render_identities", "render_identity_image", "verification_accuracy", "verification_pairs",
           "write_identities"]
