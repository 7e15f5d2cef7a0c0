"""The memory a run needs on each device, counted from the model's shapes before anything is trained.

`tools/run.py EXPERIMENT --check [--device-memory 80GB]` prints it. The model is built inside
`keras.StatelessScope`, where layers create their weights without values: counting IR-100 with two
million classes allocates nothing. Per device, for the run's batch B (per replica) and precision:

  parameters   every weight of the backbone and the head, float32 (Keras keeps float32 variables
               under mixed precision)
  gradients    one float32 value per trainable weight; Partial FC with the engine's SGD on
               TensorFlow: the k sampled rows of the centres only (a row-sparse gradient)
  optimizer    the optimizer's slots, counted on the optimizer itself (SGD with momentum: one per
               trainable weight, AdamW: two), and two temporaries of the part's largest gradient
               (an update computes μ·m and lr·g, or their like, before adding them)
  activations  backbone: the input batch and every layer's output for B images, at the layer's
               compute dtype (the backward pass keeps them), a PReLU's twice: Keras computes it
               as relu(x) − α·relu(−x), and the backward pass keeps both relus
               head: its output (B, k) three times (logits, softmax, their gradient), float32, and
               for margin heads the normalised centres it scores, (k, D), and their gradient

with k the classes a step scores: C, or with Partial FC max(⌈r·C⌉, B). With train.model_parallel=M
every figure of the head is split over M devices. Not counted: the framework's runtime and
workspaces (cuDNN, XLA temporaries), gradients of activations in flight during the backward pass,
the input pipeline, fragmentation. bench/bench_memory.py sets the plan against measured peaks
(0.85-0.90 of them for three backbones and two large heads on a CPU).
"""
import dataclasses
import math
import re

import keras
import numpy as np

FLOAT32 = 4
UNITS = {"": 1, "k": 1e3, "m": 1e6, "g": 1e9, "t": 1e12, "ki": 2**10, "mi": 2**20, "gi": 2**30, "ti": 2**40}


@dataclasses.dataclass(frozen=True)
class Part:
    """Bytes one device holds for the backbone or the head."""

    parameters: int
    gradients: int
    optimizer: int
    activations: int

    @property
    def total(self):
        return self.parameters + self.gradients + self.optimizer + self.activations


@dataclasses.dataclass(frozen=True)
class Shapes:
    """What the plan reads off the built model: value counts and per-image bytes, no batch in them."""

    backbone_weights: int  # float32 values, trainable
    backbone_frozen: int  # float32 values, not trainable (batch-norm statistics)
    backbone_largest: int  # values of its largest trainable weight
    bytes_per_image: int  # the input and every backbone layer's output for one image
    head_weights: int
    head_frozen: int
    head_largest: int
    num_classes: int
    output_width: int  # the head's output width at inference (C, or D for a metric head)
    sample_rate: float  # < 1: Partial FC
    centre_dim: int  # D of the centres a margin head normalises; 0 for other heads
    sparse_centres: bool  # the centres' gradient holds the sampled rows only
    slots: int  # optimizer values per trainable value
    model_parallel: int

    def classes_scored(self, batch):
        """k for a batch of `batch` images: every output column, or Partial FC's max(⌈r·C⌉, B) ≤ C."""
        from arcface_keras.heads.partial_fc import num_sampled

        if self.sample_rate >= 1.0:
            return self.output_width
        return num_sampled(self.num_classes, self.sample_rate, batch)


def plan(shapes, batch):
    """{"backbone": Part, "head": Part} for one device at `batch` images per replica."""
    backbone = Part(FLOAT32 * (shapes.backbone_weights + shapes.backbone_frozen), FLOAT32 * shapes.backbone_weights,
                    FLOAT32 * (shapes.slots * shapes.backbone_weights + 2 * shapes.backbone_largest),
                    batch * shapes.bytes_per_image)
    k = shapes.classes_scored(batch)
    centres = FLOAT32 * k * shapes.centre_dim
    gradients, largest = shapes.head_weights, shapes.head_largest
    if shapes.sparse_centres:  # the centres' gradient: k rows of D
        gradients -= (shapes.num_classes - k) * shapes.centre_dim
        largest = k * shapes.centre_dim
    head = Part(FLOAT32 * (shapes.head_weights + shapes.head_frozen), FLOAT32 * gradients,
                FLOAT32 * (shapes.slots * shapes.head_weights + 2 * largest), 3 * FLOAT32 * batch * k + 2 * centres)
    split = max(shapes.model_parallel, 1)
    return {"backbone": backbone, "head": Part(*(value // split for value in dataclasses.astuple(head)))}


def largest_batch(shapes, device_bytes, limit=2**20):
    """The largest batch per replica whose plan fits in `device_bytes` (0 if none does)."""
    def fits(batch):
        return sum(part.total for part in plan(shapes, batch).values()) <= device_bytes

    low, high = 0, limit
    while low < high:
        middle = (low + high + 1) // 2
        low, high = (middle, high) if fits(middle) else (low, middle - 1)
    return low


def count_shapes(experiment, num_classes, precision):
    """The Shapes of `experiment`'s model with `num_classes` classes under the dtype policy `precision`,
    built without values (nothing as large as the centres is allocated)."""
    from arcface_keras.heads.margin import MarginHead
    from arcface_keras.heads.partial_fc import RowSparseSGD
    from arcface_keras.training.model import build_face_model
    from arcface_keras.training.optimizers import make_optimizer

    model_config = dataclasses.replace(experiment.model, pretrained="")  # the shapes are the same
    previous = keras.mixed_precision.dtype_policy()
    keras.mixed_precision.set_dtype_policy(precision)
    try:
        with keras.StatelessScope():
            model, embedder, head = build_face_model(model_config, num_classes, experiment.data.image_size)
        optimizer = make_optimizer(experiment.train, 0.1)
    finally:
        keras.mixed_precision.set_dtype_policy(previous)
    margin = head if isinstance(head, MarginHead) else getattr(head, "classifier", None)
    margin = margin if isinstance(margin, MarginHead) else None
    sample_rate = margin.sample_rate if margin is not None else 1.0
    return Shapes(
        backbone_weights=values(embedder.trainable_weights), backbone_frozen=values(embedder.non_trainable_weights),
        backbone_largest=largest(embedder), bytes_per_image=bytes_per_image(embedder),
        head_weights=values(head.trainable_weights), head_frozen=values(head.non_trainable_weights),
        head_largest=largest(head), num_classes=num_classes, output_width=int(model.output.shape[-1]),
        sample_rate=sample_rate, centre_dim=experiment.model.embedding_size if margin is not None else 0,
        sparse_centres=sample_rate < 1 and isinstance(optimizer, RowSparseSGD) and keras.backend.backend() == "tensorflow",
        slots=slots_per_weight(optimizer), model_parallel=experiment.train.model_parallel)


def values(weights):
    return sum(math.prod(weight.shape) for weight in weights)


def largest(layer):
    return max((math.prod(weight.shape) for weight in layer.trainable_weights), default=0)


def bytes_per_image(model):
    """Bytes of the input and of every layer's output of `model` (nested models included) for one image,
    a PReLU's twice (see the module docstring)."""
    total = 0
    for layer in model.layers:
        if isinstance(layer, keras.Model):
            total += bytes_per_image(layer) - sum(tensor_bytes(t) for t in keras.tree.flatten(layer.inputs))
            continue
        copies = 2 if isinstance(layer, keras.layers.PReLU) else 1
        total += copies * sum(tensor_bytes(tensor) for tensor in keras.tree.flatten(layer.output))
    return total


def tensor_bytes(tensor):
    """Bytes of one sample of a symbolic tensor."""
    return math.prod(tensor.shape[1:]) * dtype_size(tensor.dtype)


def dtype_size(dtype):
    dtype = keras.backend.standardize_dtype(dtype)
    return 1 if dtype == "bool" else int(re.sub(r"\D", "", dtype) or 32) // 8


def slots_per_weight(optimizer):
    """How many values `optimizer` keeps per trainable value, counted on a probe variable it is built for."""
    probe = keras.Variable(np.zeros((3, 5), "float32"), name="probe")
    optimizer.build([probe])
    return sum(1 for variable in optimizer.variables if tuple(variable.shape) == (3, 5))


def parse_bytes(text):
    """'80GB' → 80e9, '80GiB' → 80·2³⁰ (also k/M/T, with or without B); ValueError naming the text."""
    found = re.fullmatch(r"\s*([0-9]*\.?[0-9]+)\s*([kKmMgGtT]i?)?[bB]?\s*", text or "")
    if not found:
        raise ValueError(f"--device-memory {text!r}: expected a size such as 80GB, 40GiB or 16000MB")
    return int(float(found.group(1)) * UNITS[(found.group(2) or "").lower()])


def format_bytes(count):
    for unit, size in (("TB", 1e12), ("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if count >= size:
            return f"{count / size:.2f} {unit}"
    return f"{count} B"


def report(experiment, device_bytes=None):
    """The plan of `experiment` as printed lines (tools/run.py --check), at the precision `auto` resolves to
    on this machine, with the classes of the data's manifest or synthetic settings; the largest batch
    per replica that fits in `device_bytes` if given."""
    from arcface_keras.data.prepare import known_num_classes
    from arcface_keras.training import auto

    t, backend = experiment.train, keras.backend.backend()
    precision = auto.resolve(t.precision, t.jit_compile, backend, auto.local_device(backend)).precision
    classes = known_num_classes(experiment.data)
    shapes = count_shapes(experiment, classes or 1, precision)
    parts = plan(shapes, t.batch_size)
    scored = (f"{shapes.classes_scored(t.batch_size):,} of {classes:,} classes scored per step" if classes else
              "the head left out: its classes are known once the data is prepared (manifest.json)")
    lines = [f"memory per device at batch {t.batch_size} per replica, {precision} ({backend}), "
             f"{shapes.slots} optimizer slot(s) per weight, {scored}:"]
    lines += table(parts if classes else {"backbone": parts["backbone"]})
    lines.append("  not counted: the framework's runtime and workspaces, gradients of activations in flight, "
                 "the input pipeline, fragmentation")
    if device_bytes is not None:
        best = largest_batch(shapes, device_bytes)
        lines.append(f"largest batch per replica within {format_bytes(device_bytes)}{'' if classes else ' (backbone)'}: "
                     + (f"{best:,}" if best else "none, not even 1"))
    return lines


def table(parts):
    """One row of bytes per part and their total."""
    columns = [f.name for f in dataclasses.fields(Part)] + ["total"]
    total = Part(*(sum(getattr(part, f.name) for part in parts.values()) for f in dataclasses.fields(Part)))
    lines = [f"  {'':9}" + "".join(f"{name:>13}" for name in columns)]
    for name, part in {**parts, "total": total}.items():
        lines.append(f"  {name:9}" + "".join(f"{format_bytes(getattr(part, column)):>13}" for column in columns))
    return lines
