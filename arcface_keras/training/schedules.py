"""Learning-rate schedules with linear warm-up, stepped by the optimizer's iteration count."""
import math

import keras
from keras import ops

SCHEDULES = ("cosine", "polynomial", "step", "constant")


@keras.saving.register_keras_serializable(package="arcface_keras")
class WarmupSchedule(keras.optimizers.schedules.LearningRateSchedule):
    """Linear warm-up from 0 to `base_lr` over `warmup_steps`, then `kind` decay until `total_steps`.

    kind: "cosine" (to 0), "polynomial" (power 2 to 0, as insightface's PolyScheduler),
    "step" (÷10 at each step in `boundaries`), "constant".
    """

    def __init__(self, base_lr, total_steps, warmup_steps=0, kind="cosine", boundaries=(), power=2.0):
        if kind not in SCHEDULES:
            raise ValueError(f"train.lr_schedule={kind!r}: expected one of {', '.join(SCHEDULES)}")
        self.base_lr = float(base_lr)
        self.total_steps = max(int(total_steps), 1)
        self.warmup_steps = int(warmup_steps)
        self.kind = kind
        self.boundaries = [int(b) for b in boundaries]
        self.power = float(power)

    def __call__(self, step):
        step = ops.cast(step, "float32")
        warm = max(self.warmup_steps, 1)
        warmup = self.base_lr * (step + 1.0) / warm
        span = max(self.total_steps - self.warmup_steps, 1)
        progress = ops.clip((step - self.warmup_steps) / span, 0.0, 1.0)
        if self.kind == "cosine":
            decayed = 0.5 * self.base_lr * (1.0 + ops.cos(math.pi * progress))
        elif self.kind == "polynomial":
            decayed = self.base_lr * ops.power(1.0 - progress, self.power)
        elif self.kind == "step":
            drops = sum(ops.cast(step >= b, "float32") for b in self.boundaries) if self.boundaries else 0.0
            decayed = self.base_lr * ops.power(0.1, drops)
        else:
            decayed = ops.convert_to_tensor(self.base_lr, "float32") + 0.0 * step
        return ops.where(step < self.warmup_steps, warmup, decayed)

    def get_config(self):
        return {
            "base_lr": self.base_lr, "total_steps": self.total_steps, "warmup_steps": self.warmup_steps,
            "kind": self.kind, "boundaries": self.boundaries, "power": self.power,
        }


def scaled_lr(lr, global_batch, lr_batch, rule):
    """The LR for `global_batch` when `lr` was set for `lr_batch` (0: no scaling)."""
    if not lr_batch or rule == "none":
        return lr
    ratio = global_batch / lr_batch
    if rule == "linear":
        return lr * ratio
    if rule == "sqrt":
        return lr * math.sqrt(ratio)
    raise ValueError(f"train.lr_scaling={rule!r}: expected 'linear', 'sqrt' or 'none'")
