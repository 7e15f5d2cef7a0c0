"""Class centres split over devices on the JAX backend, through `keras.distribution`.

With millions of identities the centre matrix (and its momentum) outgrows one device while the
backbone does not. `shard_class_centres` sets a `keras.distribution.ModelParallel` over a
(data, model) device mesh: every head's class-centre matrix is split along its class axis over
"model", every other weight is replicated, and each batch is split over "data". The ordinary Keras
JAX trainer then runs `model.fit` as usual; XLA inserts the collectives. Per device that holds
C/model_axis centres, their momentum and logits of B_global/data_axis × C/model_axis. Batch norm
statistics are those of the whole global batch here (the arrays are global), i.e. synchronised.

    KERAS_BACKEND=jax python tools/run.py experiments/X.py --set train.model_parallel=4
(the engine builds and trains in the distribution's scope) or, in code, before the model is built:
    shard_class_centres(model_axis=4)
"""
import keras

from arcface_keras.registry import split_spec

# Layers built by HEADS are named after their class (ArcFaceHead → "arc_face_head").
HEAD_PATH = r".*_head(_\d+)?"


def class_axis(head_spec):
    """The class axis of a head's centres: 1 for (D, C), 0 for a Partial FC head's (C, D)."""
    _, kwargs = split_spec(head_spec, "head")
    if "base" in kwargs:
        return class_axis(kwargs["base"])
    return 0 if float(kwargs.get("sample_rate", 1.0)) < 1.0 else 1


def class_centre_layouts(mesh, axis=1, model_axis_name="model"):
    """A LayoutMap that splits heads' centre matrices along class axis `axis` over `model_axis_name`."""
    layouts = keras.distribution.LayoutMap(mesh)
    layouts[f"{HEAD_PATH}/kernel"] = (None, model_axis_name) if axis == 1 else (model_axis_name, None)
    layouts[f"{HEAD_PATH}/centers"] = (model_axis_name, None)  # the center-loss head's (C, D) centres
    return layouts


def shard_class_centres(devices=None, model_axis=2, axis=1):
    """Set (and return) `class_centre_distribution(...)` as the global distribution; call before the
    model is built."""
    distribution = class_centre_distribution(devices, model_axis, axis)
    keras.distribution.set_distribution(distribution)
    return distribution


def class_centre_distribution(devices=None, model_axis=2, axis=1):
    """A ModelParallel distribution: class centres over `model_axis` devices, data parallel over the
    rest. `devices` defaults to every JAX device; `axis` is the centres' class axis (see `class_axis`)."""
    if keras.backend.backend() != "jax":
        raise ValueError(f"model-parallel class centres need the JAX backend, running {keras.backend.backend()}")
    devices = devices or keras.distribution.list_devices()
    if model_axis < 1 or len(devices) % model_axis:
        raise ValueError(f"train.model_parallel={model_axis}: must divide the {len(devices)} devices")
    mesh = keras.distribution.DeviceMesh((len(devices) // model_axis, model_axis), ("data", "model"), devices)
    return keras.distribution.ModelParallel(layout_map=class_centre_layouts(mesh, axis), batch_dim_name="data")
