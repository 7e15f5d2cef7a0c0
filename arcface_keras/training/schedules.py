"""Learning-rate schedules with linear warm-up, stepped by the optimizer's iteration count."""
import math

import keras
from keras import ops

from arcface_keras.registry import LR_SCHEDULES

LR_SCALINGS = ("linear", "sqrt", "none")


@LR_SCHEDULES.register("cosine")
def cosine(schedule, step, progress):
    """Half a cosine from the base LR to 0."""
    return 0.5 * schedule.base_lr * (1.0 + ops.cos(math.pi * progress))


@LR_SCHEDULES.register("polynomial")
def polynomial(schedule, step, progress):
    """(1 − progress)^power to 0, as insightface's PolyScheduler (power 2)."""
    return schedule.base_lr * ops.power(1.0 - progress, schedule.power)


@LR_SCHEDULES.register("step")
def step_decay(schedule, step, progress):
    """÷10 at each step in `boundaries`."""
    drops = sum(ops.cast(step >= b, "float32") for b in schedule.boundaries) if schedule.boundaries else 0.0
    return schedule.base_lr * ops.power(0.1, drops)


@LR_SCHEDULES.register("constant")
def constant(schedule, step, progress):
    """The base LR throughout."""
    return ops.convert_to_tensor(schedule.base_lr, "float32") + 0.0 * step


@keras.saving.register_keras_serializable(package="arcface_keras")
class WarmupSchedule(keras.optimizers.schedules.LearningRateSchedule):
    """Linear warm-up from 0 to `base_lr` over `warmup_steps`, then the LR_SCHEDULES entry `kind`
    (a function of this schedule, the step and the progress in [0, 1] after warm-up) until `total_steps`.
    """

    def __init__(self, base_lr, total_steps, warmup_steps=0, kind="cosine", boundaries=(), power=2.0):
        self.decay = LR_SCHEDULES.get(kind)
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
        decayed = self.decay(self, step, progress)
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
    raise ValueError(f"train.lr_scaling={rule!r}: expected one of {', '.join(LR_SCALINGS)}")
