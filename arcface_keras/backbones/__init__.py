"""Backbones: image (B, H, W, 3) in [-1, 1] -> un-normalised embedding (B, D). Each module registers itself."""
from arcface_keras.backbones import mobilefacenet, resnet  # noqa: F401
