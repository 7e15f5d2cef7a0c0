"""The XLA and precision matrix, shared by the TensorFlow test (tests/test_xla_matrix.py) and the JAX
subprocess (tests/jax_xla_matrix_check.py): the model, the batch and the steps, on either backend.

One model per (backbone, precision) holds every registered head side by side on one backbone, each
with its own loss, so that a column of the matrix is traced and compiled once. The parts are the
real ones: registered backbones and heads, `training/optimizers.make_optimizer` (RowSparseSGD, the
engine's SGD, which Keras wraps in its LossScaleOptimizer at compile under mixed_float16), `compile`
with `jit_compile`, Keras' own train step (`train_on_batch`).

The batch holds eight distinct classes for the classification heads, so that Partial FC's k = 8
sampled classes are exactly the batch's (its sampling code runs, but no random draw decides the
result, which keeps the backends comparable), and P×K targets (2 identities × 4 images) for the
triplet head, which does not read the label input.
"""
import keras
import numpy as np

from arcface_keras.backbones.layers import conv_bn, gdc_embedding
from arcface_keras.backbones.mobilefacenet import bottleneck
from arcface_keras.backbones.resnet import ir_unit
from arcface_keras.config import Train
from arcface_keras.registry import BACKBONES, HEADS
from arcface_keras.training.optimizers import make_optimizer

IMAGE, BATCH, EMBEDDING, CLASSES, STEPS, SEED = 32, 8, 16, 32, 3, 0
PRECISIONS = ("float32", "mixed_float16", "mixed_bfloat16")
HEAD_SPECS = {
    "softmax": "softmax",
    "arcface": {"type": "arcface", "s": 16.0, "m": 0.2},
    "cosface": {"type": "cosface", "s": 16.0, "m": 0.2},
    "combined": {"type": "combined", "s": 16.0, "m1": 1.0, "m2": 0.1, "m3": 0.1},
    "adaface": {"type": "adaface", "s": 16.0, "m": 0.2},
    "curricularface": {"type": "curricularface", "s": 16.0, "m": 0.2},
    "triplet": {"type": "triplet", "margin": 0.2},
    "center": {"type": "center", "base": "softmax"},
    "partial_fc": {"type": "arcface", "s": 16.0, "m": 0.2, "sample_rate": 0.25, "seed": SEED},
}
BACKBONE_SPECS = {
    "blocks": None,  # one of each unit of both backbones (`blocks` below): the default matrix
    "resnet18": {"type": "resnet18", "width": 0.0625},
    "mobilefacenet": {"type": "mobilefacenet", "width": 0.125},
}
TRAIN = Train(lr=0.01, momentum=0.9, weight_decay=5e-4)
# mixed_float16 starts from LOSS_SCALE, not Keras' 2^15, at which these models' first gradients overflow (each
# overflow halves it: dynamic scaling settles within a few steps where the steps below start); step FORCED_STEP
# has its loss multiplied by FORCED_OVERFLOW (through its sample weights), so that its scaled gradients overflow
# float16 (largest 65504) whatever the scale: the step is skipped and the scale halves.
LOSS_SCALE, FORCED_STEP, FORCED_OVERFLOW = 2.0**8, 1, 2.0**20


def blocks(input_shape, embedding_size):
    """Every kind of unit of IResNet and MobileFaceNet once, built by their own functions: the stem's
    conv_bn, the grouped 3x3 conv of MobileFaceNet's stem at width > 1 (GroupedConv2D: a depthwise conv and
    a sum per group), an IR unit (strided with symmetric padding, squeeze-excitation, 1x1 shortcut), a
    MobileFaceNet bottleneck (1x1 expand, depthwise, linear project) and the GDC output (whole-map depthwise
    conv, BN, flatten, dense, float32 BN: the layers of the E output too, less its dropout)."""
    image = keras.Input(input_shape, name="image")
    x = conv_bn(image, 8, 3, "stem", strides=2)
    x = conv_bn(x, 8, 3, "stem_grouped", groups=4)
    x = ir_unit(x, 8, 2, True, "ir", padding="symmetric")
    x = bottleneck(x, 16, 8, 2, "mfn")
    return keras.Model(image, gdc_embedding(x, embedding_size), name="blocks")


def build_backbone(name):
    if BACKBONE_SPECS[name] is None:
        return blocks((IMAGE, IMAGE, 3), EMBEDDING)
    return BACKBONES.build(BACKBONE_SPECS[name], input_shape=(IMAGE, IMAGE, 3), embedding_size=EMBEDDING)


def build(backbone, precision, jit_compile, run_eagerly=False):
    """The compiled model with every head on `backbone` under `precision` (the global policy is put back)."""
    previous = keras.mixed_precision.dtype_policy()
    keras.mixed_precision.set_dtype_policy(precision)
    try:
        keras.utils.set_random_seed(SEED)
        embedder = build_backbone(backbone)
        heads = {name: HEADS.build(spec, num_classes=CLASSES, name=name) for name, spec in HEAD_SPECS.items()}
        image, label = keras.Input((IMAGE, IMAGE, 3), name="image"), keras.Input((), dtype="int32", name="label")
        embedding = embedder(image)
        model = keras.Model([image, label], {name: head([embedding, label]) for name, head in heads.items()})
        model.compile(optimizer=make_optimizer(TRAIN, TRAIN.lr), loss={name: h.loss() for name, h in heads.items()},
                      loss_weights={name: 1 / len(heads) for name in heads},  # the backbone steps as for one head
                      jit_compile=jit_compile, run_eagerly=run_eagerly)
        model.optimizer.build(model.trainable_variables)  # as the engine does
        if precision == "mixed_float16":
            model.optimizer.dynamic_scale.assign(LOSS_SCALE)
    finally:
        keras.mixed_precision.set_dtype_policy(previous)
    return model


def batch():
    """(images, head labels: 8 distinct classes, targets per head: the triplet head's are P×K)."""
    rng = np.random.default_rng(SEED)
    images = rng.uniform(-1, 1, (BATCH, IMAGE, IMAGE, 3)).astype("float32")
    labels = rng.permutation(CLASSES)[:BATCH].astype("int32")
    targets = {name: labels for name in HEAD_SPECS}
    targets["triplet"] = np.repeat(np.arange(2), BATCH // 2).astype("int32")
    return images, labels, targets


def variables(model):
    """Every variable a step changes: the model's weights, then the optimizer's (slots, counters, scale)."""
    return list(model.weights) + list(model.optimizer.variables)


def state(model):
    return [np.array(keras.ops.convert_to_numpy(v)) for v in variables(model)]


def load_state(model, values):
    for variable, value in zip(variables(model), values, strict=True):
        variable.assign(value)


def describe(model):
    """What a comparison needs besides the numbers: variable paths and dtypes, the heads' output dtypes."""
    trainable = {id(v) for v in model.trainable_weights}
    return {"layers": sum(len(layer.layers) for layer in model.layers if isinstance(layer, keras.Model)),
            "weights": len(model.weights),  # then the optimizer's variables
            "paths": [v.path for v in variables(model)],
            "dtypes": [keras.backend.standardize_dtype(v.dtype) for v in variables(model)],
            "trainable": [id(v) in trainable for v in variables(model)],
            "outputs": {name: keras.backend.standardize_dtype(out.dtype) for name, out in model.output.items()}}


def train(model, precision, starts=None):
    """STEPS steps on the batch: {"losses": {head: per step}, "total": per step, "states": after each step}.

    `starts`: the state to load before each step (each step then starts where a reference's did);
    None: the steps follow each other. Under mixed_float16 step FORCED_STEP has its loss multiplied.
    """
    images, labels, targets = batch()
    record = {"losses": {name: [] for name in HEAD_SPECS}, "total": [], "states": []}
    for step in range(STEPS):
        if starts is not None:
            load_state(model, starts[step])
        forced = precision == "mixed_float16" and step == FORCED_STEP
        weight = np.full(BATCH, FORCED_OVERFLOW if forced else 1.0, "float32")  # at every step: one trace
        logs = model.train_on_batch([images, labels], targets, sample_weight={name: weight for name in HEAD_SPECS},
                                    return_dict=True)
        for name in HEAD_SPECS:
            record["losses"][name].append(float(logs[f"{name}_loss"]))
        record["total"].append(float(logs["loss"]))
        record["states"].append(state(model))
    return record


def reference(backbone, precision):
    """The non-XLA steps from the seeded start: TensorFlow's kernels one operation at a time (run_eagerly: for
    three steps cheaper than tracing the graph)."""
    model = build(backbone, precision, jit_compile=False, run_eagerly=True)
    start = state(model)
    return {"start": start, **train(model, precision), **describe(model)}


def compiled(backbone, precision, ref):
    """The XLA steps from the reference's start: run on (`steps`), and each step from the reference's state
    before it (`each`)."""
    model = build(backbone, precision, jit_compile=True)
    load_state(model, ref["start"])
    steps = train(model, precision)
    each = train(model, precision, starts=[ref["start"]] + ref["states"][:-1])
    return {"steps": steps, "each": each, **describe(model)}
