"""Backbone speed: our Keras 3 models against the same graphs in legacy tf.keras, and a matmul peak.

Each measurement runs in its own process and reports the median step time (with --interleave, the
frameworks of one model share a process and take turns, which is steadier on a busy CPU). A train
step is one SGD step (MSE to a zero target) on random images, inference is `predict_on_batch`; both
use tf.function without XLA, the default on CPU for Keras 3 and tf.keras alike. FLOPs per train step are taken as 3x
the forward FLOPs, counted from the convolution and dense layer shapes (2 FLOPs per multiply-add).

Frameworks: keras3 (ours), keras3-plain-bn (ours with Keras' own BatchNormalization), tf_keras
(the same graph in legacy tf.keras layers) and, when asked for, keras3-bf16 (ours built under the
mixed_bfloat16 policy; its share of the peak is against the float32 matmul peak).

    python bench/bench_backbones.py                       # resnet50 and mobilefacenet, 112x112
    python bench/bench_backbones.py --frameworks keras3,keras3-bf16   # float32 against mixed bfloat16
    python bench/bench_backbones.py --quick --models mobilefacenet
"""
import sys, pathlib; sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent.parent))  # noqa: E401,E702

import argparse  # noqa: E402
import importlib.util  # noqa: E402
import json  # noqa: E402
import os  # noqa: E402
import subprocess  # noqa: E402
import time  # noqa: E402

IMAGE_SIZE = 112
FRAMEWORKS = ("keras3", "keras3-plain-bn", "tf_keras", "keras3-bf16")
DEFAULT_FRAMEWORKS = FRAMEWORKS[:3]
FRAMEWORK_LABELS = {
    "keras3": "Keras 3 (FastBatchNormalization)",
    "keras3-bf16": "Keras 3, mixed_bfloat16",
    "keras3-plain-bn": "Keras 3 (keras BatchNormalization)",
    "tf_keras": "tf.keras 2.x (tf_keras)",
}
LEGACY_KEYS = {
    "Conv2D": ("filters", "kernel_size", "strides", "padding", "groups", "use_bias", "activation"),
    "DepthwiseConv2D": ("kernel_size", "strides", "padding", "use_bias"),
    "Dense": ("units", "use_bias"),
    "BatchNormalization": ("momentum", "epsilon"),
    "PReLU": ("shared_axes",),
    "Dropout": ("rate",),
    "GlobalAveragePooling2D": ("keepdims",),
    "Flatten": (),
    "Add": (),
    "Multiply": (),
}
MATMUL_SIZE = 2048


# --- measurements (child processes) -------------------------------------------------------------

def forward_flops(model):
    """FLOPs of one image's forward pass through the conv and dense layers."""
    import keras

    macs = 0
    for layer in model.layers:
        if isinstance(layer, keras.layers.DepthwiseConv2D):
            _, height, width, filters = layer.output.shape
            macs += height * width * filters * layer.kernel_size[0] * layer.kernel_size[1]
        elif isinstance(layer, keras.layers.Conv2D):
            _, height, width, filters = layer.output.shape
            in_channels = layer.input.shape[-1] // layer.groups
            macs += height * width * filters * layer.kernel_size[0] * layer.kernel_size[1] * in_channels
        elif isinstance(layer, keras.layers.Dense):
            macs += layer.input.shape[-1] * layer.units
    return 2 * macs


def legacy_twin(model):
    """The same functional graph rebuilt from tf_keras layers with the same hyper-parameters."""
    import keras
    import tf_keras

    tensors = {}
    for layer in model.layers:
        if isinstance(layer, keras.layers.InputLayer):
            out = tf_keras.Input(shape=layer.batch_shape[1:], name=layer.name)
        else:
            kind = "BatchNormalization" if isinstance(layer, keras.layers.BatchNormalization) else type(layer).__name__
            if kind not in LEGACY_KEYS:
                raise TypeError(f"no tf_keras twin for layer {layer.name!r} of type {kind}")
            config = layer.get_config()
            twin = getattr(tf_keras.layers, kind)(name=layer.name, **{k: config[k] for k in LEGACY_KEYS[kind]})
            inputs = layer.input
            out = twin([tensors[id(t)] for t in inputs] if isinstance(inputs, (list, tuple)) else tensors[id(inputs)])
        tensors[id(layer.output)] = out
    return tf_keras.Model(tensors[id(model.inputs[0])], tensors[id(model.outputs[0])], name=model.name)


def with_plain_batch_norm(model):
    """A Keras 3 copy whose FastBatchNormalization layers are plain keras BatchNormalization."""
    import keras

    def clone(layer):
        if isinstance(layer, keras.layers.BatchNormalization):
            return keras.layers.BatchNormalization.from_config(layer.get_config())
        return layer.__class__.from_config(layer.get_config())

    return keras.models.clone_model(model, clone_function=clone)


def compiled_model(keras3_model, framework, name):
    """`keras3_model` (backbone `name`) as `framework` runs it, compiled for SGD on an MSE loss without XLA."""
    import keras

    from arcface_keras.registry import BACKBONES

    if framework == "keras3-bf16":
        keras.mixed_precision.set_dtype_policy("mixed_bfloat16")
        try:
            model = BACKBONES.build(name, input_shape=keras3_model.input_shape[1:])
        finally:
            keras.mixed_precision.set_dtype_policy("float32")
        optimizer = keras.optimizers.SGD(0.01, momentum=0.9)
    elif framework == "tf_keras":
        import tf_keras

        model, optimizer = legacy_twin(keras3_model), tf_keras.optimizers.SGD(0.01, momentum=0.9)
    elif framework == "keras3-plain-bn":
        model, optimizer = with_plain_batch_norm(keras3_model), keras.optimizers.SGD(0.01, momentum=0.9)
    else:
        model, optimizer = keras3_model, keras.optimizers.SGD(0.01, momentum=0.9)
    if model.count_params() != keras3_model.count_params():
        raise RuntimeError(f"the {framework} copy has {model.count_params()} parameters, "
                           f"expected {keras3_model.count_params()}")
    model.compile(optimizer=optimizer, loss="mse", jit_compile=False)
    return model


def median(values):
    return sorted(values)[len(values) // 2]


def measure_model(name, frameworks, train_batch, infer_batch, warmup, steps):
    """Median train and inference step seconds per framework; several frameworks take turns step by step."""
    import numpy as np
    import tensorflow as tf

    from arcface_keras.registry import BACKBONES

    reference = BACKBONES.build(name, input_shape=(IMAGE_SIZE, IMAGE_SIZE, 3))
    models = {framework: compiled_model(reference, framework, name) for framework in frameworks}
    rng = np.random.default_rng(0)
    images = tf.constant(rng.uniform(-1, 1, (max(train_batch, infer_batch), IMAGE_SIZE, IMAGE_SIZE, 3)), tf.float32)
    target = tf.zeros((train_batch, reference.output.shape[-1]))
    steps_of = {
        framework: {
            "train_s": lambda m=model: m.train_on_batch(images[:train_batch], target),
            "infer_s": lambda m=model: m.predict_on_batch(images[:infer_batch]),
        }
        for framework, model in models.items()
    }
    durations = {framework: {"train_s": [], "infer_s": []} for framework in frameworks}
    for round_ in range(warmup + steps):
        for framework, kinds in steps_of.items():
            for kind, step in kinds.items():
                start = time.perf_counter()
                step()
                if round_ >= warmup:
                    durations[framework][kind].append(time.perf_counter() - start)
    common = {"forward_flops": forward_flops(reference), "params": reference.count_params()}
    return {framework: {**common, **{kind: median(d) for kind, d in kinds.items()}}
            for framework, kinds in durations.items()}


def measure_peak(warmup, steps):
    """Best float32 matmul throughput in GFLOP/s."""
    import tensorflow as tf

    a = tf.random.normal((MATMUL_SIZE, MATMUL_SIZE))
    b = tf.random.normal((MATMUL_SIZE, MATMUL_SIZE))
    matmul = tf.function(lambda: tf.reduce_sum(tf.matmul(a, b)))
    for _ in range(warmup):
        matmul().numpy()
    best = float("inf")
    for _ in range(max(steps, 10)):
        start = time.perf_counter()
        matmul().numpy()
        best = min(best, time.perf_counter() - start)
    return {"gflops": 2 * MATMUL_SIZE**3 / best / 1e9}


# --- orchestration (parent process) -------------------------------------------------------------

def run_child(args, measure, frameworks=()):
    """Run one measurement in a fresh process; returns its result dict or {"error": ...}."""
    command = [sys.executable, __file__, "--measure", measure, "--steps", str(args.steps),
               "--warmup", str(args.warmup), "--train-batch", str(args.train_batch),
               "--infer-batch", str(args.infer_batch)]
    if frameworks:
        command += ["--frameworks", ",".join(frameworks)]
    env = {**os.environ, "KERAS_BACKEND": "tensorflow", "TF_CPP_MIN_LOG_LEVEL": "2"}
    try:
        done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=args.timeout)
    except subprocess.TimeoutExpired:
        return {"error": f"timed out after {args.timeout} s"}
    lines = [line for line in done.stdout.splitlines() if line.startswith("{")]
    if done.returncode != 0 or not lines:
        tail = (done.stderr.strip().splitlines() or ["no output"])[-1]
        return {"error": f"exit {done.returncode}: {tail}"}
    return json.loads(lines[-1])


def describe_peak(peak):
    return f"{peak['gflops']:.1f} GFLOP/s" if "gflops" in peak else peak["error"]


def table(rows, peak_gflops, train_batch, infer_batch):
    lines = [
        "| model | framework | img/s train | step ms | img/s inference | % of peak |",
        "|---|---|---:|---:|---:|---:|",
    ]
    for model, framework, result in rows:
        label = FRAMEWORK_LABELS[framework]
        if "error" in result:
            lines.append(f"| {model} | {label} | failed: {result['error']} | | | |")
            continue
        train_flops_per_s = 3 * result["forward_flops"] * train_batch / result["train_s"]
        share = f"{100 * train_flops_per_s / 1e9 / peak_gflops:.1f}" if peak_gflops else "n/a"
        lines.append(
            f"| {model} | {label} | {train_batch / result['train_s']:.1f} | {1000 * result['train_s']:.0f} "
            f"| {infer_batch / result['infer_s']:.1f} | {share} |"
        )
    return "\n".join(lines)


def parse_args(argv):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", default="resnet50,mobilefacenet", help="comma-separated backbone names")
    parser.add_argument("--frameworks", default=",".join(DEFAULT_FRAMEWORKS), help=f"comma-separated, of {FRAMEWORKS}")
    parser.add_argument("--steps", type=int, default=5, help="timed steps per measurement")
    parser.add_argument("--warmup", type=int, default=2, help="untimed steps before timing")
    parser.add_argument("--train-batch", type=int, default=64)
    parser.add_argument("--infer-batch", type=int, default=128)
    parser.add_argument("--quick", action="store_true", help="smoke run: 2 steps, 1 warm-up, batches 16/32")
    parser.add_argument("--timeout", type=int, default=3600, help="seconds allowed per measurement")
    parser.add_argument("--interleave", action="store_true",
                        help="time all frameworks of a model in one process, taking turns step by step "
                             "(steadier on a shared CPU)")
    parser.add_argument("--measure", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.quick:
        args.steps, args.warmup, args.train_batch, args.infer_batch = 2, 1, 16, 32
    return args


def main(argv=None):
    args = parse_args(argv)
    if args.measure == "peak":
        print(json.dumps(measure_peak(args.warmup, args.steps)))
        return
    frameworks = [f for f in args.frameworks.split(",") if f]
    if args.measure:
        print(json.dumps(measure_model(args.measure, frameworks, args.train_batch, args.infer_batch,
                                       args.warmup, args.steps)))
        return

    unknown = sorted(set(frameworks) - set(FRAMEWORKS))
    if unknown:
        sys.exit(f"--frameworks: unknown {unknown[0]!r}; expected some of {', '.join(FRAMEWORKS)}")
    if "tf_keras" in frameworks and importlib.util.find_spec("tf_keras") is None:
        print("tf_keras is not installed (pip install tf-keras==2.21.0): skipping the legacy tf.keras peer\n")
        frameworks.remove("tf_keras")

    layout = "one process per model, frameworks taking turns" if args.interleave else "one process each"
    print(f"backbones at {IMAGE_SIZE}x{IMAGE_SIZE}: train batch {args.train_batch}, inference batch "
          f"{args.infer_batch}, {args.warmup} warm-up + {args.steps} timed steps (median), {layout}, "
          f"{os.cpu_count()} CPUs", flush=True)
    peaks = [run_child(args, "peak")]
    print(f"float32 matmul peak ({MATMUL_SIZE}^2): " + describe_peak(peaks[0]), flush=True)
    rows = []
    for model in [m for m in args.models.split(",") if m]:
        groups = [frameworks] if args.interleave else [[framework] for framework in frameworks]
        for group in groups:
            results = run_child(args, model, group)
            for framework in group:
                result = results if "error" in results else results[framework]
                rows.append((model, framework, result))
                if "error" in result:
                    summary = result["error"]
                else:
                    summary = (f"{result['params']:,} params, {result['forward_flops'] / 1e9:.3f} GFLOPs/image "
                               f"forward, train step {1000 * result['train_s']:.0f} ms")
                print(f"  {model} / {framework}: {summary}", flush=True)
    peaks.append(run_child(args, "peak"))
    print(f"float32 matmul peak again: {describe_peak(peaks[1])}; the best of the two is the peak below")
    peak_gflops = max((peak["gflops"] for peak in peaks if "gflops" in peak), default=None)
    print()
    print(table(rows, peak_gflops, args.train_batch, args.infer_batch))


if __name__ == "__main__":
    main()
