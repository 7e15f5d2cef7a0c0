"""Shared test setup: quiet TensorFlow, the TensorFlow backend, offline W&B, runs under tmp dirs."""
import os
import sys
from pathlib import Path

os.environ.setdefault("KERAS_BACKEND", "tensorflow")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("WANDB_SILENT", "true")
os.environ.setdefault("WANDB_DISABLE_GIT", "true")
# XLA compiles here (tests/test_xla_matrix.py, Keras' default jit_compile on TensorFlow, the JAX subprocesses,
# which inherit it) are of tiny models: LLVM's optimisation of the CPU code costs more compile time than it saves
os.environ.setdefault("XLA_FLAGS", "--xla_backend_optimization_level=0")

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))

import pytest  # noqa: E402


# The files whose tests start training processes or compile for minutes, longest first. make test hands whole
# files to its pytest-xdist processes in collection order (--dist loadfile --no-loadscope-reorder): these go
# first, and the many short files fill in around them instead of one long file starting last.
LONGEST_FIRST = ("test_experiments.py", "test_xla_matrix.py", "test_resume.py", "test_signals_mirrored.py",
                 "test_jax_training.py", "test_distribute.py", "test_backbones.py", "test_bench_gpu.py",
                 "test_install.py", "test_watch.py", "test_import_weights.py", "test_engine.py")


def pytest_collection_modifyitems(items):
    rank = {name: index for index, name in enumerate(LONGEST_FIRST)}
    items.sort(key=lambda item: rank.get(item.path.name, len(rank)))  # stable: the rest keep their order


@pytest.fixture
def repo_root():
    return ROOT


def process_env(**extra):
    """The environment for a training process the test starts (and may kill) as a user would from a shell:
    without the W&B service address that this process's own runs export (WANDB_SERVICE), which a child
    would otherwise share, so that a killed child's run stays registered in this process's service."""
    env = {key: value for key, value in os.environ.items() if key != "WANDB_SERVICE"}
    return {**env, "PYTHONUNBUFFERED": "1", **extra}


@pytest.fixture(scope="module")
def resumable(tmp_path_factory):
    """tests/tiny_runs.reference_run, once for the file that interrupts it (tests/test_resume.py)."""
    from tiny_runs import reference_run

    return reference_run(tmp_path_factory.mktemp("resumable"))
