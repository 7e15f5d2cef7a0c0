"""The same experiment on the JAX backend: data parallel over two host devices, then over two processes."""
import json

import pytest
from conftest import ROOT
from test_distribute import TINY_EXPERIMENT, run_check


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    """One run of tests/jax_distribute_check.py (every JAX run below), its JSON report."""
    tmp_path = tmp_path_factory.mktemp("jax")
    experiment = tmp_path / "experiments" / "tiny_cnn_arc.py"
    experiment.parent.mkdir()
    experiment.write_text(TINY_EXPERIMENT)
    out = run_check(ROOT, "jax_distribute_check.py", experiment, tmp_path / "runs", f"data.cache_dir={tmp_path / 'cache'}")
    return json.loads(out.strip().splitlines()[-1])


def test_jax_data_parallel_matches_one_device(report):
    assert "1 replica(s), global batch 8" in report["replica_lines"]["one"][0]
    assert "2 replica(s), global batch 8" in report["replica_lines"]["two"][0]
    # JAX's data-parallel batch norm sees the global batch (as train.sync_bn on TensorFlow): every weight,
    # moving statistic and momentum of one device's run after 3 steps; float32 summation order stays far below 1e-3
    assert max(report["two"].values()) < 1e-3, report["two"]
    assert report["versions"]["backend"] == "jax"
    assert (report["versions"]["precision"], report["versions"]["jit_compile"]) == ("float32", True)  # auto on a CPU


def test_jax_two_processes_resume_after_the_chief_is_killed_equal_to_two_devices(report):
    # jax.distributed joins the processes: two replicas over the two processes' devices, global batch 2B
    assert all(found and all("2 replica(s), global batch 8" in line for line in found)
               for found in report["multi_replica_lines"]), report["multi_replica_lines"]
    # the chief killed (SIGKILL) after its 4th checkpoint or later: the other process fails by itself (not killed
    # by the test), and both restarted continue there to the last step
    assert report["multi_killed_at"] >= 4 and report["multi_survivor"][0] not in (0, -9), report["multi_survivor"]
    assert [bool(found) and found[-1].endswith(f"resuming at step {report['multi_killed_at']}")
            for found in report["multi_resumed_lines"]] == [True, True], report["multi_resumed_lines"]
    assert report["multi_resumed_step"] == 30
    # the processes hold one replicated copy of the weights; only the chief wrote the run
    fingerprints = report["multi_fingerprints"]
    assert len(fingerprints[0]) == 1 and fingerprints[0] == fingerprints[1], fingerprints
    assert report["multi_run_dirs"] == ["multi_resumed"]
    # each process feeds its half of every global batch, so the killed and resumed two-process run trains on what
    # one process over two devices does, and ends bit for bit as that uninterrupted run (`straight`): every weight,
    # moving statistic and momentum after 30 steps. Exact, not close: with two replicas every cross-replica
    # reduction adds two numbers, which rounds the same in either order and in any collective implementation, and
    # each device runs the same compiled step
    assert max(report["multi_resumed_vs_straight"].values()) == 0.0, report["multi_resumed_vs_straight"]
    # without a cluster in the environment multi_worker says how to name one
    assert "no cluster to join" in report["no_cluster"] and "--workers host0:port" in report["no_cluster"]
