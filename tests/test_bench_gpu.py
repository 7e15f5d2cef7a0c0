"""bench/bench_gpu.py (what bench/gpu.sh runs on a GPU) on the CPU: tiny sizes, JAX, no TensorFlow."""
import json
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


def test_gpu_bench_runs_tiny_on_cpu_with_jax_alone(repo_root):
    done = run_bench(repo_root, "--device", "cpu", "--steps", "1")
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-3000:]
    report = json.loads(done.stdout.strip().splitlines()[-1])
    assert (report["backend"], report["precision"], report["jit_compile"]) == ("jax", "mixed_bfloat16", True)
    assert report["matmul_peak_tflops"] > 0
    rows = {(row["model"], row["batch"]): row for row in report["rows"]}
    assert set(rows) == {(model, batch) for model in ("resnet50", "mobilefacenet") for batch in (4, 8)}, report
    for row in rows.values():
        assert "error" not in row, row
        assert row["images_per_s"] > 0 and row["share_of_peak"] > 0
        assert row["tflops"] == pytest.approx(row["train_gflops_per_image"] * row["images_per_s"] / 1000)
    # 3 x forward, per image, whatever the batch; IR-50 costs far more than MobileFaceNet
    assert rows["resnet50", 4]["train_gflops_per_image"] == rows["resnet50", 8]["train_gflops_per_image"]
    assert rows["resnet50", 4]["train_gflops_per_image"] > 10 * rows["mobilefacenet", 4]["train_gflops_per_image"]
    assert "| resnet50 | 8 |" in done.stdout and "bfloat16 matmul peak" in done.stdout


def test_gpu_bench_says_when_there_is_no_gpu(repo_root):
    import jax

    if any(device.platform == "gpu" for device in jax.devices()):
        pytest.skip("this machine has a GPU")
    done = run_bench(repo_root, "--device", "gpu")
    assert done.returncode != 0
    assert "--device gpu, but the jax backend sees no GPU" in done.stderr
