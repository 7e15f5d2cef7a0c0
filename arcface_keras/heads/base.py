"""The head contract: a Keras layer `(embedding, label) -> output` that also names its loss."""
from typing import Annotated, Optional

import keras
from annotated_types import Ge

Seed = Optional[Annotated[int, Ge(0)]]  # None: a different draw in every run


class Head(keras.layers.Layer):
    """Base of every registered head.

    Called as `head([embeddings, labels], training=...)` with embeddings (B, D) of any float dtype
    and integer labels (B,); returns float32 logits (B, num_classes) for classification heads.
    `loss()` returns the Keras loss the training model is compiled with, applied to (labels, output).
    Heads compute in float32 whatever the dtype policy, so margins stay exact under mixed precision.
    """

    def __init__(self, num_classes: Annotated[int, Ge(1)], **kwargs):
        kwargs.setdefault("dtype", "float32")
        super().__init__(**kwargs)
        self.num_classes = int(num_classes)

    def loss(self):
        return keras.losses.SparseCategoricalCrossentropy(from_logits=True)

    def get_config(self):
        return {**super().get_config(), "num_classes": self.num_classes}
