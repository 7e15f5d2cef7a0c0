"""The same experiment on JAX over two host devices, then over two processes: equivalences, kill + resume.

First, in this process (before anything uses JAX): the error of train.strategy=multi_worker where
no cluster is named. Then XLA splits the CPU into two devices, and tools/run.py runs one experiment
three times in this process (one TensorFlow and JAX start-up for all), on the same data order:
  one       train.strategy=one_device, batch 2B
  two       train.strategy=mirrored (keras.distribution.DataParallel, 2 replicas), batch B
evaluating during training (eval.every_steps) with a batch that does not split over the devices,
and `straight`: the `two` settings over two epochs, saving every step.
Then the `straight` settings over two processes of one CPU device each (tools/run.py --workers
127.0.0.1:P0,127.0.0.1:P1 --worker-index i: jax.distributed): `multi_resumed`, whose chief is
killed with SIGKILL once a few checkpoints exist (the other process then fails by itself), after
which both are started again and run to the end.
Prints one JSON line: the largest differences of `two`'s final checkpoint from `one`'s and of
`multi_resumed`'s from `straight`'s; the replica lines, `two`'s versions.json, the kill step, the
"resuming at step" lines, the final step, each process's weights fingerprint, the killed run's
survivor (exit code, seconds it lived on), the seconds each part took, and the no-cluster error.

    python tests/jax_distribute_check.py EXPERIMENT WORK_DIR [section.key=value ...]
"""
import contextlib
import io
import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

os.environ["KERAS_BACKEND"] = "jax"
TWO_DEVICES = "--xla_force_host_platform_device_count=2"
os.environ["XLA_FLAGS"] = f"{os.environ.get('XLA_FLAGS', '')} {TWO_DEVICES}".strip()
ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]

from distributed_check import checkpoint_arrays, largest_differences  # noqa: E402
from multiworker_check import free_ports  # noqa: E402

BATCH = 4
RESUME = ["train.epochs=2", "train.steps_per_epoch=15", "train.save_steps=1", "eval.every_steps=0"]


def run_here(experiment, work_dir, name, sets):
    """tools/run.py's main for `name` in this process; returns what it printed."""
    from tools import run as run_tool

    args = [a for s in [*sets, f"name={name}", f"log.work_dir={work_dir}"] for a in ("--set", s)]
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        run_tool.main([experiment, *args])
    return printed.getvalue()


def lines(out, word):
    return [line for line in out.splitlines() if word in line]


def start_processes(experiment, work_dir, name, sets):
    """tools/run.py as processes 0 and 1 of a two-process JAX cluster on two free ports of 127.0.0.1, one CPU
    device each, their output in WORK_DIR/.NAME-<index>.log."""
    workers = ",".join(f"127.0.0.1:{port}" for port in free_ports(2))
    args = [a for s in [*sets, f"name={name}", f"log.work_dir={work_dir}"] for a in ("--set", s)]
    flags = os.environ["XLA_FLAGS"].replace(TWO_DEVICES, "").strip()
    env = {**{k: v for k, v in os.environ.items() if k != "XLA_FLAGS"}, **({"XLA_FLAGS": flags} if flags else {})}
    procs = []
    for index in range(2):
        with open(Path(work_dir) / f".{name}-{index}.log", "a") as log:
            procs.append(subprocess.Popen([sys.executable, str(ROOT / "tools" / "run.py"), experiment, *args,
                                           "--workers", workers, "--worker-index", str(index)],
                                          env=env, stdout=log, stderr=subprocess.STDOUT))
    return procs


def outputs(work_dir, name):
    return [(Path(work_dir) / f".{name}-{index}.log").read_text() for index in range(2)]


def run_processes(experiment, work_dir, name, sets):
    """Both processes started and run to the end; returns their outputs (of every start of `name`)."""
    procs = start_processes(experiment, work_dir, name, sets)
    codes = [proc.wait(timeout=900) for proc in procs]
    if codes != [0, 0]:
        raise SystemExit(f"{name}: exit codes {codes}\n" + "\n".join(out[-3000:] for out in outputs(work_dir, name)))
    return outputs(work_dir, name)


def kill_chief_when_saved(experiment, work_dir, name, sets, min_step):
    """Start both processes, SIGKILL the chief once its newest checkpoint is at `min_step` or later; return
    that step and the other process's (exit code, seconds it lived on); it is killed after 150 s (JAX's
    heartbeat timeout, 100 s, ends a process whose peer died at the latest)."""
    procs = start_processes(experiment, work_dir, name, sets)
    latest = Path(work_dir) / name / "checkpoints" / "latest.json"
    deadline = time.time() + 600
    while time.time() < deadline and procs[0].poll() is None:
        if latest.is_file() and json.loads(latest.read_text())["step"] >= min_step:
            procs[0].send_signal(signal.SIGKILL)
            procs[0].wait()
            killed = time.time()
            try:
                procs[1].wait(timeout=150)
            except subprocess.TimeoutExpired:
                procs[1].kill()
                procs[1].wait()
            return json.loads(latest.read_text())["step"], [procs[1].returncode, round(time.time() - killed, 1)]
        time.sleep(0.02)
    for proc in procs:
        proc.kill()
    raise SystemExit(f"{name}: exited ({procs[0].poll()}) or timed out before step {min_step} was saved\n"
                     + outputs(work_dir, name)[0][-3000:])


def fingerprints(outputs):
    return [re.findall(r"trained weights sha1 ([0-9a-f]+)", out) for out in outputs]


def two_processes(experiment, work_dir, resume):
    """The `straight` run over two processes, killed and rerun (see the module docstring)."""
    sets = [*resume, "eval.every_steps=10", "eval.batch_size=31"]
    killed_at, survivor = kill_chief_when_saved(experiment, work_dir, "multi_resumed", sets, 4)
    starts = run_processes(experiment, work_dir, "multi_resumed", sets)  # each log holds both starts
    straight = checkpoint_arrays(Path(work_dir) / "straight")
    return {"multi_resumed_vs_straight": largest_differences(checkpoint_arrays(Path(work_dir) / "multi_resumed"),
                                                             straight),
            "multi_replica_lines": [lines(out, "replica(s)") for out in starts],
            "multi_fingerprints": fingerprints(starts),
            "multi_killed_at": killed_at, "multi_survivor": survivor,
            "multi_resumed_lines": [lines(out, "resuming at step") for out in starts],
            "multi_resumed_step": json.loads((Path(work_dir) / "multi_resumed" / "eval_report.json").read_text())["step"],
            "multi_run_dirs": sorted(p.name for p in Path(work_dir).glob("multi*") if p.is_dir())}


def main(argv):
    experiment, work_dir, *extra = argv
    began = time.time()
    report = {"no_cluster": no_cluster_error()}  # before anything uses JAX, as a real process would
    Path(work_dir).mkdir(parents=True, exist_ok=True)  # the runs' logs go there
    common = [*extra, "eval.every_steps=3", "eval.batch_size=31"]
    resume = [*extra, *RESUME, "train.strategy=mirrored", f"train.batch_size={BATCH}"]
    out = {name: run_here(experiment, work_dir, name, sets) for name, sets in {
        "one": [*common, "train.strategy=one_device", f"train.batch_size={2 * BATCH}"],
        "two": [*common, "train.strategy=mirrored", f"train.batch_size={BATCH}"],
        "straight": resume}.items()}
    reference = checkpoint_arrays(Path(work_dir) / "one")
    report.update({"two": largest_differences(checkpoint_arrays(Path(work_dir) / "two"), reference),
                   "replica_lines": {name: lines(out[name], "replica(s)") for name in ("one", "two")},
                   "versions": json.loads((Path(work_dir) / "two" / "versions.json").read_text())})
    report["seconds"] = {"one_process": round(time.time() - began)}
    report.update(two_processes(experiment, work_dir, resume))
    report["seconds"]["two_processes"] = round(time.time() - began - report["seconds"]["one_process"])
    print(json.dumps(report))


def no_cluster_error():
    """What train.strategy=multi_worker says in this process, which names no cluster."""
    from arcface_keras.training.distribute import ClusterError, connect_processes

    try:
        connect_processes("multi_worker", seed=0)
    except ClusterError as exc:
        return str(exc)
    return None


if __name__ == "__main__":
    main(sys.argv[1:])
