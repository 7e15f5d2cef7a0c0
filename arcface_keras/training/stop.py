"""SIGTERM and SIGINT end a run at a step boundary, with that step checkpointed.

SIGTERM is what SLURM, Kubernetes and spot instances send before they stop a job; SIGINT is
Ctrl-C. On either, the training step in progress finishes, the checkpoint callback saves it (model,
optimizer, data position, seed states), the final evaluation is skipped and `Stopped` rises out of
the run: tools/run.py prints `stopped by SIGTERM at step N; checkpoint saved; rerun the same command
to resume` and exits with 128 + the signal's number (143 for SIGTERM, 130 for SIGINT), as a shell
reports a process that a signal ended. Outside the training steps (data preparation, building,
the final evaluation) there is no step to finish: `Stopped` rises at once, and so it does on a
second signal while stopping.

Handlers are installed only from the main thread (the only one Python runs them in), not for a
signal that is ignored (a shell's background job ignores SIGINT), and restored when the run ends.
Plain Python and a Keras callback: the same on every backend.
"""
import signal
import threading

import keras

SIGNALS = (signal.SIGTERM, signal.SIGINT)


class Stopped(BaseException):
    """The run stopped on a signal: a BaseException, as KeyboardInterrupt is, so that no `except
    Exception` on the way swallows it. `step`: the newest checkpoint's, None when there is none."""

    def __init__(self, signum, step=None):
        super().__init__(signum, step)
        self.signum, self.step = signum, step

    @property
    def exit_code(self):
        return 128 + self.signum

    def __str__(self):
        name = signal.Signals(self.signum).name
        if self.step is None:
            return f"stopped by {name} before the first checkpoint; nothing saved; rerun the same command to start"
        return f"stopped by {name} at step {self.step}; checkpoint saved; rerun the same command to resume"


class SignalStop:
    """`with SignalStop() as stop:` within the block SIGTERM and SIGINT raise Stopped, except during
    the training steps (`stop.in_steps`), where the first one only sets `stop.signum` for
    `StopAfterStep` to act on at the end of the step."""

    def __init__(self):
        self.signum = None
        self.in_steps = False
        self.previous = {}

    def __enter__(self):
        if threading.current_thread() is threading.main_thread():
            for signum in SIGNALS:
                if signal.getsignal(signum) is not signal.SIG_IGN:
                    self.previous[signum] = signal.signal(signum, self.handle)
        return self

    def __exit__(self, *exc):
        for signum, previous in self.previous.items():
            signal.signal(signum, previous)
        self.previous = {}

    def handle(self, signum, frame):
        stop_now = self.signum is not None or not self.in_steps
        self.signum = signum
        if stop_now:
            raise Stopped(signum)


class StopAfterStep(keras.callbacks.Callback):
    """Last in fit's callback list: at the end of a step in which a signal came, save the step with
    `checkpoint` (the chief's StepCheckpoint; None elsewhere) and raise Stopped."""

    def __init__(self, stop, checkpoint=None):
        super().__init__()
        self.stop = stop
        self.checkpoint = checkpoint

    def on_train_begin(self, logs=None):
        self.stop.in_steps = True

    def on_train_end(self, logs=None):
        self.stop.in_steps = False

    def on_train_batch_end(self, batch, logs=None):
        if self.stop.signum is None:
            return
        self.stop.in_steps = False
        step = self.checkpoint.save_current() if self.checkpoint is not None else None
        raise Stopped(self.stop.signum, step)
