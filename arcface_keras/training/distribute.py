"""Data-parallel training, the one place where the backends differ: the strategy, who writes, sync
BN, data sharding.

Strategies (`train.strategy`), on TensorFlow (tf.distribute):
  auto          several workers in TF_CONFIG: multi_worker; else several GPUs: mirrored; else the
                default strategy (one device)
  mirrored      MirroredStrategy: one replica per visible GPU (per logical CPU device without GPUs)
  one_device    the first GPU, else the CPU
  multi_worker  MultiWorkerMirroredStrategy over the cluster in TF_CONFIG (see `tf_config`)
and on JAX (keras.distribution; the input pipeline stays tf.data):
  auto          several processes in the environment (KERAS_DISTRIBUTION_*): multi_worker; else
                several local devices: mirrored; else one device
  mirrored      DataParallel over every local device (batch norm then sees the global batch: the
                arrays are global, so it is synchronised whatever `train.sync_bn` says)
  one_device    the first device (no distribution)
  multi_worker  jax.distributed over the processes of the cluster (`connect_processes`), then
                DataParallel over every device of every process; each process feeds its part of
                each global batch (Keras' Distribution.distribute_dataset)
  train.model_parallel=M  ModelParallel: class centres split over M devices (model_parallel.py)
`make_strategy` returns a tf.distribute strategy, a keras Distribution or None (one JAX device);
the functions below take any of them.

`train.batch_size` is per replica: the global batch is batch_size × replicas, and the learning
rate follows `train.lr_scaling` (see schedules.scaled_lr). Gradients are summed over replicas
of per-replica mean losses divided by the replica count, i.e. the mean over the global batch.
"""
import contextlib
import functools
import hashlib
import json

import keras
import numpy as np


def make_strategy(name="auto", model_parallel=0, head=None):
    """The strategy called `name` for this backend (see the module docstring; config.Train checks the
    name); on JAX, `model_parallel` devices share the class centres of `head` (a head spec)."""
    if keras.backend.backend() == "jax":
        return jax_distribution(name, model_parallel, head)
    import tensorflow as tf

    if name == "auto":
        if cluster_size() > 1:
            name = "multi_worker"
        elif len(tf.config.list_logical_devices("GPU")) > 1:
            name = "mirrored"
        else:
            return tf.distribute.get_strategy()
    return _strategy(name)


@functools.cache
def _strategy(name):
    """One strategy of each kind per process: a second MirroredStrategy over the same devices would
    reuse the first one's collective keys and its all-reduces would collide with the first's."""
    import tensorflow as tf

    if name == "multi_worker":  # before anything starts the TensorFlow runtime (listing devices does)
        return tf.distribute.MultiWorkerMirroredStrategy()
    gpus = tf.config.list_logical_devices("GPU")
    if name == "mirrored":
        devices = gpus or tf.config.list_logical_devices("CPU")
        return tf.distribute.MirroredStrategy([d.name for d in devices])
    return tf.distribute.OneDeviceStrategy(gpus[0].name if gpus else "/cpu:0")


def jax_distribution(name, model_parallel=0, head=None):
    """A keras.distribution for `name` on the JAX devices of every process (`connect_processes` joined
    them), or None for one device."""
    if model_parallel:
        if jax_process()[1] > 1:  # config.check_backend refuses it with multi_worker; here for `auto`
            raise ValueError("train.model_parallel: class centres are split over the devices of one process "
                             "only (the chief saves checkpoints from what it holds)")
        from arcface_keras.training.model_parallel import class_axis, class_centre_distribution

        return class_centre_distribution(model_axis=model_parallel, axis=class_axis(head or "arcface"))
    devices = keras.distribution.list_devices()
    if name == "one_device" or (name == "auto" and len(devices) < 2):
        return None
    return keras.distribution.DataParallel(devices=devices)


def strategy_scope(strategy):
    """Within it, variables are created and training runs under `strategy` (tf.distribute or keras.distribution)."""
    if strategy is None or keras.backend.backend() not in ("tensorflow", "jax"):
        return contextlib.nullcontext()
    return strategy.scope()


@contextlib.contextmanager
def outside_distribution():
    """Within the block no keras.distribution is set (JAX): a model built outside one runs on one device,
    on batches of any size."""
    if keras.backend.backend() != "jax" or keras.distribution.distribution() is None:
        yield
        return
    current = keras.distribution.distribution()
    keras.distribution.set_distribution(None)
    try:
        yield
    finally:
        keras.distribution.set_distribution(current)


def num_replicas(strategy):
    """Replicas a global batch is split over: the strategy's, or the data axis of a keras.distribution."""
    if is_distribution(strategy):
        mesh = strategy.device_mesh
        return int(dict(zip(mesh.axis_names, mesh.shape)).get(strategy.batch_dim_name, 1))
    return strategy.num_replicas_in_sync if strategy is not None else 1


# ------------------------------------------------------------------ multi-worker


# Keras' names for a JAX cluster (keras.distribution.initialize): every worker's address (the first one
# is JAX's coordinator), how many processes there are, and which one this is (0: the chief).
JAX_CLUSTER_ENV = ("KERAS_DISTRIBUTION_JOB_ADDRESSES", "KERAS_DISTRIBUTION_NUM_PROCESSES",
                   "KERAS_DISTRIBUTION_PROCESS_ID")


def worker_list(workers, index):
    """`workers` ("host:port" strings) checked, with `index` a position in it."""
    workers = [w.strip() for w in workers if w.strip()]
    for worker in workers:
        host, _, port = worker.rpartition(":")
        if not host or not port.isdigit():
            raise ValueError(f"--workers: {worker!r} is not host:port")
    if not 0 <= index < len(workers):
        raise ValueError(f"--worker-index {index}: expected 0 to {len(workers) - 1} for {len(workers)} workers")
    return workers


def tf_config(workers, index):
    """TF_CONFIG (JSON) for worker `index` of `workers` ("host:port" strings); worker 0 is the chief."""
    workers = worker_list(workers, index)
    return json.dumps({"cluster": {"worker": workers}, "task": {"type": "worker", "index": index}})


def worker_environment(workers, index, backend=None):
    """The environment that makes this process worker `index` of `workers`: TF_CONFIG on TensorFlow,
    JAX_CLUSTER_ENV on JAX (where only worker 0's port is used: the coordinator listens on it)."""
    if (backend or keras.backend.backend()) != "jax":
        return {"TF_CONFIG": tf_config(workers, index)}
    workers = worker_list(workers, index)
    return dict(zip(JAX_CLUSTER_ENV, (",".join(workers), str(len(workers)), str(index))))


def cluster_size():
    """Processes the environment names: tasks (chief + workers) in TF_CONFIG, or on JAX
    KERAS_DISTRIBUTION_NUM_PROCESSES (else the addresses in KERAS_DISTRIBUTION_JOB_ADDRESSES); 0 without."""
    import os

    if keras.backend.backend() == "jax":
        addresses, count, _ = (os.environ.get(name, "") for name in JAX_CLUSTER_ENV)
        return int(count) if count.strip() else len([a for a in addresses.split(",") if a.strip()])
    spec = json.loads(os.environ.get("TF_CONFIG") or "{}").get("cluster", {})
    return sum(len(spec.get(job, [])) for job in ("chief", "worker"))


class ClusterError(RuntimeError):
    """No cluster to join; the message is one line saying how to name one."""


def connect_processes(name, seed):
    """On JAX, join the other processes of the cluster when `name` is multi_worker (or auto with several
    processes in the environment), before anything else uses JAX: keras.distribution.initialize, that is
    jax.distributed.initialize with JAX_CLUSTER_ENV, or JAX's own detection of a Slurm, Open MPI or Cloud
    TPU job when they are unset. Keras' global seed is `seed` first (else Keras would agree on a random
    one across the processes). Does nothing on TensorFlow (MultiWorkerMirroredStrategy reads TF_CONFIG)."""
    if keras.backend.backend() != "jax" or name not in ("multi_worker", "auto") or (
            name == "auto" and cluster_size() < 2):
        return
    import jax

    if jax.distributed.is_initialized():
        return
    keras.utils.set_random_seed(seed)
    try:
        keras.distribution.initialize()
    except (RuntimeError, ValueError) as exc:
        raise ClusterError(
            f"train.strategy={name!r} on JAX: no cluster to join ({exc}); give tools/run.py --workers "
            f"host0:port,host1:port,... --worker-index i, set {', '.join(JAX_CLUSTER_ENV)}, or run as a "
            "Slurm, Open MPI or Cloud TPU job") from None


def is_distribution(strategy):
    """Whether `strategy` is a keras.distribution (JAX) rather than a tf.distribute strategy."""
    return getattr(strategy, "device_mesh", None) is not None


def jax_process():
    """(process index, process count) of this JAX process."""
    import jax

    return jax.process_index(), jax.process_count()


def task(strategy):
    """(task type, index) of this process in its cluster; ("worker", 0) outside one."""
    if is_distribution(strategy):
        return "worker", jax_process()[0]
    resolver = getattr(strategy, "cluster_resolver", None)
    if resolver is None or not resolver.cluster_spec().as_dict():
        return "worker", 0
    return resolver.task_type, int(resolver.task_id or 0)


def num_workers(strategy):
    """Processes taking part in training (1 outside a multi-worker cluster)."""
    if is_distribution(strategy):
        return strategy.num_processes
    resolver = getattr(strategy, "cluster_resolver", None)
    cluster = resolver.cluster_spec().as_dict() if resolver is not None else {}
    return max(sum(len(cluster.get(job, [])) for job in ("chief", "worker")), 1)


def is_chief(strategy):
    """Only the chief writes checkpoints, logs and W&B: the "chief" task if the cluster has one,
    else worker 0 (MultiWorkerMirroredStrategy's convention; JAX process 0); every process outside a cluster."""
    if is_distribution(strategy):
        return jax_process()[0] == 0
    resolver = getattr(strategy, "cluster_resolver", None)
    cluster = resolver.cluster_spec().as_dict() if resolver is not None else {}
    if not cluster:
        return True
    task_type, index = task(strategy)
    if "chief" in cluster:
        return task_type == "chief"
    return task_type == "worker" and index == 0


def shard_across_workers(dataset, strategy, num_files):
    """`dataset` with the auto-shard policy for this cluster.

    FILE when there are at least as many TFRecord shards as workers: each worker reads its own
    files, so no worker decodes images another one uses (the shards should outnumber the workers
    several times over, with similar sizes). Otherwise DATA: every worker reads everything and keeps
    its part of each global batch, the global batches then being exactly the one-worker ones.

    On JAX the dataset is returned as it is: Keras' trainer gives it to the distribution's
    `distribute_dataset`, which splits each global batch into one part per process and keeps this
    process's (DATA: every process reads and decodes every image, and the global batches and the
    weights are those of one process), and `jax.make_array_from_process_local_data` joins the parts.
    """
    if is_distribution(strategy):
        return dataset
    import tensorflow as tf

    policy = tf.data.experimental.AutoShardPolicy
    options = tf.data.Options()
    options.experimental_distribute.auto_shard_policy = (
        policy.FILE if num_files >= num_workers(strategy) else policy.DATA)
    return dataset.with_options(options)


def weights_fingerprint(model):
    """sha1 of `model`'s trainable weights: workers kept in sync by all-reduce agree bit for bit."""
    digest = hashlib.sha1()
    for weight in model.trainable_weights:
        digest.update(np.ascontiguousarray(keras.ops.convert_to_numpy(weight), dtype=np.float32).tobytes())
    return digest.hexdigest()


# ------------------------------------------------------------------ batch norm


def batch_norm_layers(model):
    """Every BatchNormalization layer of `model`, nested models included."""
    found = []
    for layer in model.layers:
        if isinstance(layer, keras.layers.BatchNormalization):
            found.append(layer)
        elif isinstance(layer, keras.Model):
            found += batch_norm_layers(layer)
    return found


@contextlib.contextmanager
def synchronized_batch_norm(model, enabled=True):
    """Within the block, every BatchNormalization layer of `model` normalises with global-batch
    statistics (Keras' `synchronized=True`: an all-reduce of sums per layer and step), on the
    TensorFlow backend. Afterwards the layers are as they were, so the saved model keeps its
    plain (fused) batch norm and loads on any backend.

    Without it each replica normalises with its own sub-batch's statistics, as PyTorch DDP without
    SyncBatchNorm (insightface's setting); the moving statistics then differ per replica, and the
    saved ones are the first replica's: an estimate from 1/R of the data (DDP's rank 0 buffers).
    """
    layers = batch_norm_layers(model) if enabled and keras.backend.backend() == "tensorflow" else []
    before = [layer.synchronized for layer in layers]
    for layer in layers:
        layer.synchronized = True
    try:
        yield
    finally:
        for layer, value in zip(layers, before):
            layer.synchronized = value


# ------------------------------------------------------------------ model.fit under a strategy


@contextlib.contextmanager
def distributed_fit(model, strategy, element_spec):
    """Within the block, `model.fit` trains under `strategy`. On JAX that is the distribution's scope.
    On TensorFlow it steers clear of two Keras 3 limits.

    - Fit on a model created in a strategy scope first draws a batch from a separate pass over the
      dataset to build the model, loss and optimizer symbolically. The training stream then starts
      one reshuffle later than on the default strategy, and under MultiWorkerMirroredStrategy the
      build fails (`strategy.reduce` of the nested batch). Here they are built from the dataset's
      `element_spec` instead, once, and fit skips the step.
    - Under MultiWorkerMirroredStrategy the per-replica logs are reduced with
      `strategy.reduce("MEAN", axis=0)`, which needs an axis the scalar logs lack: the train step
      returns them as one-element vectors (the reduced logs are scalars again).
    """
    if keras.backend.backend() == "jax" and strategy is not None:
        with strategy.scope():  # the trainer splits each batch by the distribution set now
            yield
        return
    if keras.backend.backend() != "tensorflow" or strategy is None:
        yield
        return
    with strategy.scope():
        model._symbolic_build(data_batch=element_spec)
    step = model.train_step
    model._maybe_symbolic_build = lambda iterator=None, data_batch=None: None
    if num_workers(strategy) > 1:
        model.train_step = lambda data: {name: keras.ops.reshape(value, (1,)) for name, value in step(data).items()}
    try:
        yield
    finally:
        del model._maybe_symbolic_build
        if num_workers(strategy) > 1:
            del model.train_step
