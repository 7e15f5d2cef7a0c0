"""Step time and peak memory of a margin head alone: full FC against Partial FC, by class count.

One step = forward + backward + update of the (C, D) class centres by the engine's SGD
(RowSparseSGD: momentum 0.9, weight decay 5e-4) for a batch of B given embeddings, ArcFace
margin, TensorFlow, no XLA (train.jit_compile's default; with --jit-compile XLA reads and writes
whole variables, so Partial FC's row updates cost O(C·D) again). Each configuration runs in a fresh process: "peak RSS" is its VmHWM (creation
of the centres and momentum included), "step peak" the VmHWM over the timed steps alone (reset
through /proc/self/clear_refs), both less the resident memory just before the head was built (the
TensorFlow runtime).
A configuration whose estimated need passes 80% of the memory available is reported as skipped;
one that dies is reported too.

    python bench/bench_heads.py [--classes 100000 1000000 2000000] [--rates 1.0 0.1] [--dim 512] [--batch 128]
                                [--jit-compile]
"""
import sys, pathlib; sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent.parent))  # noqa: E401,E702

import argparse  # noqa: E402
import json  # noqa: E402
import math  # noqa: E402
import os  # noqa: E402
import subprocess  # noqa: E402
import time  # noqa: E402

GB = 1e9


def status_kb(field):
    """A `field` of /proc/self/status (VmRSS, VmHWM) in bytes."""
    for line in open("/proc/self/status"):
        if line.startswith(field + ":"):
            return int(line.split()[1]) * 1024
    raise KeyError(field)


def available_bytes():
    for line in open("/proc/meminfo"):
        if line.startswith("MemAvailable:"):
            return int(line.split()[1]) * 1024
    return 0


def estimated_bytes(classes, rate, dim, batch):
    """Centres + momentum (+ a dense gradient at r = 1) + ~6 float32 (B, k) buffers + 1 GB of runtime."""
    k = classes if rate == 1.0 else max(math.ceil(rate * classes), batch)
    return (3 if rate == 1.0 else 2) * 4 * classes * dim + 6 * 4 * batch * k + 1 * GB


def measure(classes, rate, dim, batch, steps, jit_compile=False):
    """Time `steps` training steps after one untimed (tracing) step; print a JSON line with the fastest."""
    os.environ.setdefault("KERAS_BACKEND", "tensorflow")
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import keras
    import numpy as np

    import arcface_keras.heads  # noqa: F401
    from arcface_keras.heads.partial_fc import RowSparseSGD
    from arcface_keras.registry import HEADS

    rng = np.random.default_rng(0)
    x = rng.normal(size=(batch, dim)).astype("float32")
    y = rng.integers(0, classes, size=batch).astype("int32")
    keras.ops.convert_to_numpy(keras.ops.ones(1))  # start the runtime before taking the baseline
    baseline = status_kb("VmRSS")
    head = HEADS.build({"type": "arcface", "sample_rate": rate, "seed": 0}, num_classes=classes)
    x_in, y_in = keras.Input((dim,)), keras.Input((), dtype="int32")
    model = keras.Model([x_in, y_in], head([x_in, y_in]))
    model.compile(RowSparseSGD(0.1, momentum=0.9, weight_decay=5e-4), head.loss(), jit_compile=jit_compile)
    model.train_on_batch([x, y], y)
    build_peak = status_kb("VmHWM")
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")  # restart the peak from the current resident size
    times = []
    for _ in range(steps):
        began = time.perf_counter()
        loss = model.train_on_batch([x, y], y)
        times.append(time.perf_counter() - began)
    print(json.dumps({"ms": 1000 * min(times), "peak": max(build_peak, status_kb("VmHWM")) - baseline,
                      "step_peak": status_kb("VmHWM") - baseline, "k": head.num_sampled(batch),
                      "loss": float(loss)}))


def run_one(classes, rate, dim, batch, steps, jit_compile=False):
    """The measurement of one configuration in a fresh process, or why there is none."""
    need = estimated_bytes(classes, rate, dim, batch)
    if need > 0.8 * available_bytes():
        return {"skip": f"skipped: needs ~{need / GB:.0f} GB, {available_bytes() / GB:.0f} GB available"}
    command = [sys.executable, __file__, "--measure", str(classes), str(rate), "--dim", str(dim),
               "--batch", str(batch), "--steps", str(steps)] + (["--jit-compile"] if jit_compile else [])
    proc = subprocess.run(command, capture_output=True, text=True)
    if proc.returncode != 0:
        reason = "killed (out of memory?)" if proc.returncode < 0 else proc.stderr.strip().splitlines()[-1][:80]
        return {"skip": f"failed: {reason}"}
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--classes", type=int, nargs="+", default=[100_000, 1_000_000, 2_000_000])
    parser.add_argument("--rates", type=float, nargs="+", default=[1.0, 0.1])
    parser.add_argument("--dim", type=int, default=512)
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--steps", type=int, default=5, help="timed steps per configuration (the fastest is "
                                                                 "reported: the least disturbed on a shared machine)")
    parser.add_argument("--jit-compile", action="store_true", help="compile the training step with XLA")
    parser.add_argument("--measure", nargs=2, metavar=("CLASSES", "RATE"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.measure:
        measure(int(args.measure[0]), float(args.measure[1]), args.dim, args.batch, args.steps, args.jit_compile)
        return
    print(f"load average before: {' '.join(f'{v:.2f}' for v in os.getloadavg())}, {os.cpu_count()} CPUs, "
          f"{available_bytes() / GB:.1f} GB available; D={args.dim}, B={args.batch}, XLA {'on' if args.jit_compile else 'off'}")
    print("\n| classes | head | k | step (ms) | peak RSS (GB) | step peak RSS (GB) |\n|---|---|---|---|---|---|")
    for classes in args.classes:
        for rate in args.rates:
            name = "full FC" if rate == 1.0 else f"Partial FC r={rate:g}"
            result = run_one(classes, rate, args.dim, args.batch, args.steps, args.jit_compile)
            if "skip" in result:
                print(f"| {classes:,} | {name} | | {result['skip']} | | |", flush=True)
                continue
            print(f"| {classes:,} | {name} | {result['k']:,} | {result['ms']:.0f} | {result['peak'] / GB:.2f} "
                  f"| {result['step_peak'] / GB:.2f} |", flush=True)
    print(f"\nload average after: {' '.join(f'{v:.2f}' for v in os.getloadavg())}")


if __name__ == "__main__":
    main()
