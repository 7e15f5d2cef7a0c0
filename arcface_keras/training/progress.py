"""The run's heartbeat: every N optimizer steps (and at each epoch end) one console line, and the
same numbers to W&B and TensorBoard (training/records.py):

    step 1200/45876  epoch 1/20  loss 12.3456  lr 0.099812  2,345 img/s  eta 3:12:05  loss-scale 32768

- loss: the mean training loss over the steps since the previous line (Keras reports a running
  mean since the epoch began; the interval mean is recovered from two of them);
- img/s: global images per second over the interval, counting only the time inside training steps
  (data and step), so the first step (tracing) and the callbacks (checkpoints, verification) are left out;
- eta: time to the run's last step at the wall-clock pace since the first measured step, which
  does include checkpoints and verification;
- loss-scale: only under mixed_float16.

On a terminal a live bar is redrawn in place between lines; elsewhere (a log file) only the lines.
"""
import math
import sys
import time

import keras

from arcface_keras.training import records
from arcface_keras.training.callbacks import global_step

BAR_SECONDS = 0.25  # redraw the live bar at most this often


class Progress(keras.callbacks.Callback):
    """Console lines and training scalars; place it first in the callback list (tightest step timing)."""

    def __init__(self, every, steps_per_epoch, total_steps, global_batch, stream=None, live=None):
        super().__init__()
        self.every, self.steps_per_epoch, self.total_steps = int(every), steps_per_epoch, total_steps
        self.global_batch = global_batch
        self.stream = stream or sys.stdout
        self.live = self.stream.isatty() if live is None else live
        self.first = None  # (time, step) at the end of the first step this process ran (after tracing)
        self.busy = self.batches = 0  # time inside steps, and steps, since the previous line
        self.loss_mark = (0, 0.0)  # (batches into the epoch, running mean loss) at the previous line
        self.seen = 0  # batches into the current epoch
        self.printed = None
        self.drawn = 0.0
        self.began = 0.0

    def on_epoch_begin(self, epoch, logs=None):
        self.loss_mark = (0, 0.0)

    def on_train_batch_begin(self, batch, logs=None):
        self.began = time.perf_counter()

    def on_train_batch_end(self, batch, logs=None):
        now = time.perf_counter()
        step = global_step(self.model)
        self.seen = batch + 1
        if self.first is None:
            self.first = (now, step)
            return
        self.busy += now - self.began
        self.batches += 1
        if self.every and step % self.every == 0 and step != self.printed:
            self.report(step, self.seen, logs, now)
        elif self.live and now - self.drawn > BAR_SECONDS:
            self.drawn = now
            self.stream.write("\r" + live_bar(step, self.total_steps))
            self.stream.flush()

    def on_epoch_end(self, epoch, logs=None):
        step = global_step(self.model)
        if step != self.printed and self.first is not None:
            self.report(step, self.seen, logs, time.perf_counter())

    def on_train_end(self, logs=None):
        if self.live:  # leave no bar under what is printed next
            self.stream.write("\r\033[K")
            self.stream.flush()

    def report(self, step, batches_into_epoch, logs, now):
        row = self.measure(step, batches_into_epoch, logs or {}, now)
        self.printed = step
        line = format_line(step, self.total_steps, self.steps_per_epoch, row)
        self.stream.write(("\r\033[K" if self.live else "") + line + "\n")
        self.stream.flush()
        records.log({f"train/{k}": v for k, v in row.items() if v is not None }, step)

    def measure(self, step, batches_into_epoch, logs, now):
        """The interval's numbers, then a fresh interval."""
        loss = interval_mean(self.loss_mark, batches_into_epoch, logs.get("loss"))
        self.loss_mark = (batches_into_epoch, float(logs.get("loss", 0.0)))
        first_time, first_step = self.first
        row = {
            "loss": loss,
            "lr": learning_rate(self.model.optimizer),
            "images_per_second": self.batches * self.global_batch / self.busy if self.busy else None,
            "eta_seconds": (now - first_time) / (step - first_step) * (self.total_steps - step)
            if step > first_step else None,
            "epoch": step / self.steps_per_epoch,
            "loss_scale": loss_scale(self.model.optimizer),
        }
        self.busy = self.batches = 0
        return row


def interval_mean(mark, batches, running_mean):
    """Mean over batches (mark[0], batches] from the running means at both ends of the interval."""
    if running_mean is None:
        return None
    done, mean_then = mark
    if batches <= done:
        return float(running_mean)
    return (float(running_mean) * batches - mean_then * done) / (batches - done)


def learning_rate(optimizer):
    return float(keras.ops.convert_to_numpy(optimizer.learning_rate))


def loss_scale(optimizer):
    scale = getattr(optimizer, "dynamic_scale", None)
    return None if scale is None else float(keras.ops.convert_to_numpy(scale))


def format_line(step, total_steps, steps_per_epoch, row):
    """The console line of one interval's `row` (see the module docstring)."""
    epoch = max(math.ceil(step / steps_per_epoch), 1)
    parts = [f"step {step}/{total_steps}", f"epoch {epoch}/{math.ceil(total_steps / steps_per_epoch)}"]
    if row["loss"] is not None:
        parts.append(f"loss {row['loss']:.4f}")
    parts.append(f"lr {row['lr']:.6g}")
    speed = row["images_per_second"]
    parts.append(f"{speed:,.0f} img/s" if speed is not None else "- img/s")
    parts.append(f"eta {format_duration(row['eta_seconds'])}")
    if row["loss_scale"] is not None:
        parts.append(f"loss-scale {row['loss_scale']:g}")
    return "  ".join(parts)


def format_duration(seconds):
    """'1d 03:12:05', '3:12:05' or '-' when unknown."""
    if seconds is None:
        return "-"
    days, rest = divmod(int(round(seconds)), 86400)
    hours, rest = divmod(rest, 3600)
    clock = f"{rest // 60:02d}:{rest % 60:02d}"
    return f"{days}d {hours:02d}:{clock}" if days else f"{hours}:{clock}"


def live_bar(step, total_steps, width=30):
    done = min(step / max(total_steps, 1), 1.0)
    filled = int(done * width)
    return f"step {step}/{total_steps} [{'#' * filled}{'.' * (width - filled)}] {100 * done:5.1f}%"
