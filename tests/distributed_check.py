"""Two replicas of batch B reach the weights of one replica of batch 2B, through tools/run.py.

The CPU is split into two logical devices (before TensorFlow starts), then one experiment is run
three times on the same data order:
  one     strategy one_device, batch 2B
  sync    strategy mirrored (2 replicas), batch B, train.sync_bn
  local   strategy mirrored (2 replicas), batch B, per-replica batch norm
and the final checkpoints (every model and optimizer weight) are compared with `one`'s. Prints
one JSON line: {"sync": {...}, "local": {...}} with the largest absolute differences.

    python tests/distributed_check.py EXPERIMENT WORK_DIR [section.key=value ...]
"""
import json
import os
import sys
from pathlib import Path

os.environ.setdefault("KERAS_BACKEND", "tensorflow")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import h5py  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

RUNS = {
    "one": ["train.strategy=one_device", "train.sync_bn=false"],
    "sync": ["train.strategy=mirrored", "train.sync_bn=true"],
    "local": ["train.strategy=mirrored", "train.sync_bn=false"],
}


def checkpoint_arrays(run_dir):
    """{dataset path: array} of the newest checkpoint."""
    latest = json.loads((run_dir / "checkpoints" / "latest.json").read_text())
    arrays = {}
    with h5py.File(run_dir / "checkpoints" / latest["path"], "r") as f:
        f.visititems(lambda name, item: arrays.__setitem__(name, item[()]) if isinstance(item, h5py.Dataset) else None)
    return arrays


def largest_differences(arrays, reference):
    """Largest |difference| over trainable weights, batch-norm moving statistics and the rest."""
    out = {"trainable": 0.0, "moving_statistics": 0.0, "optimizer": 0.0}
    assert arrays.keys() == reference.keys(), sorted(set(arrays) ^ set(reference))
    for name, value in arrays.items():
        if value.dtype.kind != "f":
            continue
        kind = "optimizer" if name.startswith("optimizer") else "trainable"
        if kind == "trainable" and value.ndim == 1 and _is_moving(name, reference):
            kind = "moving_statistics"
        out[kind] = max(out[kind], float(np.max(np.abs(value - reference[name]))))
    return out


def _is_moving(name, reference):
    """Keras stores a batch norm's vars as 0 gamma, 1 beta, 2 moving mean, 3 moving variance."""
    layer, index = name.rsplit("/", 1)
    siblings = {key.rsplit("/", 1)[1] for key in reference if key.rsplit("/", 1)[0] == layer}
    return siblings == {"0", "1", "2", "3"} and index in ("2", "3")


def main(argv):
    experiment, work_dir, *extra = argv
    cpu = tf.config.list_physical_devices("CPU")[0]
    tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
    from tools import run as run_tool

    batch = 4
    run_dirs = {}
    for name, overrides in RUNS.items():
        size = 2 * batch if name == "one" else batch
        sets = [*extra, *overrides, f"train.batch_size={size}", f"name={name}", f"log.work_dir={work_dir}"]
        run_tool.main([experiment] + [a for s in sets for a in ("--set", s)])
        run_dirs[name] = Path(work_dir) / name
    reference = checkpoint_arrays(run_dirs["one"])
    report = {name: largest_differences(checkpoint_arrays(run_dirs[name]), reference) for name in ("sync", "local")}
    print(json.dumps(report))


if __name__ == "__main__":
    main(sys.argv[1:])
