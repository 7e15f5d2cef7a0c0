"""The memory plan (`tools/run.py --check`, training/memory.py) against measured peaks on this CPU.

Each case trains in a fresh process as the engine builds it (face model, the engine's SGD with
momentum, compiled, optimizer built; TensorFlow, float32, no XLA): the resident memory is taken
once the runtime has started, then three training steps run on random 112×112 images; the
measured need is the peak resident memory (VmHWM) less that starting point: weights, optimizer
slots, activations, the traced step and every temporary, the framework's own allocations made for
the model included. The plan is counted in this process from the same settings, without building
any weight. A ratio plan/measured in 0.8-1.2 meets the goal.

    python bench/bench_memory.py [--quick] [--json PATH]
"""
import sys, pathlib; sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent.parent))  # noqa: E401,E702

import argparse  # noqa: E402
import json  # noqa: E402
import os  # noqa: E402
import subprocess  # noqa: E402

GB = 1e9
# (backbone, batch per replica, head spec, classes): three backbones at small batches, two large heads
CASES = [
    ("mobilefacenet", 64, "arcface", 1000),
    ("resnet18", 24, "arcface", 1000),
    ("resnet50", 24, "arcface", 1000),
    ("mobilefacenet", 16, "arcface", 300_000),
    ("mobilefacenet", 16, {"type": "arcface", "sample_rate": 0.1}, 1_000_000),
]
QUICK_CASES = [("mobilefacenet", 16, "arcface", 1000), ("mobilefacenet", 8, "arcface", 100_000)]


def experiment_for(backbone, batch, head, classes):
    from arcface_keras.config import Data, Experiment, Model, Train

    return Experiment(data=Data(synthetic={"identities": classes}), train=Train(batch_size=batch, precision="float32"),
                      model=Model(backbone=backbone,
                                  head=head, embedding_size=512))


def status_bytes(field):
    for line in open("/proc/self/status"):
        if line.startswith(field + ":"):
            return int(line.split()[1]) * 1024
    raise KeyError(field)


def measure(case):
    """Train three steps of `case` as the engine would; print the measured bytes as JSON."""
    os.environ.setdefault("KERAS_BACKEND", "tensorflow")
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import keras
    import numpy as np

    from arcface_keras.training.model import build_face_model
    from arcface_keras.training.optimizers import make_optimizer

    experiment = experiment_for(*case)
    batch, classes = experiment.train.batch_size, case[3]
    rng = np.random.default_rng(0)
    images = rng.uniform(-1, 1, size=(batch, 112, 112, 3)).astype("float32")
    labels = rng.integers(0, classes, size=batch).astype("int32")
    keras.ops.convert_to_numpy(keras.ops.ones(1))  # the runtime started before the starting point
    start = status_bytes("VmRSS")
    model, _, head = build_face_model(experiment.model, classes, 112)
    model.compile(optimizer=make_optimizer(experiment.train, 0.01), loss=head.loss(),
                  jit_compile=keras.backend.backend() == "jax")
    model.optimizer.build(model.trainable_variables)
    built = status_bytes("VmRSS")
    for _ in range(3):
        loss = model.train_on_batch([images, labels], labels)
    print(json.dumps({"peak": status_bytes("VmHWM") - start, "state": built - start, "loss": float(loss)}))


def planned(case):
    """The plan's {"backbone": Part, "head": Part} for `case`."""
    from arcface_keras.training import memory

    experiment = experiment_for(*case)
    return memory.plan(memory.count_shapes(experiment, case[3], "float32"), experiment.train.batch_size)


def run_case(case, backend="tensorflow"):
    proc = subprocess.run([sys.executable, __file__, "--measure", json.dumps(case)], capture_output=True, text=True,
                          env={**os.environ, "KERAS_BACKEND": backend})
    if proc.returncode != 0:
        return {"error": "killed (out of memory?)" if proc.returncode < 0 else proc.stderr.strip().splitlines()[-1][:80]}
    return json.loads(proc.stdout.strip().splitlines()[-1])


def head_name(head):
    if isinstance(head, str) or head.get("sample_rate", 1.0) == 1.0:
        return "ArcFace"
    return f"ArcFace, Partial FC r={head['sample_rate']:g}"


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="two small cases")
    parser.add_argument("--json", help="write the table as JSON here (bench/run_all.py)")
    parser.add_argument("--measure", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.measure:
        measure(json.loads(args.measure))
        return
    columns = ["model", "head", "classes", "batch", "plan weights+grads+slots (GB)", "plan activations (GB)",
               "plan total (GB)", "measured peak (GB)", "plan / measured"]
    rows, load = [], os.getloadavg()[0]
    print(f"load average before: {' '.join(f'{v:.2f}' for v in os.getloadavg())}")
    print("| " + " | ".join(columns) + " |\n|" + "---|" * len(columns))
    for case in QUICK_CASES if args.quick else CASES:
        parts, result = planned(case), run_case(case)
        total = sum(part.total for part in parts.values())
        activations = sum(part.activations for part in parts.values())
        row = dict(zip(columns, [case[0], head_name(case[2]), f"{case[3]:,}", case[1],
                                 round((total - activations) / GB, 3), round(activations / GB, 3), round(total / GB, 3)]))
        if "error" in result:
            row.update({"measured peak (GB)": result["error"], "plan / measured": ""})
        else:
            row.update({"measured peak (GB)": round(result["peak"] / GB, 3),
                        "plan / measured": round(total / result["peak"], 2)})
        rows.append(row)
        print("| " + " | ".join(str(row[c]) for c in columns) + " |", flush=True)
    print(f"load average after: {' '.join(f'{v:.2f}' for v in os.getloadavg())}")
    if args.json:
        title = (f"Memory plan against measured peak (TensorFlow, CPU, float32, no XLA; load average "
                 f"{load:.1f} → {os.getloadavg()[0]:.1f})")
        pathlib.Path(args.json).write_text(json.dumps({"title": title, "columns": columns, "rows": rows}))


if __name__ == "__main__":
    main()
