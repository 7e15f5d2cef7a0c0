"""Heads: (embedding, label) -> float32 logits (or normalised embeddings), each with its loss."""
from arcface_keras.heads import margin, metric  # noqa: F401
