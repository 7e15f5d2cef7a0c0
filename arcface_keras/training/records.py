"""Where a run's numbers go: the active W&B run and TensorBoard, against one step axis.

The step axis never repeats or goes back, across resumes too: `run_dir/logged_step.txt` holds the
highest step ever handed to W&B, written *before* the row is logged, so a run killed and resumed
drops rows at steps it already logged (a kill between the two writes loses a row, never doubles
one). Within one process a step may be logged several times (the rows merge).
"""
import numbers
import sys
from pathlib import Path

from arcface_keras.io import write_text

MARK = "logged_step.txt"


class RunRecords:
    """Rows of values at optimizer steps: every value to W&B, the scalars to TensorBoard too."""

    def __init__(self, run_dir=None, tensorboard=False):
        self.mark_path = Path(run_dir) / MARK if run_dir else None
        self.floor = read_mark(self.mark_path)  # steps at or below were logged by an earlier process
        self.last = self.floor
        self.writer = None
        if run_dir and tensorboard:
            import tensorflow as tf

            self.writer = tf.summary.create_file_writer(str(Path(run_dir) / "tensorboard"))

    def log(self, row, step):
        """Log `row` at `step`; returns False (logging nothing) for a step already passed."""
        if step <= self.floor or step < self.last:
            return False
        if step > self.last and self.mark_path is not None:
            write_text(self.mark_path, f"{step}\n")
        self.last = step
        self.write_scalars(row, step)
        wandb = sys.modules.get("wandb")  # a run can only be active where wandb is already imported
        if wandb is not None and wandb.run is not None:
            wandb.log(row, step=step)
        return True

    def write_scalars(self, row, step):
        if self.writer is None:
            return
        import tensorflow as tf

        with self.writer.as_default(step=step):
            for key, value in row.items():
                if isinstance(value, numbers.Real) and not isinstance(value, bool):
                    tf.summary.scalar(key, float(value))

    def close(self):
        if self.writer is not None:
            self.writer.close()
            self.writer = None


def read_mark(path):
    if path is None or not path.is_file():
        return -1
    return int(path.read_text().strip() or -1)


current = RunRecords()


def open_records(run_dir, tensorboard):
    """Make the records of `run_dir` the ones `log` writes to (closing the previous ones)."""
    global current
    current.close()
    current = RunRecords(run_dir, tensorboard)
    return current


def log(row, step):
    return current.log(row, step)
