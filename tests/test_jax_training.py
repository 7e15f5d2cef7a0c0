"""The same experiment on the JAX backend: data parallel over two host devices, kill + resume."""
import json

from test_distribute import run_check, tiny_experiment  # noqa: F401  (tiny_experiment: a fixture)


def test_jax_data_parallel_matches_one_device_and_resumes_after_kill(tiny_experiment, tmp_path, repo_root):
    out = run_check(repo_root, "jax_distribute_check.py", tiny_experiment, tmp_path / "runs",
                    f"data.cache_dir={tmp_path / 'cache'}")
    report = json.loads(out.strip().splitlines()[-1])
    assert "1 replica(s), global batch 8" in report["replica_lines"]["one"][0]
    assert "2 replica(s), global batch 8" in report["replica_lines"]["two"][0]
    # JAX's data-parallel batch norm sees the global batch (as train.sync_bn on TensorFlow): every weight,
    # moving statistic and momentum of one device's run after 3 steps; float32 summation order stays far below 1e-3
    assert max(report["two"].values()) < 1e-3, report["two"]
    assert report["versions"]["backend"] == "jax"
    assert (report["versions"]["precision"], report["versions"]["jit_compile"]) == ("float32", True)  # auto on a CPU
    # killed (SIGKILL) after its 4th checkpoint or later: the rerun continues there, trains to the end and
    # ends with every weight and optimizer slot of the uninterrupted run, bit for bit (the same XLA CPU kernels)
    assert report["killed_at"] >= 4
    assert max(report["resumed_vs_straight"].values()) == 0.0, report["resumed_vs_straight"]
    assert report["resumed_lines"] and report["resumed_lines"][0].endswith(f"resuming at step {report['killed_at']}")
    assert report["resumed_step"] == 30
