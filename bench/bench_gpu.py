"""Training speed on one device, by precision and XLA: IResNet-50 and MobileFaceNet + ArcFace, and each head alone.

Backbone rows: one training step of a backbone + ArcFace (SGD, the engine's optimizer) on one fixed
batch of random images that stays on the device, so the input pipeline and host transfers are out of
the measurement; training FLOPs are 3 x the forward FLOPs of the backbone (counted from layer shapes,
bench_backbones.forward_flops) and the head's (B x D x C) matmul, set against the device's best square
matmul in the same precision. Head rows: one training step of each registered head (and Partial FC at
sample_rate 0.1) on given float32 embeddings, as a backbone hands them over, through one dense layer
so that the gradient reaches the embeddings; a backbone step plus a head step is a full step.

Each row is one (precision, XLA) pair; the row `auto` picks (training/auto.py) comes first and every
other row says its speed relative to it ("vs auto"), next to the seconds its first step took (compiling
included): what auto gains and what it costs, in one run. XLA off exists on TensorFlow only (its own
kernels, unfused, as a CPU run uses them): Keras on JAX always compiles the step with XLA (jit_compile=False
would dispatch it from Python op by op, a debugging mode far slower than anything a user trains with), so
the JAX rows are XLA on and a GPU machine without TensorFlow measures the precision columns;
`--backend tensorflow` adds XLA off.
A row that fails (out of memory, ...) says why; rows not started within --budget seconds are skipped;
the last line is everything as JSON.

With the JAX backend (the default) only keras and jax are needed: no TensorFlow, no network (the
package runs from this source tree). bench/gpu.sh runs the GPU configuration:

    bench/gpu.sh                                        # JAX, 3 precisions, XLA: batch 256, heads at 1M classes
    python bench/bench_gpu.py --device cpu --steps 1    # tiny: 32x32, quarter width, batch 8, 2 precisions, 2 heads
    python bench/bench_gpu.py --device cpu --config full --matmul-size 2048 --precision float32 --batches 64 \\
        --backend tensorflow --jit-compile auto --heads none

Sizing the GPU run (one H200, JAX), from FLOPs: IR-50 trains 3 x 12.6 GFLOP per 112x112 image, 9.7 TFLOP
per batch of 256: ~25 ms at 40% of the 989 TFLOP/s bfloat16 peak, < 0.3 s even at half of plain float32's
67 TFLOP/s; MobileFaceNet 1.4 GFLOP per image; a head at 1M classes 0.8 TFLOP and ~10 GB of memory traffic,
a few ms. The 22 steps of every row take under a minute in all: compiling sets the time, ~30-60 s per
backbone and precision (XLA with cuDNN autotuning), a few seconds per head. 6 backbone rows, 18 head rows
(a head's step is the same under float32 and mixed_bfloat16), 3 matmul peaks and JAX's start: 5-7 minutes.
No row starts after --budget seconds (360 on a GPU), and auto's precision comes first, so the run ends
within ~7 minutes whatever compiling costs.
"""
import argparse
import json
import os
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "bench")]

PRECISIONS = ("float32", "mixed_float16", "mixed_bfloat16")
HEADS = ("softmax", "arcface", "cosface", "combined", "adaface", "curricularface", "triplet", "center", "partial_fc")
CONFIGS = {  # image size, backbone width, batches, ArcFace classes (backbone rows), head classes, matmul size, ...
    "full": dict(image_size=112, width=1.0, batches="256", classes=10000, head_classes=1000000, matmul=8192,
                 precision=",".join(PRECISIONS), heads=",".join(HEADS)),
    "tiny": dict(image_size=32, width=0.25, batches="8", classes=64, head_classes=64, matmul=256,
                 precision="mixed_bfloat16,float32", heads="arcface,partial_fc"),
}
MATMULS_PER_CALL = 8
EMBEDDING = 512
PARTIAL_FC_RATE = 0.1


def parse_args(argv):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", choices=["gpu", "cpu"], default="gpu")
    parser.add_argument("--backend", choices=["jax", "tensorflow"], default="jax")
    parser.add_argument("--config", choices=sorted(CONFIGS), help="sizes (default: full on a GPU, tiny on a CPU)")
    parser.add_argument("--precision", help=f"comma-separated, of {', '.join(PRECISIONS)} (default: the config's)")
    parser.add_argument("--jit-compile", choices=["auto", "true", "false", "both"],
                        help="XLA: auto (training/auto.py's choice), true, false or both (default: both on "
                             "TensorFlow, true on JAX)")
    parser.add_argument("--models", default="resnet50,mobilefacenet", help="comma-separated backbone names, or none")
    parser.add_argument("--heads", help=f"comma-separated, of {', '.join(HEADS)}, or none (default: the config's)")
    parser.add_argument("--batches", help="comma-separated batch sizes (default: the config's)")
    parser.add_argument("--classes", type=int, help="ArcFace classes of the backbone rows (default: the config's)")
    parser.add_argument("--head-classes", type=int, help="classes of the head rows (default: the config's)")
    parser.add_argument("--image-size", type=int, help="(default: the config's)")
    parser.add_argument("--matmul-size", type=int, help="side of the peak's square matmuls (default: the config's)")
    parser.add_argument("--steps", type=int, default=20, help="timed steps per row (median)")
    parser.add_argument("--warmup", type=int, default=2, help="untimed steps first (the first one compiles)")
    parser.add_argument("--budget", type=float, help="seconds after which no row starts (default: 360 on a GPU)")
    args = parser.parse_args(argv)
    config = CONFIGS[args.config or ("full" if args.device == "gpu" else "tiny")]
    for key, default in dict(config, matmul_size=config["matmul"]).items():
        if getattr(args, key, None) is None:
            setattr(args, key, default)
    args.batches = [int(b) for b in str(args.batches).split(",") if b]
    args.models, args.heads, args.precision = (names(value) for value in (args.models, args.heads, args.precision))
    if args.budget is None:
        args.budget = 360.0 if args.device == "gpu" else float("inf")
    if args.jit_compile is None:
        args.jit_compile = "both" if args.backend == "tensorflow" else "true"
    check(parser, args)
    return args


def names(value):
    return [] if value.strip().lower() in ("", "none") else [part.strip() for part in value.split(",") if part.strip()]


def check(parser, args):
    unknown = [p for p in args.precision if p not in PRECISIONS] + [h for h in args.heads if h not in HEADS]
    if unknown:
        parser.error(f"unknown precision or head {', '.join(unknown)}; precisions: {', '.join(PRECISIONS)}; "
                     f"heads: {', '.join(HEADS)}")
    if args.steps < 1 or args.warmup < 0 or not args.batches or min(args.batches) < 1 or not args.precision:
        parser.error("--steps must be >= 1, --warmup >= 0, --batches positive, --precision not empty")
    if args.backend == "jax" and args.jit_compile in ("false", "both"):
        parser.error("--jit-compile false/both: Keras on JAX always compiles the step with XLA; XLA off is "
                     "measured on TensorFlow (--backend tensorflow)")


def select_device(args):
    """Environment for the backend and device; before keras (and jax) are imported."""
    os.environ["KERAS_BACKEND"] = args.backend
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    if args.device == "cpu":
        os.environ["JAX_PLATFORMS"] = "cpu"
        os.environ["CUDA_VISIBLE_DEVICES"] = ""


def device_description(backend):
    from arcface_keras.training.auto import local_device

    return local_device(backend)


def matmul_dtype(precision):
    return {"mixed_bfloat16": "bfloat16", "mixed_float16": "float16"}.get(precision, "float32")


def matmul_peak(backend, dtype, size):
    """Best TFLOP/s of chained square matmuls in `dtype` (a few matmuls per call hide the dispatch)."""
    import numpy as np

    rng = np.random.default_rng(0)
    a = rng.normal(size=(size, size)).astype("float32")
    b = (rng.normal(size=(size, size)) / np.sqrt(size)).astype("float32")  # keeps the chain's scale
    chain = _compiled_chain(backend, dtype, a, b)
    chain()
    best = float("inf")
    for _ in range(10):
        start = time.perf_counter()
        chain()
        best = min(best, time.perf_counter() - start)
    return MATMULS_PER_CALL * 2 * size**3 / best / 1e12


def _compiled_chain(backend, dtype, a, b):
    """A no-argument function running MATMULS_PER_CALL dependent matmuls and waiting for the result."""
    if backend == "jax":
        import jax
        import jax.numpy as jnp

        a, b = jnp.asarray(a, dtype), jnp.asarray(b, dtype)

        @jax.jit
        def chain(x, y):
            return jax.lax.fori_loop(0, MATMULS_PER_CALL, lambda _, x: x @ y, x)[0, 0]

        return lambda: float(chain(a, b))
    import tensorflow as tf

    a, b = tf.cast(a, dtype), tf.cast(b, dtype)

    @tf.function
    def chain():
        x = a
        for _ in range(MATMULS_PER_CALL):
            x = tf.matmul(x, b)
        return x[0, 0]

    return lambda: float(chain())


def optimizer():
    from arcface_keras.heads.partial_fc import RowSparseSGD

    return RowSparseSGD(0.1, momentum=0.9, weight_decay=5e-4)


def build_backbone_model(name, args, jit):
    """(compiled backbone + ArcFace training model, training FLOPs per image) under the current dtype policy."""
    from bench_backbones import forward_flops
    from arcface_keras.config import Model
    from arcface_keras.training.model import build_face_model

    backbone = {"type": name, "width": args.width} if args.width != 1.0 else name
    spec = Model(backbone=backbone, head={"type": "arcface", "s": 64.0, "m": 0.5}, embedding_size=EMBEDDING)
    model, embedder, head = build_face_model(spec, args.classes, args.image_size)
    model.compile(optimizer(), head.loss(), jit_compile=jit)
    return model, 3 * (forward_flops(embedder) + 2 * spec.embedding_size * args.classes)


def head_spec(name):
    return {"type": "arcface", "sample_rate": PARTIAL_FC_RATE} if name == "partial_fc" else name


def build_head_model(name, args, jit):
    """(compiled model: float32 embeddings → dense → head `name`, None): a head's training step."""
    import keras

    from arcface_keras.registry import HEADS

    head = HEADS.build(head_spec(name), num_classes=args.head_classes)
    embeddings, labels = keras.Input((EMBEDDING,)), keras.Input((), dtype="int32")
    last_layer = keras.layers.Dense(EMBEDDING, use_bias=False, dtype="float32", name="last_layer")
    model = keras.Model([embeddings, labels], head([last_layer(embeddings), labels]))
    model.compile(optimizer(), head.loss(), jit_compile=jit)
    return model, None


def inputs(kind, batch, args):
    """One batch for a row: images (backbone) or float32 embeddings (head), and labels; on the device.

    Labels come in groups of 4 images per identity, so that the triplet head has positives."""
    import keras
    import numpy as np

    rng = np.random.default_rng(0)
    if kind == "backbone":
        x = rng.uniform(-1, 1, (batch, args.image_size, args.image_size, 3)).astype("float32")
        classes = args.classes
    else:
        x = rng.normal(size=(batch, EMBEDDING)).astype("float32")
        classes = args.head_classes
    labels = rng.choice(classes, size=max(batch // 4, 1), replace=False).repeat(4)[:batch]
    return keras.ops.convert_to_tensor(x), keras.ops.convert_to_tensor(labels.astype("int32"))


def time_training(model, x, labels, args):
    """(seconds of the first step, compiling included; median seconds per training step) on one batch."""
    import numpy as np

    durations = []
    for _ in range(args.warmup + args.steps):
        start = time.perf_counter()
        loss = model.train_on_batch([x, labels], labels)  # returns a host float: waits for the step
        durations.append(time.perf_counter() - start)
    if not np.isfinite(loss):
        raise FloatingPointError(f"non-finite loss {loss}")
    timed = sorted(durations[args.warmup:])
    return durations[0], timed[len(timed) // 2]


def head_precision(precision):
    """A head computes in float32 under every policy, and its input (a backbone's embedding) is float32 too:
    under mixed_bfloat16 its step is float32's; mixed_float16 adds loss scaling."""
    return "float32" if precision == "mixed_bfloat16" else precision


def plan(args, auto):
    """The rows to measure, auto's precision and XLA first: [{kind, name, batch, precision, xla}]."""
    jits = {"both": [True, False], "true": [True], "false": [False]}.get(args.jit_compile, [auto.jit_compile])
    jits = sorted(jits, key=lambda j: j != auto.jit_compile)
    rows, heads_done = [], set()
    for precision in sorted(args.precision, key=lambda p: p != auto.precision):
        for xla in jits:
            rows += [dict(kind="backbone", name=m, batch=b, precision=precision, xla=xla)
                     for m in args.models for b in args.batches]
            if (head_precision(precision), xla) not in heads_done:
                heads_done.add((head_precision(precision), xla))
                rows += [dict(kind="head", name=h, batch=max(args.batches), precision=head_precision(precision),
                              xla=xla) for h in args.heads]
    return rows


def measure_row(row, args, peaks):
    """Fill `row` with its timings (or its error)."""
    import keras

    keras.backend.clear_session()
    previous = keras.mixed_precision.dtype_policy()
    keras.mixed_precision.set_dtype_policy(row["precision"])
    build = build_backbone_model if row["kind"] == "backbone" else build_head_model
    try:
        model, flops = build(row["name"], args, row["xla"])
        first, seconds = time_training(model, *inputs(row["kind"], row["batch"], args), args)
        row.update(first_step_s=first, step_ms=1000 * seconds, images_per_s=row["batch"] / seconds)
        if flops:
            tflops = flops * row["batch"] / seconds / 1e12
            row.update(train_gflops_per_image=flops / 1e9, tflops=tflops,
                       share_of_peak=tflops / peaks[matmul_dtype(row["precision"])])
    except Exception as exc:  # one failing row (e.g. out of memory) does not lose the others
        row["error"] = f"{type(exc).__name__}: {str(exc).splitlines()[0][:200] if str(exc) else ''}"
    finally:
        keras.mixed_precision.set_dtype_policy(previous)


def measure(args, auto, peaks, began):
    rows = plan(args, auto)
    for row in rows:
        if time.monotonic() - began > args.budget:
            row["skipped"] = f"not started within --budget {args.budget:g} s"
            continue
        measure_row(row, args, peaks)
        print(f"  {describe(row)}: " + (row.get("error") or f"{row['images_per_s']:.1f} img/s, first step "
                                        f"{row['first_step_s']:.1f} s"), flush=True)
    compare_with_auto(rows, auto)
    return rows


def describe(row):
    what = f"{row['name']} batch {row['batch']}" if row["kind"] == "backbone" else f"head {row['name']}"
    return f"{what}, {row['precision']}, XLA {'on' if row['xla'] else 'off'}"


def compare_with_auto(rows, auto):
    """Each measured row's speed relative to auto's row for the same model or head and batch."""
    def key(row):
        return row["kind"], row["name"], row["batch"]

    def is_auto(row):
        precision = auto.precision if row["kind"] == "backbone" else head_precision(auto.precision)
        return (row["precision"], row["xla"]) == (precision, auto.jit_compile)

    chosen = {key(r): r for r in rows if is_auto(r)}
    for row in rows:
        row["auto"] = is_auto(row)
        reference = chosen.get(key(row), {})
        if "images_per_s" in row and "images_per_s" in reference:
            row["vs_auto"] = row["images_per_s"] / reference["images_per_s"]


def table(rows):
    lines = ["| model or head | batch | precision | XLA | first step s | step ms | img/s | vs auto | % of matmul peak |",
             "|---|---:|---|---|---:|---:|---:|---:|---:|"]
    for row in rows:
        start = (f"| {row['name']}{'' if row['kind'] == 'backbone' else ' (head)'} | {row['batch']} "
                 f"| {row['precision']}{' (auto)' if row['auto'] else ''} | {'on' if row['xla'] else 'off'} |")
        if "error" in row or "skipped" in row:
            lines.append(f"{start} {'failed: ' + row['error'] if 'error' in row else row['skipped']} | | | | |")
            continue
        share = f"{100 * row['share_of_peak']:.1f}" if "share_of_peak" in row else ""
        vs_auto = f"{row['vs_auto']:.2f}x" if "vs_auto" in row else ""
        lines.append(f"{start} {row['first_step_s']:.1f} | {row['step_ms']:.1f} | {row['images_per_s']:.1f} "
                     f"| {vs_auto} | {share} |")
    return "\n".join(lines)


def main(argv=None):
    began = time.monotonic()
    args = parse_args(argv)
    select_device(args)
    import keras

    from arcface_keras.training.auto import resolve

    device = device_description(args.backend)
    if args.device == "gpu" and device.kind != "gpu":
        sys.exit(f"error: --device gpu, but the {args.backend} backend sees no GPU (found {device}); "
                 f"for a CPU run pass --device cpu")
    auto = resolve("auto", "auto", args.backend, device)
    print(f"{device} | keras {keras.__version__} ({args.backend}) | auto: {auto.precision}, XLA "
          f"{'on' if auto.jit_compile else 'off'} | {args.image_size}x{args.image_size}, ArcFace over {args.classes} "
          f"classes; heads over {args.head_classes} | {args.warmup} warm-up + {args.steps} timed steps (median)",
          flush=True)
    peaks = {}
    for dtype in sorted({matmul_dtype(p) for p in args.precision}):
        peaks[dtype] = matmul_peak(args.backend, dtype, args.matmul_size)
        print(f"{dtype} matmul peak ({args.matmul_size}^2, best of 10 x {MATMULS_PER_CALL}): {peaks[dtype]:.2f} TFLOP/s",
              flush=True)
    rows = measure(args, auto, peaks, began)
    print()
    print(table(rows))
    if args.heads:
        print(f"\nHeads: {' '.join(head_precision.__doc__.split())}")
    print(json.dumps({"device": str(device), "backend": args.backend, "auto": {"precision": auto.precision,
                      "jit_compile": auto.jit_compile}, "matmul_peak_tflops": peaks, "rows": rows,
                      "seconds": round(time.monotonic() - began, 1)}))
    if not any("images_per_s" in row for row in rows):
        sys.exit("error: every measurement failed")


if __name__ == "__main__":
    main()
