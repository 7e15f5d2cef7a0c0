"""SIGTERM stops a run on two replicas (MirroredStrategy over two logical CPUs), which resumes exactly.

SIGINT takes the same handler (training/stop.py); tests/test_resume.py stops a one-device run with each."""
import signal
import subprocess
import sys

from conftest import ROOT, process_env
from tiny_runs import Training, assert_same_arrays, checkpoint_arrays, latest_step, run_args, stopped_at, tiny


def test_sigterm_stops_a_mirrored_run_that_resumes_exactly(tmp_path):
    """SIGTERM during a step on two replicas, then the same command to the end, against an uninterrupted run
    of the same setup (trained after it, in the rerun's process)."""
    overrides = tiny(tmp_path, steps=7, epochs=2, extra=["eval.every_steps=0", "log.wandb=disabled",
                                                          "train.strategy=mirrored", "train.batch_size=4"])
    command = [sys.executable, "tests/two_cpus.py", "tools/run.py",
               *run_args(overrides + [f"log.work_dir={tmp_path / 'stopped'}", "train.save_steps=0"])]
    run_dir = tmp_path / "stopped" / "demo_synth_mfn_arc"

    first = Training(command, tmp_path / "first.err")
    first.wait_for_step(2)
    interrupted = stopped_at(*first.stop(signal.SIGTERM)[::2], "SIGTERM", 143)
    assert interrupted == latest_step(run_dir) < 14

    straight = ["--then", "tools/run.py"] + run_args(overrides + [f"log.work_dir={tmp_path / 'straight'}"])
    last = subprocess.run(command + straight, cwd=ROOT, env=process_env(), capture_output=True, text=True, timeout=600)
    assert last.returncode == 0, last.stdout[-2000:] + last.stderr[-2000:]
    rerun, uninterrupted = last.stdout.split("2 replica(s), global batch 8")[1:]  # each run says it first
    assert f"resuming at step {interrupted}" in rerun and "resuming" not in uninterrupted
    assert_same_arrays(run_dir, checkpoint_arrays(tmp_path / "straight" / "demo_synth_mfn_arc"))
