"""Choosing the tf.distribute strategy the model and optimizer are built under."""
import contextlib

import keras

STRATEGIES = ("auto", "mirrored", "one_device", "multi_worker")


def make_strategy(name="auto"):
    """auto: MirroredStrategy over all visible GPUs when there are several, else the default strategy."""
    if name not in STRATEGIES:
        raise ValueError(f"train.strategy={name!r}: expected one of {', '.join(STRATEGIES)}")
    import tensorflow as tf

    gpus = tf.config.list_logical_devices("GPU")
    if name == "auto":
        return tf.distribute.MirroredStrategy() if len(gpus) > 1 else tf.distribute.get_strategy()
    if name == "mirrored":
        return tf.distribute.MirroredStrategy()
    if name == "one_device":
        return tf.distribute.OneDeviceStrategy(gpus[0].name if gpus else "/cpu:0")
    return tf.distribute.MultiWorkerMirroredStrategy()


def strategy_scope(strategy):
    """The strategy's scope on the TensorFlow backend; a no-op elsewhere."""
    if keras.backend.backend() != "tensorflow" or strategy is None:
        return contextlib.nullcontext()
    return strategy.scope()


def is_chief(strategy):
    """Only the chief worker writes checkpoints, logs and W&B."""
    resolver = getattr(strategy, "cluster_resolver", None)
    if resolver is None or not resolver.cluster_spec().as_dict():
        return True
    return resolver.task_type in (None, "chief") or (resolver.task_type == "worker" and resolver.task_id == 0)
