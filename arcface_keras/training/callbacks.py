"""Training callbacks: step checkpoints with resume, verification during training (progress: progress.py)."""
import csv
import io
import json
from pathlib import Path
from typing import NamedTuple

import keras
import numpy as np

from arcface_keras.io import atomic_path, write_json


def global_step(model):
    return int(keras.ops.convert_to_numpy(model.optimizer.iterations))


class EveryNSteps(keras.callbacks.Callback):
    """Calls `on_step(step)` once at every positive multiple of `every` optimizer steps.

    Under mixed_float16 the loss-scale optimizer skips the update of a batch whose gradients
    overflowed, so one optimizer step can end several batches: it still fires once.
    """

    def __init__(self, every):
        super().__init__()
        self.every = int(every)
        self.last = None

    def on_train_batch_end(self, batch, logs=None):
        step = global_step(self.model)
        if self.every and step and step % self.every == 0 and step != self.last:
            self.last = step
            self.on_step(step, logs)

    def on_step(self, step, logs):
        raise NotImplementedError


class Position(NamedTuple):
    """Where a run stands: optimizer steps taken and batches consumed (they differ when float16
    loss scaling skipped updates)."""

    step: int
    batches: int


def latest_checkpoint(directory):
    """`latest.json` of a checkpoint folder ({"step", "batches", "path"}), or None."""
    latest = Path(directory) / "latest.json"
    if not latest.is_file():
        return None
    info = json.loads(latest.read_text())
    return {**info, "batches": int(info.get("batches", info["step"]))}


class StepCheckpoint(EveryNSteps):
    """Every `save_steps` optimizer steps and at the end of training, save model + optimizer state
    as `ckpt-<step>.weights.h5`, with the data position (batches consumed) in `latest.json`.

    `latest.json` names the newest complete checkpoint; `restore` loads it so that rerunning an
    interrupted command continues at the step and batch it reached. Only the `keep` newest are kept.
    `save_steps=0` saves at the end only.
    """

    def __init__(self, directory, save_steps, keep=3, batches=0):
        super().__init__(save_steps)
        self.directory = Path(directory)
        self.keep = keep
        self.batches = int(batches)
        self.saved = None

    def on_train_batch_end(self, batch, logs=None):
        self.batches += 1
        super().on_train_batch_end(batch, logs)

    def on_step(self, step, logs):
        self.save(step)

    def on_train_end(self, logs=None):
        self.save_current()

    def save_current(self):
        """Save the step reached unless it is saved already; return it."""
        step = global_step(self.model)
        if self.saved != (step, self.batches):
            self.save(step)
        return step

    def save(self, step):
        self.directory.mkdir(parents=True, exist_ok=True)
        path = self.directory / f"ckpt-{step:08d}.weights.h5"
        write_weights(self.model, path)
        write_json(self.directory / "latest.json", {"step": step, "batches": self.batches, "path": path.name,
                                                    "rng": [keras.ops.convert_to_numpy(v).tolist()
                                                            for v in seed_states(self.model)]})
        self.saved = (step, self.batches)
        for old in sorted(self.directory.glob("ckpt-*.weights.h5"))[: -self.keep]:
            old.unlink()

    @staticmethod
    def restore(model, directory, info):
        """Load the checkpoint `info` (from `latest_checkpoint`) into `model`, optimizer included;
        return its Position, (0, 0) for None.

        `model` is compiled and its optimizer built, so that the optimizer's variables exist to load into.
        """
        if info is None:
            return Position(0, 0)
        model.load_weights(Path(directory) / info["path"])
        for variable, state in zip(seed_states(model), info.get("rng", [])):
            variable.assign(np.asarray(state, dtype=variable.dtype))
        return Position(int(info["step"]), info["batches"])


def write_weights(model, path):
    """`model.save_weights(path)` (the optimizer's too), written whole or not at all.

    Keras' own HDF5 writer fills a buffer in memory, which is then written under a temp name and
    renamed: a full disk is one OSError naming `path`, the temp file removed. (HDF5 writing to a file
    that fails floods the console with errors of half-written objects and crashes the process.) The
    weights are this process's copy, which data parallelism keeps whole on every device: the chief saves
    alone, so nothing here may be a collective across processes (on JAX, saving creates a scratch
    optimizer, whose variables a keras.distribution would place on every process's devices).
    """
    from keras.src.saving import saving_lib

    from arcface_keras.training.distribute import outside_distribution

    buffer = io.BytesIO()
    with outside_distribution():
        store = saving_lib.H5IOStore(buffer, mode="w")
        saving_lib._save_state(model, weights_store=store, assets_store=None, inner_path="", visited_saveables=set())
        store.close()
    with atomic_path(path) as tmp:
        try:
            tmp.write_bytes(buffer.getbuffer())
        except OSError as exc:
            raise OSError(exc.errno, exc.strerror, str(path)) from None


def seed_states(model):
    """The states of the model's seed generators (Partial FC's class sampling, dropout), in model order:
    weights files leave them out, and a resumed run needs them to draw what the uninterrupted one drew."""
    return [v for v in model.variables if v.path.endswith("seed_generator_state")]


class VerificationCallback(EveryNSteps):
    """Every `every_steps` steps, evaluate `evaluator` and log to CSV and W&B; keep the best weights."""

    def __init__(self, evaluator, every_steps, csv_path, best_metric="", best_path=None):
        super().__init__(every_steps)
        self.evaluator = evaluator
        self.csv_path = Path(csv_path)
        self.best_metric = best_metric
        self.best_path = best_path
        self.best = best_logged(self.csv_path, best_metric)  # a resumed run keeps the best it had

    def on_step(self, step, logs):
        self.run(step)

    def run(self, step):
        metrics = self.evaluator()
        append_csv(self.csv_path, {"step": step, **metrics})
        log_wandb(metrics, step)
        from arcface_keras.training import panels

        panels.log_verification(self.evaluator, step)
        value = metrics.get(self.best_metric)
        if self.best_metric and value is None:
            print(f"[arcface_keras] eval.best_metric {self.best_metric!r} was not reported at step {step} "
                  "(TAR at a FAR needs at least 1/FAR different pairs): no best checkpoint saved", flush=True)
        if self.best_path and value is not None and (self.best is None or value > self.best):
            self.best = value
            write_weights(self.model, self.best_path)
        return metrics


def best_logged(csv_path, metric):
    """The highest `metric` in a step-indexed CSV log, or None (no log, no such column, no value)."""
    if not metric or not Path(csv_path).is_file():
        return None
    with Path(csv_path).open(newline="") as f:
        values = [float(row[metric]) for row in csv.DictReader(f) if row.get(metric) not in (None, "")]
    return max(values, default=None)


def log_wandb(metrics, step):
    """Log the numbers of `metrics` at `step` to the run's records (W&B and TensorBoard)."""
    from arcface_keras.training import records

    records.log({k: v for k, v in metrics.items() if isinstance(v, (int, float))}, step)


def truncate_csv(path, step):
    """Drop the rows of a step-indexed CSV log past `step` (logged by a run killed after its checkpoint)."""
    path = Path(path)
    if not path.is_file():
        return
    with path.open(newline="") as f:
        rows = list(csv.DictReader(f))
    kept = [row for row in rows if int(float(row["step"])) <= step]
    if len(kept) == len(rows):
        return
    tmp = path.with_name(path.name + ".tmp")
    with tmp.open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(kept)
    tmp.replace(path)


def append_csv(path, row):
    """Append one row of metrics; the header is the first row's keys."""
    path = Path(path)
    new = not path.exists()
    with path.open("a", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(row), extrasaction="ignore")
        if new:
            writer.writeheader()
        writer.writerow(row)
