"""Experiments: typed sections, loaded from a Python file, overridden with `section.key=value`.

Every setting is checked once, when the experiment is loaded (`validate`), before any work: its
type, a named choice against its `Literal` values or its registry (arcface_keras.registry), the
paths it names, and settings that contradict each other. What `tools/run.py --check` accepts, the
run accepts; nothing downstream re-checks.
"""
import ast
import dataclasses
import json
import re
import runpy
import sys
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from arcface_keras.registry import closest


def named(registry, default=None, default_factory=None):
    """A field naming an entry of `registry` (BACKBONES, HEADS, …): a name or {"type": name, **kwargs}."""
    if default_factory is not None:
        return field(default_factory=default_factory, metadata={"registry": registry})
    return field(default=default, metadata={"registry": registry})


BoolOrAuto = typing.Union[bool, typing.Literal["auto"]]


@dataclass
class Data:
    """Where images come from and how they are fed."""

    train: str = ""  # identity folder, TFRecord folder (with manifest.json) or InsightFace .rec
    synthetic: dict = field(default_factory=dict)  # generate identities instead: see data/synthetic.py
    val: dict = field(default_factory=dict)  # name -> pairs.txt / .bin / identity folder
    image_size: int = 112
    augment: list = named("AUGMENTATIONS", default_factory=lambda: ["flip"])  # a list of specs
    sampler: Literal["random", "pk"] = "random"  # "pk": P identities x K images per batch
    images_per_identity: int = 4  # K of the "pk" sampler
    shuffle_buffer: int = 20000
    cache_dir: str = "~/.cache/arcface_keras"


@dataclass
class Model:
    """Backbone and head specs: a registered name or {"type": name, **kwargs}."""

    backbone: typing.Any = named("BACKBONES", default_factory=lambda: {"type": "mobilefacenet"})
    head: typing.Any = named("HEADS", default_factory=lambda: {"type": "arcface"})
    embedding_size: int = 512
    pretrained: str = ""  # .keras backbone whose weights start training (tools/import_weights.py writes one)


@dataclass
class Train:
    """Optimisation, schedule, precision and distribution."""

    epochs: int = 1
    steps_per_epoch: int = 0  # 0: one pass over the training images
    batch_size: int = 128  # per replica; global batch = batch_size x replicas
    optimizer: str = named("OPTIMIZERS", "sgd")  # training/optimizers.py: "sgd" or "adamw"
    lr: float = 0.1  # for the reference global batch `lr_batch`, scaled by `lr_scaling`
    lr_batch: int = 0  # 0: lr is for whatever global batch is used
    lr_scaling: Literal["linear", "sqrt", "none"] = "linear"
    lr_schedule: str = named("LR_SCHEDULES", "cosine")  # training/schedules.py: cosine, polynomial, step, constant
    lr_steps: list = field(default_factory=list)  # epochs at which "step" divides the LR by 10
    warmup_epochs: float = 0.0
    momentum: float = 0.9
    weight_decay: float = 5e-4
    save_steps: int = 1000
    strategy: Literal["auto", "mirrored", "one_device", "multi_worker"] = "auto"  # training/distribute.py
    sync_bn: bool = False  # batch norm with global-batch statistics across replicas (TensorFlow)
    model_parallel: int = 0  # JAX: shard the class centres over this many devices (training/model_parallel.py)
    precision: Literal["auto", "float32", "mixed_float16", "mixed_bfloat16"] = "auto"  # training/auto.py
    jit_compile: BoolOrAuto = "auto"  # XLA: true, false or "auto" (training/auto.py)
    seed: int = 0


@dataclass
class Eval:
    """Verification during and after training."""

    every_steps: int = 0  # 0: only at the end of training
    flip: bool = True  # add the embedding of the mirrored image (insightface protocol)
    batch_size: int = 128
    best_metric: str = ""  # "<set>/<metric>", e.g. "lfw/accuracy": keep the best checkpoint by it


@dataclass
class Log:
    """Where and how a run reports."""

    work_dir: str = "work_dirs"
    wandb: Literal["online", "offline", "disabled"] = "offline"
    wandb_project: str = "arcface_keras"
    every_steps: int = 10  # console line, W&B and TensorBoard training scalars every this many steps
    tensorboard: bool = True  # scalars under <work_dir>/<name>/tensorboard/ as well


@dataclass
class Experiment:
    name: str = "experiment"
    data: Data = field(default_factory=Data)
    model: Model = field(default_factory=Model)
    train: Train = field(default_factory=Train)
    eval: Eval = field(default_factory=Eval)
    log: Log = field(default_factory=Log)

    def to_dict(self):
        return dataclasses.asdict(self)


class ConfigError(ValueError):
    """A bad experiment file or override; the message is one line naming the key."""


class MissingPathError(ConfigError):
    """A path named in the experiment does not exist."""


def load_experiment(path, overrides=(), check_paths=True):
    """Run an experiment file, take its `experiment`, apply `section.key=value` overrides, validate.

    `check_paths=False` skips only the existence of the data paths (to read a file's settings
    where its data is not prepared).
    """
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{path}: no such experiment file")
    root = str(path.resolve().parent.parent)
    if root not in sys.path:
        sys.path.insert(0, root)  # lets experiment files import their shared base
    namespace = runpy.run_path(str(path))
    experiment = namespace.get("experiment")
    if not isinstance(experiment, Experiment):
        raise ConfigError(f"{path}: expected a variable `experiment` holding an Experiment, found {type(experiment).__name__}")
    experiment = apply_overrides(experiment, overrides)
    try:
        validate(experiment, check_paths)
    except MissingPathError as exc:
        prepares = re.search(r"tools/(make_|preprocess|select_)", namespace.get("__doc__") or "")
        how = f"with the commands in the docstring of {path}" if prepares else ""
        raise MissingPathError(f"{exc}; prepare the data first {how}".rstrip()
                               + ", or point the setting elsewhere with --set") from None
    return experiment


def apply_overrides(experiment, overrides):
    """Return a copy of `experiment` with each `a.b[.c]=value` applied, values coerced to the field's type."""
    experiment = from_dict(experiment.to_dict())
    for item in overrides:
        if "=" not in item:
            raise ConfigError(f"override {item!r}: expected section.key=value")
        key, raw = item.split("=", 1)
        set_key(experiment, key.strip(), raw)
    return experiment


def set_key(experiment, key, raw):
    parts = key.split(".")
    if parts[0] == "name" and len(parts) == 1:
        experiment.name = raw
        return
    section = _pick(experiment, parts[0], "section", [f.name for f in dataclasses.fields(Experiment) if f.name != "name"])
    if len(parts) < 2:
        raise ConfigError(f"override {key!r}: expected section.key=value")
    fields = {f.name: f for f in dataclasses.fields(section)}
    _pick(fields, parts[1], f"key of {parts[0]}", list(fields), prefix=parts[0] + ".")
    if len(parts) == 2:
        setattr(section, parts[1], coerce(raw, fields[parts[1]].type, key))
        return
    container = getattr(section, parts[1])
    if isinstance(container, str):  # a spec given by name: turn it into a dict to set a keyword
        container = {"type": container}
        setattr(section, parts[1], container)
    if not isinstance(container, dict):
        raise ConfigError(f"override {key!r}: {parts[0]}.{parts[1]} is not a dict")
    for part in parts[2:-1]:
        container = container.setdefault(part, {})
    container[parts[-1]] = literal(raw)


def _pick(owner, name, what, valid, prefix=""):
    found = getattr(owner, name, None) if not isinstance(owner, dict) else owner.get(name)
    if found is None and name not in valid:
        close = closest(name, valid)
        hint = f" (did you mean {prefix}{close}?)" if close else ""
        raise ConfigError(f"unknown {what} '{prefix}{name}'{hint}; valid: {', '.join(prefix + v for v in valid)}")
    return found


def literal(raw):
    """Parse a Python literal, falling back to the raw string (so `resnet50` needs no quotes)."""
    try:
        return ast.literal_eval(raw)
    except (ValueError, SyntaxError):
        return raw


def coerce(raw, annotation, key):
    if annotation is BoolOrAuto:
        if raw.lower() == "auto":
            return "auto"
        try:
            return coerce(raw, bool, key)
        except ConfigError:
            raise ConfigError(f"override {key}={raw!r}: expected true or false, or auto") from None
    if annotation in ("bool", bool):
        if raw.lower() in ("1", "true", "yes", "on"):
            return True
        if raw.lower() in ("0", "false", "no", "off"):
            return False
        raise ConfigError(f"override {key}={raw!r}: expected true or false")
    for kind in (int, float):
        if annotation in (kind.__name__, kind):
            try:
                return kind(raw)
            except ValueError:
                raise ConfigError(f"override {key}={raw!r}: expected {kind.__name__}") from None
    if annotation in ("str", str) or typing.get_origin(annotation) is Literal:
        return raw
    expected = {"list": list, "dict": dict}.get(getattr(annotation, "__name__", annotation))
    value = expected() if expected and not raw.strip() else literal(raw)  # `--set data.val=` empties it
    if expected and not isinstance(value, expected):
        raise ConfigError(f"override {key}={raw!r}: expected a {expected.__name__} literal")
    return value


def from_dict(data):
    """Rebuild an Experiment from `to_dict()` output (rejecting unknown keys)."""
    sections = {f.name: f.type for f in dataclasses.fields(Experiment)}
    kwargs = {}
    for name, value in data.items():
        if name not in sections:
            raise ConfigError(f"unknown section {name!r}; valid: {', '.join(sections)}")
        if name == "name":
            kwargs[name] = value
            continue
        cls = globals()[sections[name]] if isinstance(sections[name], str) else sections[name]
        valid = [f.name for f in dataclasses.fields(cls)]
        for key in value:
            _pick({k: True for k in valid}, key, f"key of {name}", valid, prefix=name + ".")
        kwargs[name] = cls(**json.loads(json.dumps(value)))
    return Experiment(**kwargs)


def dump(experiment, path):
    """Write the resolved experiment as JSON (atomically)."""
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(experiment.to_dict(), indent=2, sort_keys=True) + "\n")
    tmp.replace(path)


# ------------------------------------------------------------------ validation


def validate(experiment, check_paths=True):
    """Check every setting of `experiment` (see the module docstring); raise ConfigError naming the key.

    `check_paths=False` leaves out whether the data exists (to read the settings of a file whose data
    is elsewhere)."""
    for section in dataclasses.fields(Experiment):
        if section.name == "name":
            continue
        values = getattr(experiment, section.name)
        for f in dataclasses.fields(values):
            check_field(f"{section.name}.{f.name}", getattr(values, f.name), f)
    check_data(experiment.data, check_paths, experiment.model.pretrained)
    check_sampler(experiment.data, experiment.train)
    check_best_metric(experiment)
    check_backend(experiment.train)


TYPES = {int: (int,), float: (int, float), bool: (bool,), str: (str,), list: (list,), dict: (dict,)}


def check_field(key, value, f):
    """One setting against its annotation (a Literal's values, a type, or a Union of them) and its registry."""
    if not matches(value, f.type):
        choices = [c for arg in annotation_options(f.type) for c in typing.get_args(arg)]
        types = [arg.__name__ for arg in annotation_options(f.type) if arg in TYPES]
        expected = ", ".join(types + [repr(c) for c in choices])
        raise ConfigError(f"{key}={value!r}: expected {'one of ' if choices else ''}{expected}"
                          + (did_you_mean(value, choices) if choices else f", got {type(value).__name__}"))
    if "registry" in f.metadata:
        check_registered(key, value, f.metadata["registry"])


def annotation_options(annotation):
    """The alternatives of a Union annotation, or the annotation alone."""
    return typing.get_args(annotation) if typing.get_origin(annotation) is typing.Union else (annotation,)


def matches(value, annotation):
    """Whether `value` fits `annotation`: a Literal's values, one of TYPES (no bool for a number), or Any."""
    for option in annotation_options(annotation):
        if typing.get_origin(option) is Literal and value in typing.get_args(option) and not (
                isinstance(value, bool) and True not in typing.get_args(option)):
            return True
        if option in TYPES and isinstance(value, TYPES[option]) and (option is bool or not isinstance(value, bool)):
            return True
        if option is typing.Any:
            return True
    return False


def check_registered(key, value, registry_name):
    from arcface_keras import registry

    specs = value if isinstance(value, list) else [value]
    for spec in specs:
        try:
            getattr(registry, registry_name).check(spec)
        except (KeyError, TypeError) as exc:
            raise ConfigError(f"{key}: {exc.args[0]}") from None


def did_you_mean(value, choices):
    close = closest(value, choices)
    return f" (did you mean {close!r}?)" if close else ""


def check_data(data, check_paths, pretrained=""):
    """Where the images come from: exactly one of data.train and data.synthetic, paths that exist (the
    pretrained backbone's too), augmentations that build."""
    from arcface_keras.data.prepare import synthetic_settings

    if data.train and data.synthetic:
        raise ConfigError(f"data.train={data.train!r} and data.synthetic are both set: train on one of them "
                          "(--set data.train= or --set data.synthetic={})")
    if not data.train and not data.synthetic and check_paths:
        raise ConfigError("data.train is empty: give a TFRecord folder, an identity folder, a .rec file "
                          "or data.synthetic")
    if data.synthetic:
        synthetic_settings(data)
    if check_paths:
        named_paths = ([("data.train", data.train)] if data.train else []) + [
            (f"data.val.{name}", path) for name, path in data.val.items()] + (
            [("model.pretrained", pretrained)] if pretrained else [])
        for key, path in named_paths:
            if not Path(path).expanduser().exists():
                raise MissingPathError(f"{key}={path!r}: no such file or directory")
    from arcface_keras.registry import AUGMENTATIONS

    try:  # each one built (its options checked), not the pipeline: nothing may start TensorFlow's runtime
        [AUGMENTATIONS.build(spec) for spec in data.augment]  # before a multi-worker strategy is made
    except (KeyError, TypeError, ValueError) as exc:
        raise ConfigError(f"data.augment: {exc.args[0]}") from None


def check_sampler(data, train):
    """The "pk" sampler fills each replica's batch with whole groups of K images of one identity."""
    if data.sampler == "pk" and train.batch_size % data.images_per_identity:
        raise ConfigError(f"data.sampler='pk': train.batch_size={train.batch_size} is not a multiple of "
                          f"data.images_per_identity={data.images_per_identity}")


def check_best_metric(experiment):
    """eval.best_metric names a verification set of this experiment and a metric where higher is better."""
    from arcface_keras.evaluation.verification import BEST_METRICS

    metric = experiment.eval.best_metric
    if not metric:
        return
    sets = sorted(experiment.data.val) + (["synthetic"] if experiment.data.synthetic else [])
    valid = [f"{name}/{key}" for name in sets for key in BEST_METRICS]
    if metric not in valid:
        raise ConfigError(f"eval.best_metric={metric!r}: expected one of {', '.join(valid) or '(no verification set)'}"
                          + did_you_mean(metric, valid))


def check_backend(train):
    """Settings that need a particular Keras backend."""
    import keras

    if train.strategy == "multi_worker" and train.model_parallel:
        raise ConfigError(f"train.model_parallel={train.model_parallel} with train.strategy='multi_worker': class "
                          "centres are split over the devices of one process only (the chief saves checkpoints "
                          "from what it holds); use train.strategy='auto' on one machine")
    if train.model_parallel and keras.backend.backend() != "jax":
        raise ConfigError(f"train.model_parallel={train.model_parallel}: needs the JAX backend "
                          f"(KERAS_BACKEND=jax), running {keras.backend.backend()}")
