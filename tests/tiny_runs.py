"""Tiny runs of the demo experiment for the end-to-end tests: their overrides, the uninterrupted reference run
that interrupted runs must end equal to, and a training process read line by line and stopped by signal."""
import contextlib
import io
import json
import re
import signal
import subprocess
import sys
import threading
import time

import numpy as np
import pytest
from conftest import ROOT, process_env

DEMO = "experiments/demo_synth_mfn_arc.py"


def tiny(tmp_path, steps=4, epochs=2, extra=()):
    """Overrides that shrink the demo to seconds: tiny data, width, depth (the stem, each stage's strided
    bottleneck and no residual ones: tracing a step costs by the layer), input and step count."""
    return [
        "data.synthetic={'identities': 12, 'images': 6, 'val_identities': 20, 'val_images': 4, 'val_pairs': 40, 'seed': 1}",
        f"data.cache_dir={tmp_path / 'cache'}", "data.image_size=32", "data.shuffle_buffer=100",
        "model.backbone.width=0.25", "model.backbone.blocks=[1, 0, 0, 0]", "model.embedding_size=16",
        f"train.steps_per_epoch={steps}", f"train.epochs={epochs}", "train.batch_size=8", "train.save_steps=2",
        "eval.every_steps=4", "eval.batch_size=32", "log.every_steps=2", f"log.work_dir={tmp_path / 'runs'}", *extra,
    ]


def run_args(overrides):
    return [DEMO] + [a for o in overrides for a in ("--set", o)]


def checkpoint_arrays(run_dir):
    """Every array of the newest checkpoint (model and optimizer), by its path in the file."""
    import h5py

    info = json.loads((run_dir / "checkpoints" / "latest.json").read_text())
    arrays = {}
    with h5py.File(run_dir / "checkpoints" / info["path"], "r") as f:
        f.visititems(lambda name, item: arrays.__setitem__(name, item[()]) if isinstance(item, h5py.Dataset) else None)
    return info, arrays


def file_states(run_dir):
    return {path: (path.stat().st_mtime_ns, path.read_bytes()) for path in sorted(run_dir.rglob("*")) if path.is_file()}


# Partial FC draws classes and the augmentations draw random numbers: a resumed run must restore both.
RESUMABLE = ["eval.every_steps=0", "log.wandb=disabled", "train.save_steps=3", "model.head.sample_rate=0.5",
             "data.augment=['flip', {'type': 'color_jitter', 'p': 0.5}, {'type': 'random_crop', 'p': 0.5}]"]


class Lines(io.TextIOBase):
    """A stdout that notes (arrival time, line) for each line written to it and hands each line to `on_line`."""

    def __init__(self, on_line=None):
        self.lines, self.partial, self.on_line = [], "", on_line

    def write(self, text):
        *done, self.partial = (self.partial + text).split("\n")
        for line in done:
            self.lines.append((time.time(), line))
            if self.on_line is not None:
                self.on_line(line)
        return len(text)


def progress_step(line):
    """The step of a progress line ("step N/M ..."), else None."""
    found = re.match(r"step (\d+)/", line)
    return int(found.group(1)) if found else None


def run_here(overrides, stdout=None):
    """tools/run.py on the tiny demo in this process (no second TensorFlow start-up), printing to `stdout`
    (default: this process's). Then W&B's service is shut down, as the command's exit would: `run.finish()`
    can return before the service has written the run file's last rows, and the tests read that file."""
    from tools import run as run_tool

    with pytest.MonkeyPatch.context() as patch, contextlib.redirect_stdout(stdout or sys.stdout):
        patch.chdir(ROOT)
        result = run_tool.main(run_args(overrides))
    if "wandb" in sys.modules:
        sys.modules["wandb"].teardown()
    return result


def reference_run(root):
    """The tiny demo, 7 steps per epoch, 2 epochs, trained once without interruption (in this process) under
    `root`: (its overrides, its run directory, its final checkpoint). The tests that interrupt the same run
    compare their final checkpoints with this one, bit for bit; none writes into it."""
    overrides = tiny(root, steps=7, epochs=2, extra=RESUMABLE)
    run_here(overrides + [f"log.work_dir={root / 'straight'}"])
    run_dir = root / "straight" / "demo_synth_mfn_arc"
    return overrides, run_dir, checkpoint_arrays(run_dir)


def assert_same_arrays(run_dir, reference):
    reference_info, reference_arrays = reference
    info, arrays = checkpoint_arrays(run_dir)
    assert info == reference_info and arrays.keys() == reference_arrays.keys()
    different = [name for name in arrays if not np.array_equal(arrays[name], reference_arrays[name])]
    assert not different, f"{len(different)} arrays differ, e.g. {different[:3]}"


class Training:
    """A training process whose progress lines ("step N/M ...") are read as they come; stderr goes to a file."""

    def __init__(self, command, stderr_path):
        self.stderr_path = stderr_path
        self.lines = []
        ignored = signal.getsignal(signal.SIGINT) is signal.SIG_IGN  # as in a shell's background job: the
        if ignored:  # child would inherit it, and a run leaves an ignored signal ignored
            signal.signal(signal.SIGINT, signal.default_int_handler)
        try:
            with stderr_path.open("w") as stderr:
                self.proc = subprocess.Popen(command, cwd=ROOT, env=process_env(PYTHONFAULTHANDLER="1"),
                                             stdout=subprocess.PIPE, stderr=stderr, text=True)
        finally:
            if ignored:
                signal.signal(signal.SIGINT, signal.SIG_IGN)
        # a run that hangs is aborted with the Python stack of each of its threads on stderr (faulthandler)
        self.watchdog = threading.Timer(600, self.proc.send_signal, [signal.SIGABRT])
        self.watchdog.start()

    def wait_for_step(self, step):
        """Read on until a progress line at `step` or later; return its step."""
        for line in self.proc.stdout:
            self.lines.append(line)
            if (progress_step(line) or 0) >= step:
                return progress_step(line)
        self.proc.wait()
        raise AssertionError(f"exit status {self.proc.returncode} before step {step}: {''.join(self.lines)[-2000:]}"
                             f"{self.stderr_path.read_text()[-6000:]}")

    def stop(self, signum):
        """Send `signum`; wait for the end; return (exit status, stdout, stderr lines)."""
        self.proc.send_signal(signum)
        rest = self.proc.communicate(timeout=600)[0]
        self.watchdog.cancel()
        return self.proc.returncode, "".join(self.lines) + rest, self.stderr_path.read_text().strip().splitlines()


def stopped_at(returncode, stderr_lines, name, code):
    """The step of a run stopped by signal `name`, which exited `code` saying so in one line."""
    assert returncode == code and len(stderr_lines) == 1, (returncode, stderr_lines[-20:])
    found = re.fullmatch(rf"stopped by {name} at step (\d+); checkpoint saved; rerun the same command to resume",
                         stderr_lines[0])
    assert found, stderr_lines
    return int(found.group(1))


def latest_step(run_dir):
    return json.loads((run_dir / "checkpoints" / "latest.json").read_text())["step"]
