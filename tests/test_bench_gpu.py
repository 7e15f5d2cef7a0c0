"""bench/bench_gpu.py (what bench/gpu.sh runs on a GPU) on the CPU: tiny sizes; JAX without TensorFlow, and
TensorFlow's XLA on/off columns."""
import json
import os
import runpy
import subprocess
import sys

import pytest

# Runs the script as if TensorFlow were not installed: any `import tensorflow` raises ImportError.
WITHOUT_TENSORFLOW = """
import runpy, sys
sys.modules["tensorflow"] = None
sys.argv = ["bench/bench_gpu.py", *sys.argv[1:]]
runpy.run_path("bench/bench_gpu.py", run_name="__main__")
"""


def run_bench(repo_root, *args):
    return subprocess.run([sys.executable, "-c", WITHOUT_TENSORFLOW, *args], cwd=repo_root, capture_output=True,
                          text=True, timeout=900)


def measured(report):
    return {(row["name"], row["precision"], row["xla"]): row for row in report["rows"]}


def test_gpu_bench_runs_tiny_on_cpu_with_jax_alone(repo_root):
    done = run_bench(repo_root, "--device", "cpu", "--steps", "1", "--precision", "float32,mixed_float16",
                     "--models", "resnet18")  # one backbone, the smallest IResNet: each compiles for seconds
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-3000:]
    report = json.loads(done.stdout.strip().splitlines()[-1])
    assert (report["backend"], report["auto"]) == ("jax", {"precision": "float32", "jit_compile": True})  # a CPU
    assert set(report["matmul_peak_tflops"]) == {"float32", "float16"} and min(report["matmul_peak_tflops"].values()) > 0
    rows = measured(report)
    names = ("resnet18", "arcface", "partial_fc")
    assert set(rows) == {(n, p, True) for n in names for p in ("float32", "mixed_float16")}, report
    assert report["rows"][0]["auto"] and report["rows"][0]["precision"] == "float32"  # auto's rows come first
    for row in rows.values():
        assert "error" not in row, row
        assert row["images_per_s"] > 0 and row["first_step_s"] > 0 and row["vs_auto"] > 0
        assert row["vs_auto"] == 1.0 if row["auto"] else row["vs_auto"] == pytest.approx(
            row["images_per_s"] / rows[row["name"], "float32", True]["images_per_s"])
    row = rows["resnet18", "mixed_float16", True]  # a backbone row: FLOPs and the share of the dtype's matmul peak
    assert row["batch"] == 8 and row["share_of_peak"] > 0
    assert row["tflops"] == pytest.approx(row["train_gflops_per_image"] * row["images_per_s"] / 1000)
    assert row["train_gflops_per_image"] == rows["resnet18", "float32", True]["train_gflops_per_image"] > 0
    assert "| partial_fc (head) | 8 | mixed_float16 | on |" in done.stdout and "float16 matmul peak" in done.stdout


def test_forward_flops_count_each_kind_of_layer(repo_root, monkeypatch):
    """The backbone rows' FLOPs: 2 x the multiply-adds of the convolutions (plain, depthwise, grouped) and dense
    layers, counted from their shapes."""
    import keras

    from arcface_keras.backbones.layers import GroupedConv2D

    monkeypatch.syspath_prepend(str(repo_root / "bench"))
    from bench_backbones import forward_flops

    image = keras.Input((8, 8, 3))
    x = keras.layers.Conv2D(4, 3, padding="same")(image)  # 8 x 8 outputs x 4 filters x 3 x 3 x 3 inputs
    x = keras.layers.DepthwiseConv2D(3, strides=2, padding="same")(x)  # 4 x 4 x 4 channels x 3 x 3
    x = GroupedConv2D(6, 1, groups=2)(x)  # 4 x 4 x 6 filters x 1 x 1 x 2 inputs per group
    x = keras.layers.BatchNormalization()(keras.layers.Flatten()(x))  # counted as free
    model = keras.Model(image, keras.layers.Dense(5)(x))  # 96 x 5
    assert forward_flops(model) == 2 * (8 * 8 * 4 * 27 + 4 * 4 * 4 * 9 + 4 * 4 * 6 * 2 + 96 * 5)


def test_gpu_bench_measures_xla_off_on_tensorflow(repo_root, monkeypatch, capsys):
    for name in ("KERAS_BACKEND", "JAX_PLATFORMS", "CUDA_VISIBLE_DEVICES"):  # the script sets them: put them back
        monkeypatch.setenv(name, os.environ.get(name, ""))
    monkeypatch.setattr(sys, "path", list(sys.path))
    monkeypatch.setattr(sys, "argv", ["bench_gpu.py", "--device", "cpu", "--backend", "tensorflow", "--models", "none",
                                      "--heads", "cosface,partial_fc", "--precision", "float32", "--steps", "1"])
    runpy.run_path(str(repo_root / "bench" / "bench_gpu.py"), run_name="__main__")  # in this process: TensorFlow
    out = capsys.readouterr().out
    report = json.loads(out.strip().splitlines()[-1])
    assert report["auto"] == {"precision": "float32", "jit_compile": False}  # TensorFlow on a CPU
    rows = measured(report)
    assert set(rows) == {(head, "float32", xla) for head in ("cosface", "partial_fc") for xla in (False, True)}
    for row in rows.values():
        assert "error" not in row and row["images_per_s"] > 0 and row["auto"] == (not row["xla"]), row
        assert row["vs_auto"] == pytest.approx(row["images_per_s"] / rows[row["name"], "float32", False]["images_per_s"])
    assert "| partial_fc (head) | 8 | float32 | on |" in out and "| cosface (head) | 8 | float32 (auto) | off |" in out


def test_gpu_bench_says_when_there_is_no_gpu(repo_root):
    import jax

    if any(device.platform == "gpu" for device in jax.devices()):
        pytest.skip("this machine has a GPU")
    done = run_bench(repo_root, "--device", "gpu")
    assert done.returncode != 0
    assert "--device gpu, but the jax backend sees no GPU" in done.stderr
