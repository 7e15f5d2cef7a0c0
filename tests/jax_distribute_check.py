"""The same experiment on JAX over two host devices: equivalence with one device, and kill + resume.

XLA splits the CPU into two devices, then tools/run.py runs one experiment
  one     train.strategy=one_device, batch 2B
  two     train.strategy=mirrored (keras.distribution.DataParallel, 2 replicas), batch B
on the same data order, evaluating during training (eval.every_steps) with a batch that does not
split over the devices. Then `resumed`: the `two` run with more steps, saving every step, killed
with SIGKILL once a few checkpoints exist and started again, and `straight`, the same run
uninterrupted. Prints one JSON line: the largest differences of `two`'s final checkpoint from
`one`'s and of `resumed`'s from `straight`'s, both runs' replica lines, `two`'s versions.json, the
kill step, and the resumed run's "resuming at step" lines and final step.

    python tests/jax_distribute_check.py EXPERIMENT WORK_DIR [section.key=value ...]
"""
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

os.environ["KERAS_BACKEND"] = "jax"
os.environ["XLA_FLAGS"] = os.environ.get("XLA_FLAGS", "") + " --xla_force_host_platform_device_count=2"
ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]

from distributed_check import checkpoint_arrays, largest_differences  # noqa: E402

BATCH = 4
RESUME = ["train.epochs=2", "train.steps_per_epoch=15", "train.save_steps=1", "eval.every_steps=0"]


def run(experiment, work_dir, name, sets):
    """tools/run.py in a fresh process; returns its stdout."""
    args = [a for s in [*sets, f"name={name}", f"log.work_dir={work_dir}"] for a in ("--set", s)]
    done = subprocess.run([sys.executable, str(ROOT / "tools" / "run.py"), experiment, *args], env=os.environ,
                          capture_output=True, text=True, timeout=900)
    if done.returncode != 0:
        raise SystemExit(f"{name}: exit {done.returncode}\n{done.stdout[-2000:]}\n{done.stderr[-3000:]}")
    return done.stdout


def lines(out, word):
    return [line for line in out.splitlines() if word in line]


def kill_when_saved(experiment, work_dir, name, sets, min_step):
    """Start the run, SIGKILL it once its newest checkpoint is at `min_step` or later; return that step."""
    args = [a for s in [*sets, f"name={name}", f"log.work_dir={work_dir}"] for a in ("--set", s)]
    proc = subprocess.Popen([sys.executable, str(ROOT / "tools" / "run.py"), experiment, *args], env=os.environ,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    latest = Path(work_dir) / name / "checkpoints" / "latest.json"
    deadline = time.time() + 600
    while time.time() < deadline and proc.poll() is None:
        if latest.is_file() and json.loads(latest.read_text())["step"] >= min_step:
            proc.send_signal(signal.SIGKILL)
            proc.wait()
            return json.loads(latest.read_text())["step"]
        time.sleep(0.02)
    raise SystemExit(f"{name}: exited ({proc.poll()}) or timed out before step {min_step} was saved")


def main(argv):
    experiment, work_dir, *extra = argv
    common = [*extra, "eval.every_steps=3", "eval.batch_size=31"]
    out = {
        "one": run(experiment, work_dir, "one", [*common, "train.strategy=one_device", f"train.batch_size={2 * BATCH}"]),
        "two": run(experiment, work_dir, "two", [*common, "train.strategy=mirrored", f"train.batch_size={BATCH}"]),
    }
    reference = checkpoint_arrays(Path(work_dir) / "one")
    report = {"two": largest_differences(checkpoint_arrays(Path(work_dir) / "two"), reference),
              "replica_lines": {name: lines(text, "replica(s)") for name, text in out.items()},
              "versions": json.loads((Path(work_dir) / "two" / "versions.json").read_text())}

    resume = [*extra, *RESUME, "train.strategy=mirrored", f"train.batch_size={BATCH}"]
    report["killed_at"] = kill_when_saved(experiment, work_dir, "resumed", resume, min_step=4)
    rerun = run(experiment, work_dir, "resumed", resume)
    run(experiment, work_dir, "straight", resume)
    report["resumed_vs_straight"] = largest_differences(checkpoint_arrays(Path(work_dir) / "resumed"),
                                                        checkpoint_arrays(Path(work_dir) / "straight"))
    report["resumed_lines"] = lines(rerun, "resuming at step")
    report["resumed_step"] = json.loads((Path(work_dir) / "resumed" / "eval_report.json").read_text())["step"]
    print(json.dumps(report))


if __name__ == "__main__":
    main(sys.argv[1:])
