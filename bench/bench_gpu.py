"""Training speed on one device: IResNet-50 and MobileFaceNet + ArcFace on in-memory synthetic batches.

Each model trains with SGD (the engine's optimizer) on one fixed batch of random images and labels
that stays on the device, so the input pipeline and host transfers are out of the measurement. The
median step time gives images/s; training FLOPs are 3 x the forward FLOPs of the backbone (counted
from layer shapes, bench_backbones.forward_flops) and the head's (B x D x C) matmul, set against
the device's best square matmul in the same precision. A model that fails (out of memory, ...)
gets a row saying why; the last line is the table as JSON.

With the JAX backend (the default) only keras and jax are needed: no TensorFlow, no network (the
package runs from this source tree). bench/gpu.sh runs the GPU configuration:

    bench/gpu.sh                                           # JAX, mixed_bfloat16, XLA, batches 256 and 512
    python bench/bench_gpu.py --device cpu --steps 1       # tiny: 32x32, quarter width, batches 4 and 8
    python bench/bench_gpu.py --device cpu --config full --matmul-size 2048 --precision float32 --batches 64 --backend tensorflow
"""
import argparse
import json
import os
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "bench")]

CONFIGS = {  # image size, backbone width, batches, classes, matmul size
    "full": dict(image_size=112, width=1.0, batches="256,512", classes=10000, matmul=8192),
    "tiny": dict(image_size=32, width=0.25, batches="4,8", classes=64, matmul=256),
}
MATMULS_PER_CALL = 8


def parse_args(argv):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", choices=["gpu", "cpu"], default="gpu")
    parser.add_argument("--backend", choices=["jax", "tensorflow"], default="jax")
    parser.add_argument("--config", choices=sorted(CONFIGS), help="sizes (default: full on a GPU, tiny on a CPU)")
    parser.add_argument("--precision", default="mixed_bfloat16", choices=["mixed_bfloat16", "mixed_float16", "float32"])
    parser.add_argument("--jit-compile", default="auto", choices=["auto", "true", "false"],
                        help="XLA (auto: training/auto.py's choice for the backend and device)")
    parser.add_argument("--models", default="resnet50,mobilefacenet", help="comma-separated backbone names")
    parser.add_argument("--batches", help="comma-separated batch sizes (default: the config's)")
    parser.add_argument("--classes", type=int, help="ArcFace classes (default: the config's)")
    parser.add_argument("--image-size", type=int, help="(default: the config's)")
    parser.add_argument("--matmul-size", type=int, help="side of the peak's square matmuls (default: the config's)")
    parser.add_argument("--steps", type=int, default=20, help="timed steps per row (median)")
    parser.add_argument("--warmup", type=int, default=2, help="untimed steps first (the first one compiles)")
    args = parser.parse_args(argv)
    config = CONFIGS[args.config or ("full" if args.device == "gpu" else "tiny")]
    for key, default in dict(config, matmul_size=config["matmul"]).items():
        if getattr(args, key, None) is None:
            setattr(args, key, default)
    args.batches = [int(b) for b in str(args.batches).split(",") if b]
    if args.steps < 1 or args.warmup < 0 or not args.batches or min(args.batches) < 1:
        parser.error("--steps must be >= 1, --warmup >= 0, --batches positive")
    return args


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


def build(name, args, classes):
    """(compiled training model, training FLOPs per image) under the current dtype policy."""
    from bench_backbones import forward_flops
    from arcface_keras.config import Model
    from arcface_keras.heads.partial_fc import RowSparseSGD
    from arcface_keras.training.model import build_face_model

    backbone = {"type": name, "width": args.width} if args.width != 1.0 else name
    spec = Model(backbone=backbone, head={"type": "arcface", "s": 64.0, "m": 0.5}, embedding_size=512)
    model, embedder, head = build_face_model(spec, classes, args.image_size)
    model.compile(RowSparseSGD(0.1, momentum=0.9, weight_decay=5e-4), head.loss(), jit_compile=args.jit)
    return model, 3 * (forward_flops(embedder) + 2 * spec.embedding_size * classes)


def time_training(model, batch, args):
    """Median seconds per training step on one batch that stays on the device."""
    import keras
    import numpy as np

    rng = np.random.default_rng(0)
    images = keras.ops.convert_to_tensor(rng.uniform(-1, 1, (batch, args.image_size, args.image_size, 3)).astype("float32"))
    labels = keras.ops.convert_to_tensor(rng.integers(0, args.classes, batch).astype("int32"))
    durations = []
    for step in range(args.warmup + args.steps):
        start = time.perf_counter()
        loss = model.train_on_batch([images, labels], labels)  # returns a host float: waits for the step
        if step >= args.warmup:
            durations.append(time.perf_counter() - start)
    if not np.isfinite(loss):
        raise FloatingPointError(f"non-finite loss {loss}")
    return sorted(durations)[len(durations) // 2]


def measure(args, peak_tflops):
    import keras

    rows = []
    for name in [m for m in args.models.split(",") if m]:
        for batch in args.batches:
            row = {"model": name, "batch": batch}
            try:
                keras.backend.clear_session()
                model, flops = build(name, args, args.classes)
                seconds = time_training(model, batch, args)
                tflops = flops * batch / seconds / 1e12
                row.update(images_per_s=batch / seconds, step_ms=1000 * seconds, train_gflops_per_image=flops / 1e9,
                           tflops=tflops, share_of_peak=tflops / peak_tflops)
            except Exception as exc:  # one failing row (e.g. out of memory) does not lose the others
                row["error"] = f"{type(exc).__name__}: {str(exc).splitlines()[0][:200] if str(exc) else ''}"
            rows.append(row)
            print(f"  {name} batch {batch}: " + (row.get("error") or f"{row['images_per_s']:.1f} img/s"), flush=True)
    return rows


def table(rows):
    lines = ["| model | batch | img/s | step ms | train GFLOP/img | TFLOP/s | % of matmul peak |",
             "|---|---:|---:|---:|---:|---:|---:|"]
    for row in rows:
        if "error" in row:
            lines.append(f"| {row['model']} | {row['batch']} | failed: {row['error']} | | | | |")
        else:
            lines.append(f"| {row['model']} | {row['batch']} | {row['images_per_s']:.1f} | {row['step_ms']:.1f} "
                         f"| {row['train_gflops_per_image']:.2f} | {row['tflops']:.2f} | {100 * row['share_of_peak']:.1f} |")
    return "\n".join(lines)


def main(argv=None):
    args = parse_args(argv)
    select_device(args)
    import keras

    from arcface_keras.training.auto import resolve

    device = device_description(args.backend)
    if args.device == "gpu" and device.kind != "gpu":
        sys.exit(f"error: --device gpu, but the {args.backend} backend sees no GPU (found {device}); "
                 f"for a CPU run pass --device cpu")
    args.jit = resolve(args.precision, {"true": True, "false": False}.get(args.jit_compile, "auto"),
                       args.backend, device).jit_compile
    matmul_dtype = {"mixed_bfloat16": "bfloat16", "mixed_float16": "float16"}.get(args.precision, "float32")
    print(f"{device} | keras {keras.__version__} ({args.backend}) | {args.precision}, XLA {'on' if args.jit else 'off'} "
          f"| {args.image_size}x{args.image_size}, ArcFace over {args.classes} classes, {args.warmup} warm-up + "
          f"{args.steps} timed steps (median)", flush=True)
    peak = matmul_peak(args.backend, matmul_dtype, args.matmul_size)
    print(f"{matmul_dtype} matmul peak ({args.matmul_size}^2, best of 10 x {MATMULS_PER_CALL}): {peak:.2f} TFLOP/s", flush=True)
    keras.mixed_precision.set_dtype_policy(args.precision)
    rows = measure(args, peak)
    print()
    print(table(rows))
    print(json.dumps({"device": str(device), "backend": args.backend, "precision": args.precision, "jit_compile": args.jit,
                      "matmul_peak_tflops": peak, "rows": rows}))
    if all("error" in row for row in rows):
        sys.exit("error: every measurement failed")


if __name__ == "__main__":
    main()
