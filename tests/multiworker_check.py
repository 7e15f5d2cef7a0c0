"""Two workers on 127.0.0.1 train one experiment with MultiWorkerMirroredStrategy via tools/run.py.

Starts `tools/run.py EXPERIMENT --workers 127.0.0.1:P0,127.0.0.1:P1 --worker-index i` twice (each
worker with its own data cache, both with the same --work-dir), waits for both, and prints one
JSON line: each worker's exit code and printed weights fingerprint and the run directories under
WORK_DIR/runs (the caller, which has Keras loaded already, fingerprints the chief's saved embedder.keras).

    python tests/multiworker_check.py EXPERIMENT WORK_DIR [section.key=value ...]
"""
import json
import os
import re
import socket
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
TIMEOUT = 400


def free_ports(count):
    sockets = [socket.socket() for _ in range(count)]
    for s in sockets:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in sockets]
    for s in sockets:
        s.close()
    return ports


def start_workers(experiment, work_dir, overrides):
    workers = ",".join(f"127.0.0.1:{port}" for port in free_ports(2))
    env = {**os.environ, "KERAS_BACKEND": "tensorflow", "TF_CPP_MIN_LOG_LEVEL": "2", "PYTHONUNBUFFERED": "1"}
    env.pop("TF_CONFIG", None)
    procs = []
    for index in range(2):
        sets = [*overrides, f"data.cache_dir={Path(work_dir) / f'cache-{index}'}"]
        command = [sys.executable, str(ROOT / "tools" / "run.py"), experiment, "--workers", workers,
                   "--worker-index", str(index), "--work-dir", str(Path(work_dir) / "runs")]
        command += [a for s in sets for a in ("--set", s)]
        procs.append(subprocess.Popen(command, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                      text=True))
    return procs


def main(argv):
    experiment, work_dir, *overrides = argv
    procs = start_workers(experiment, work_dir, overrides)
    outputs, codes = [], []
    try:
        for proc in procs:
            outputs.append(proc.communicate(timeout=TIMEOUT)[0])
            codes.append(proc.returncode)
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
    fingerprints = [re.findall(r"trained weights sha1 ([0-9a-f]+)", out) for out in outputs]
    run_dirs = sorted(p.name for p in (Path(work_dir) / "runs").iterdir()) if (Path(work_dir) / "runs").is_dir() else []
    print(json.dumps({"exit_codes": codes, "fingerprints": fingerprints, "run_dirs": run_dirs,
                      "tails": [out[-1500:] for out in outputs]}))


if __name__ == "__main__":
    sys.path.insert(0, str(ROOT))
    main(sys.argv[1:])
