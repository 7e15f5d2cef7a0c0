"""Data parallel on two logical CPUs, two workers on localhost, mixed precision, class-sharded JAX."""
import csv
import json
import os
import subprocess
import sys

import keras
import numpy as np
import pytest
import tensorflow as tf

from arcface_keras.config import Train
from arcface_keras.heads.partial_fc import RowSparseSGD
from arcface_keras.registry import HEADS
from arcface_keras.training import distribute, engine
from arcface_keras.training.optimizers import make_optimizer

# A seconds-long experiment: a two-block CNN (the backbones' own conv/BN/PReLU and GDC blocks) + ArcFace.
TINY_EXPERIMENT = '''
import keras

from arcface_keras.backbones.layers import conv_bn, gdc_embedding
from arcface_keras.config import Data, Eval, Experiment, Log, Model, Train
from arcface_keras.registry import BACKBONES


def tiny_cnn(input_shape=(32, 32, 3), embedding_size=16):
    image = keras.Input(input_shape)
    x = conv_bn(image, 8, 3, "stem", strides=2)
    x = conv_bn(x, 8, 3, "block", strides=2)
    return keras.Model(image, gdc_embedding(x, embedding_size), name="tiny_cnn")


if "tiny_cnn" not in BACKBONES:
    BACKBONES.register("tiny_cnn")(tiny_cnn)

experiment = Experiment(
    name="tiny_cnn_arc",
    data=Data(synthetic=dict(identities=12, images=6, val_identities=20, val_images=2, val_pairs=20, seed=1),
              image_size=32, augment=[], shuffle_buffer=100),
    model=Model(backbone="tiny_cnn", head=dict(type="arcface", s=32.0, m=0.5), embedding_size=16),
    train=Train(epochs=1, steps_per_epoch=3, batch_size=8, lr=0.1, save_steps=3),
    eval=Eval(batch_size=32),
    log=Log(wandb="disabled"),
)
'''


@pytest.fixture
def tiny_experiment(tmp_path):
    path = tmp_path / "experiments" / "tiny_cnn_arc.py"
    path.parent.mkdir()
    path.write_text(TINY_EXPERIMENT)
    return path


def run_check(repo_root, script, *args, env=None):
    """Run tests/<script> in a fresh process; return its last stdout line parsed as JSON."""
    proc = subprocess.run([sys.executable, str(repo_root / "tests" / script), *map(str, args)], cwd=repo_root,
                          env={**os.environ, **(env or {})}, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return proc.stdout


class Cluster:
    """Stands for a strategy inside a cluster: what is_chief / num_workers read of one."""

    def __init__(self, jobs, task_type, task_id):
        spec = tf.train.ClusterSpec(jobs)
        self.cluster_resolver = tf.distribute.cluster_resolver.SimpleClusterResolver(spec, task_type=task_type, task_id=task_id)


# ---------------------------------------------------------------- strategies, workers, chief


def test_strategy_names():
    assert distribute.make_strategy("auto") is tf.distribute.get_strategy()  # CPU or one GPU: the default
    one = distribute.make_strategy("one_device")
    assert isinstance(one, tf.distribute.OneDeviceStrategy) and distribute.make_strategy("one_device") is one


def test_tf_config_names_every_worker_with_worker_0_as_chief():
    config = json.loads(distribute.tf_config(["10.0.0.1:2222", "10.0.0.2:2222"], 1))
    assert config == {"cluster": {"worker": ["10.0.0.1:2222", "10.0.0.2:2222"]}, "task": {"type": "worker", "index": 1}}
    with pytest.raises(ValueError, match="'10.0.0.1' is not host:port"):
        distribute.tf_config(["10.0.0.1"], 0)
    with pytest.raises(ValueError, match="--worker-index 2: expected 0 to 1"):
        distribute.tf_config(["a:1", "b:2"], 2)


@pytest.mark.parametrize("jobs, task, chief", [
    ({"worker": ["a:1", "b:1"]}, ("worker", 0), True),
    ({"worker": ["a:1", "b:1"]}, ("worker", 1), False),
    ({"chief": ["c:1"], "worker": ["a:1"]}, ("chief", 0), True),
    ({"chief": ["c:1"], "worker": ["a:1"]}, ("worker", 0), False),
    ({"worker": ["a:1"], "evaluator": ["e:1"]}, ("evaluator", 0), False),
])
def test_only_the_chief_writes(jobs, task, chief):
    assert distribute.is_chief(Cluster(jobs, *task)) is chief
    assert distribute.num_workers(Cluster(jobs, *task)) == len(jobs.get("chief", [])) + len(jobs.get("worker", []))


def test_outside_a_cluster_every_process_is_chief():
    assert distribute.is_chief(tf.distribute.get_strategy())
    assert distribute.num_workers(tf.distribute.get_strategy()) == 1


@pytest.mark.parametrize("files, policy", [(8, "FILE"), (1, "DATA")])
def test_workers_read_their_own_files_when_there_are_enough(files, policy):
    strategy = Cluster({"worker": ["a:1", "b:1"]}, "worker", 0)
    dataset = distribute.shard_across_workers(tf.data.Dataset.range(4), strategy, files)
    shard_policy = dataset.options().experimental_distribute.auto_shard_policy
    assert shard_policy == getattr(tf.data.experimental.AutoShardPolicy, policy)


def test_workers_on_jax_are_keras_distribution_processes_with_worker_0_the_coordinator():
    env = distribute.worker_environment(["10.0.0.1:2222", " 10.0.0.2:2222"], 1, backend="jax")
    assert env == {"KERAS_DISTRIBUTION_JOB_ADDRESSES": "10.0.0.1:2222,10.0.0.2:2222",
                   "KERAS_DISTRIBUTION_NUM_PROCESSES": "2", "KERAS_DISTRIBUTION_PROCESS_ID": "1"}
    with pytest.raises(ValueError, match="--worker-index 2: expected 0 to 1"):
        distribute.worker_environment(["a:1", "b:2"], 2, backend="jax")


def test_run_tool_writes_tf_config_for_workers(tiny_experiment, monkeypatch, capsys):
    monkeypatch.setenv("TF_CONFIG", "{}")  # restored (removed) after the test
    from tools import run as run_tool

    run_tool.main([str(tiny_experiment), "--workers", "127.0.0.1:5000,127.0.0.1:5001", "--worker-index", "1", "--check"])
    assert json.loads(os.environ["TF_CONFIG"])["task"] == {"type": "worker", "index": 1}
    resolved, _ = json.JSONDecoder().raw_decode(capsys.readouterr().out)  # then the memory plan
    assert resolved["train"]["strategy"] == "multi_worker"
    with pytest.raises(SystemExit, match="--workers and --worker-index go together"):
        run_tool.main([str(tiny_experiment), "--worker-index", "0", "--check"])


def test_synchronized_batch_norm_is_on_only_within_the_block():
    inner = keras.Sequential([keras.Input((4,)), keras.layers.BatchNormalization()])
    model = keras.Sequential([inner, keras.layers.Dense(2), keras.layers.BatchNormalization()])
    layers = distribute.batch_norm_layers(model)
    assert len(layers) == 2
    with distribute.synchronized_batch_norm(model):
        assert all(layer.synchronized for layer in layers)
    assert not any(layer.synchronized for layer in layers)
    assert not any(layer.get_config()["synchronized"] for layer in layers)


# ---------------------------------------------------------------- equivalences (subprocesses)


def test_two_replicas_of_batch_b_match_one_replica_of_batch_2b(tiny_experiment, tmp_path, repo_root):
    out = run_check(repo_root, "distributed_check.py", tiny_experiment, tmp_path / "runs",
                    f"data.cache_dir={tmp_path / 'cache'}")
    report = json.loads(out.strip().splitlines()[-1])
    sync, local = report["sync"], report["local"]
    # train.sync_bn: global-batch statistics, every weight (moving statistics and momentum too) as with one replica
    assert max(sync.values()) < 1e-3, report
    # per-replica batch norm normalises each half batch by itself: the weights go elsewhere
    assert local["trainable"] > 100 * max(sync["trainable"], 1e-6) and local["moving_statistics"] > 1e-3, report


def test_two_workers_train_identical_weights_and_only_the_chief_writes(tiny_experiment, tmp_path, repo_root):
    out = run_check(repo_root, "multiworker_check.py", tiny_experiment, tmp_path)
    report = json.loads(out.strip().splitlines()[-1])
    assert report["exit_codes"] == [0, 0], report["tails"]
    (first,), (second,) = report["fingerprints"]
    assert report["run_dirs"] == ["tiny_cnn_arc"]
    saved = keras.saving.load_model(tmp_path / "runs" / "tiny_cnn_arc" / "embedder.keras", compile=False)
    assert first == second == distribute.weights_fingerprint(saved)


def test_class_centres_sharded_on_jax_match_unsharded(repo_root):
    out = run_check(repo_root, "jax_model_parallel_check.py", env={"KERAS_BACKEND": "jax"})
    assert "arcface: ok" in out and "partial_fc: ok" in out


# ---------------------------------------------------------------- mixed precision


@pytest.mark.parametrize("precision", ["mixed_bfloat16", "mixed_float16"])
def test_mixed_precision_run_is_finite_and_checkpoints_each_step_once(precision, tiny_experiment, tmp_path):
    from tools import run as run_tool

    result = run_tool.main([str(tiny_experiment), "--set", f"train.precision={precision}", "--set", "train.save_steps=1",
                            "--set", f"data.cache_dir={tmp_path / 'cache'}", "--work-dir", str(tmp_path / "runs")])
    assert keras.mixed_precision.dtype_policy().name == "float32"  # the run put the global policy back
    run_dir = tmp_path / "runs" / "tiny_cnn_arc"
    with open(run_dir / "train_log.csv") as f:
        assert np.isfinite(float(list(csv.DictReader(f))[-1]["loss"]))
    # float16 skips the updates whose scaled gradients overflow: fewer optimizer steps than batches,
    # a checkpoint for each step that happened (never the same step twice), and the end's data position
    # saved under the last step (step 0 when every update was skipped)
    saved = sorted(int(p.name[5:13]) for p in (run_dir / "checkpoints").glob("ckpt-*.weights.h5"))
    assert saved == sorted({*range(1, result["step"] + 1), result["step"]})[-3:]
    assert json.loads((run_dir / "checkpoints" / "latest.json").read_text())["batches"] == 3
    assert result["step"] == 3 if precision == "mixed_bfloat16" else 0 <= result["step"] <= 3


def test_mixed_float16_scales_the_loss_and_keeps_the_head_float32():
    keras.mixed_precision.set_dtype_policy("mixed_float16")
    try:
        head = HEADS.build({"type": "cosface", "sample_rate": 0.25, "seed": 0}, num_classes=40)
        x_in, y_in = keras.Input((8,)), keras.Input((), dtype="int32")
        model = keras.Model([x_in, y_in], head([keras.layers.Dense(8, name="embed")(x_in), y_in]))
        model.compile(make_optimizer(Train(lr=0.1), 0.1), head.loss())
    finally:
        keras.mixed_precision.set_dtype_policy("float32")
    assert isinstance(model.optimizer, keras.optimizers.LossScaleOptimizer)  # Keras wraps at compile
    assert isinstance(model.optimizer.inner_optimizer, RowSparseSGD)
    assert model.get_layer("embed").compute_dtype == "float16"
    assert head.kernel.dtype == "float32" and keras.backend.standardize_dtype(model.output.dtype) == "float32"
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(8, 8)).astype("float32"), rng.integers(0, 4, 8).astype("int32")
    start = keras.ops.convert_to_numpy(head.kernel)
    for _ in range(20):  # steps whose scaled gradients overflow float16 are skipped while the scale comes down
        before = keras.ops.convert_to_numpy(head.kernel)
        assert np.isfinite(model.train_on_batch([x, y], y))
        moved = np.any(keras.ops.convert_to_numpy(head.kernel) != before, axis=1)
        if moved.any():
            break
    assert keras.ops.convert_to_numpy(model.optimizer.dynamic_scale) < 2.0**15
    assert moved[np.unique(y)].all() and moved.sum() <= head.num_sampled(8) < 40  # sparse through the wrapper
    assert np.all(np.isfinite(keras.ops.convert_to_numpy(head.kernel))) and not np.array_equal(start, keras.ops.convert_to_numpy(head.kernel))
