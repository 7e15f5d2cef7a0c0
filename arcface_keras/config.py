"""Experiments: typed sections, loaded from a Python file, overridden with `section.key=value`."""
import ast
import dataclasses
import difflib
import json
import runpy
import sys
import typing
from dataclasses import dataclass, field
from pathlib import Path


BoolOrAuto = typing.Union[bool, typing.Literal["auto"]]


@dataclass
class Data:
    """Where images come from and how they are fed."""

    train: str = ""  # identity folder, TFRecord folder (with manifest.json) or InsightFace .rec
    synthetic: dict = field(default_factory=dict)  # generate identities instead: see data/synthetic.py
    val: dict = field(default_factory=dict)  # name -> pairs.txt / .bin / identity folder
    image_size: int = 112
    augment: list = field(default_factory=lambda: ["flip"])
    sampler: str = "random"  # "random" or "pk" (P identities x K images per batch)
    images_per_identity: int = 4  # K of the "pk" sampler
    shuffle_buffer: int = 20000
    cache_dir: str = "~/.cache/arcface_keras"


@dataclass
class Model:
    """Backbone and head specs: a registered name or {"type": name, **kwargs}."""

    backbone: typing.Any = field(default_factory=lambda: {"type": "mobilefacenet"})
    head: typing.Any = field(default_factory=lambda: {"type": "arcface"})
    embedding_size: int = 512


@dataclass
class Train:
    """Optimisation, schedule, precision and distribution."""

    epochs: int = 1
    steps_per_epoch: int = 0  # 0: one pass over the training images
    batch_size: int = 128  # per replica; global batch = batch_size x replicas
    optimizer: str = "sgd"  # "sgd" (momentum, decoupled weight decay) or "adamw"
    lr: float = 0.1  # for the reference global batch `lr_batch`, scaled by `lr_scaling`
    lr_batch: int = 0  # 0: lr is for whatever global batch is used
    lr_scaling: str = "linear"  # "linear", "sqrt" or "none"
    lr_schedule: str = "cosine"  # "cosine", "polynomial", "step" or "constant"
    lr_steps: list = field(default_factory=list)  # epochs at which "step" divides the LR by 10
    warmup_epochs: float = 0.0
    momentum: float = 0.9
    weight_decay: float = 5e-4
    save_steps: int = 1000
    strategy: str = "auto"  # "auto", "mirrored", "one_device" or "multi_worker" (training/distribute.py)
    sync_bn: bool = False  # batch norm with global-batch statistics across replicas (TensorFlow)
    model_parallel: int = 0  # JAX: shard the class centres over this many devices (training/model_parallel.py)
    precision: str = "auto"  # "auto", "float32", "mixed_float16" or "mixed_bfloat16" (training/auto.py)
    jit_compile: BoolOrAuto = "auto"  # XLA: true, false or "auto" (training/auto.py)
    seed: int = 0


@dataclass
class Eval:
    """Verification during and after training."""

    every_steps: int = 0  # 0: only at the end of training
    flip: bool = True  # add the embedding of the mirrored image (insightface protocol)
    batch_size: int = 128
    best_metric: str = ""  # e.g. "lfw/accuracy": keep the best checkpoint by it


@dataclass
class Log:
    """Where and how a run reports."""

    work_dir: str = "work_dirs"
    wandb: str = "offline"  # "online", "offline" or "disabled"
    wandb_project: str = "arcface_keras"
    every_steps: int = 10  # log training loss and learning rate every this many steps


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


def load_experiment(path, overrides=()):
    """Run an experiment file, take its `experiment`, apply `section.key=value` overrides."""
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
    return apply_overrides(experiment, overrides)


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
    value = coerce(raw, fields[parts[1]].type, key)
    if len(parts) == 2:
        setattr(section, parts[1], value)
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
        close = difflib.get_close_matches(name, valid, n=1)
        hint = f" (did you mean {prefix}{close[0]}?)" if close else ""
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
    if annotation in ("str", str):
        return raw
    value = literal(raw)
    expected = {"list": list, "dict": dict}.get(getattr(annotation, "__name__", annotation))
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
