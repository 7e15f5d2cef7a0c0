"""Experiments: typed sections, loaded from a Python file, overridden with `section.key=value`.

Every setting is checked once, when the experiment is loaded (`validate`), before any work: its
type and range (its annotation, see arcface_keras/typecheck.py), a named choice against its
`Literal` values or its registry (arcface_keras.registry, whose components declare their keywords'
types and ranges the same way, and check them against the other settings in their `check` hook),
the paths it names, and settings that contradict each other. Values are what JSON holds (`plain`):
the experiment is config.json.
What `tools/run.py --check` accepts, the run accepts; nothing downstream re-checks.
"""
import ast
import dataclasses
import json
import math
import os
import re
import runpy
import sys
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Literal

from annotated_types import Ge, Gt, Interval, MultipleOf, doc

from arcface_keras.registry import closest
from arcface_keras.typecheck import mismatch

FOLDS = 10  # the verification protocol's folds (evaluation/verification.py)
MIN_CLASSES = 2  # a classifier of one class has nothing to tell apart
MANIFEST = "manifest.json"  # of a TFRecord folder (data/tfrecord.py)
SYNTHETIC_SET = "synthetic"  # the verification set of held-out synthetic identities (data/prepare.py)
PAIRS_TXT = "pairs.txt"  # what a verification folder holds (data/verification.py)


def named(registry, default=None, default_factory=None):
    """A field naming an entry of `registry` (BACKBONES, HEADS, …): a name or {"type": name, **kwargs}."""
    if default_factory is not None:
        return field(default_factory=default_factory, metadata={"registry": registry})
    return field(default=default, metadata={"registry": registry})


BoolOrAuto = typing.Union[bool, typing.Literal["auto"]]
Spec = typing.Union[str, dict]  # a registered name or {"type": name, **keywords}
AtLeastOne = Annotated[int, Ge(1)]
ZeroOrMore = Annotated[int, Ge(0)]  # 0 usually means "off" or "automatic": see the field's comment
ImageSize = Annotated[int, Ge(16), doc("the backbones halve the image 4 times: below 16 px a strided stage sees 1x1")]


@dataclass
class Data:
    """Where images come from and how they are fed."""

    train: str = ""  # identity folder, TFRecord folder (with manifest.json) or InsightFace .rec
    synthetic: dict = field(default_factory=dict)  # generate identities instead: the keys of `Synthetic`
    val: dict[str, str] = field(default_factory=dict)  # name -> pairs.txt / .bin / identity folder
    image_size: ImageSize = 112
    augment: list = named("AUGMENTATIONS", default_factory=lambda: ["flip"])  # a list of specs
    sampler: Literal["random", "pk"] = "random"  # "pk": P identities x K images per batch
    images_per_identity: Annotated[int, Ge(2), doc("a group of one image holds no pair")] = 4  # K of "pk"
    shuffle_buffer: AtLeastOne = 20000
    cache_dir: str = "~/.cache/arcface_keras"


@dataclass
class Synthetic:
    """Generated identities (data/synthetic.py): `data.synthetic` sets any of these keys; {} uses none.

    The held-out identities are dealt to the verification folds: each fold needs two of them for
    its different-identity pairs, and enough images for val_pairs / 20 same-identity pairs (checked).
    """

    identities: Annotated[int, Ge(MIN_CLASSES)] = 200  # trained on
    images: Annotated[int, Ge(2), doc("one image per identity has no variation to learn")] = 20  # per identity
    val_identities: Annotated[int, Ge(2 * FOLDS), doc(f"2 per fold of {FOLDS}")] = 40  # held out, for verification
    val_images: Annotated[int, Ge(2), doc("a same-identity pair needs 2")] = 10  # per held-out identity
    val_pairs: Annotated[int, Ge(2 * FOLDS), MultipleOf(2 * FOLDS),
                         doc(f"{FOLDS} folds, each half same-identity, half different")] = 1000
    seed: ZeroOrMore = 0


@dataclass
class Model:
    """Backbone and head specs: a registered name or {"type": name, **kwargs}."""

    backbone: Spec = named("BACKBONES", default_factory=lambda: {"type": "mobilefacenet"})
    head: Spec = named("HEADS", default_factory=lambda: {"type": "arcface"})
    embedding_size: AtLeastOne = 512
    pretrained: str = ""  # .keras backbone whose weights start training (tools/import_weights.py writes one)


@dataclass
class Train:
    """Optimisation, schedule, precision and distribution."""

    epochs: AtLeastOne = 1
    steps_per_epoch: ZeroOrMore = 0  # 0: one pass over the training images
    batch_size: AtLeastOne = 128  # per replica; global batch = batch_size x replicas
    optimizer: str = named("OPTIMIZERS", "sgd")  # training/optimizers.py: "sgd" or "adamw"
    lr: Annotated[float, Gt(0)] = 0.1  # for the reference global batch `lr_batch`, scaled by `lr_scaling`
    lr_batch: ZeroOrMore = 0  # 0: lr is for whatever global batch is used
    lr_scaling: Literal["linear", "sqrt", "none"] = "linear"
    lr_schedule: str = named("LR_SCHEDULES", "cosine")  # training/schedules.py: cosine, polynomial, step, constant
    lr_steps: list[Annotated[float, Gt(0)]] = field(default_factory=list)  # "step": LR / 10 at these epochs
    warmup_epochs: Annotated[float, Ge(0)] = 0.0
    momentum: Annotated[float, Interval(ge=0, lt=1), doc("at 1 no gradient is ever forgotten")] = 0.9
    weight_decay: Annotated[float, Ge(0)] = 5e-4
    save_steps: ZeroOrMore = 1000  # 0: a checkpoint at the end only
    strategy: Literal["auto", "mirrored", "one_device", "multi_worker"] = "auto"  # training/distribute.py
    sync_bn: bool = False  # batch norm with global-batch statistics across replicas (TensorFlow)
    freeze_bn: bool = False  # batch norms keep their statistics, scale and shift: fine-tuning on few identities
    model_parallel: ZeroOrMore = 0  # JAX: shard the class centres over this many devices (training/model_parallel.py)
    precision: Literal["auto", "float32", "mixed_float16", "mixed_bfloat16"] = "auto"  # training/auto.py
    jit_compile: BoolOrAuto = "auto"  # XLA: true, false or "auto" (training/auto.py)
    seed: Annotated[int, Interval(ge=0, lt=2**32), doc("NumPy's global seed is 32-bit")] = 0


@dataclass
class Eval:
    """Verification during and after training."""

    every_steps: ZeroOrMore = 0  # 0: only at the end of training
    flip: bool = True  # add the embedding of the mirrored image (insightface protocol)
    batch_size: AtLeastOne = 128
    best_metric: str = ""  # "<set>/<metric>", e.g. "lfw/accuracy": keep the best checkpoint by it


@dataclass
class Log:
    """Where and how a run reports."""

    work_dir: str = "work_dirs"
    wandb: Literal["online", "offline", "disabled"] = "offline"
    wandb_project: str = "arcface_keras"
    every_steps: AtLeastOne = 10  # console line, W&B and TensorBoard training scalars every this many steps
    tensorboard: bool = True  # scalars under <work_dir>/<name>/tensorboard/ as well


@dataclass
class Experiment:
    name: str = "experiment"  # the run directory's name under log.work_dir: a plain file name
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
    experiment = from_dict(settings_of(experiment))
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
    if isinstance(container, str) and "registry" in fields[parts[1]].metadata:
        container = {"type": container}  # a spec given by name becomes a dict, to set a keyword
        setattr(section, parts[1], container)
    for depth, part in enumerate(parts[2:], start=2):
        if not isinstance(container, dict):
            raise ConfigError(f"override {key}={raw!r}: {'.'.join(parts[:depth])} is not a dict (it is {container!r})")
        if depth == len(parts) - 1:
            container[part] = plain(literal(raw), key)
        else:
            container = container.setdefault(part, {})


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
    """`raw` as a value of `annotation`'s type (its range is checked by `validate`)."""
    if typing.get_origin(annotation) is Annotated:
        annotation = typing.get_args(annotation)[0]
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
    expected = {list: list, dict: dict}.get(typing.get_origin(annotation) or annotation)
    value = expected() if expected and not raw.strip() else literal(raw)  # `--set data.val=` empties it
    if expected and not isinstance(value, expected):
        raise ConfigError(f"override {key}={raw!r}: expected a {expected.__name__} literal")
    return plain(value, key)


def from_dict(data):
    """Rebuild an Experiment from `to_dict()` output (rejecting unknown keys); each value becomes what
    JSON holds (see `plain`), so that config.json holds exactly the settings."""
    sections = {f.name: f.type for f in dataclasses.fields(Experiment)}
    kwargs = {}
    for name, value in data.items():
        if name not in sections:
            raise ConfigError(f"unknown section {name!r}; valid: {', '.join(sections)}")
        if name == "name":
            kwargs[name] = plain(value, name)
            continue
        cls = globals()[sections[name]] if isinstance(sections[name], str) else sections[name]
        if not isinstance(value, dict):
            raise ConfigError(f"{name}={value!r}: expected a {cls.__name__} (or a dict of its settings)")
        valid = [f.name for f in dataclasses.fields(cls)]
        for key in value:
            _pick({k: True for k in valid}, key, f"key of {name}", valid, prefix=name + ".")
        kwargs[name] = cls(**plain(value, name))
    return Experiment(**kwargs)


def settings_of(experiment):
    """{section: {key: value}} of an Experiment, shallow (`from_dict` copies the values, and refuses what JSON
    cannot hold naming it, where `to_dict` would fail on a value it cannot deep-copy)."""
    return {f.name: _fields_of(getattr(experiment, f.name)) for f in dataclasses.fields(Experiment)}


def _fields_of(section):
    if dataclasses.is_dataclass(section):
        return {f.name: getattr(section, f.name) for f in dataclasses.fields(section)}
    return section  # the name, or a section that is not its dataclass (from_dict says so)


def plain(value, key):
    """`value` as JSON holds it: a tuple becomes a list (config.json writes one), a subclass of int, float or
    str its base type (as json.dumps writes it); anything else (a set, a numpy scalar, a path) is refused
    naming `key`. The copy shares nothing with `value`."""
    if isinstance(value, bool) or value is None:
        return value
    for kind in (str, int, float):
        if isinstance(value, kind):
            return kind(value)
    if isinstance(value, (list, tuple)):
        return [plain(item, f"{key}[{index}]") for index, item in enumerate(value)]
    if isinstance(value, dict):
        wrong = [k for k in value if not isinstance(k, str)]
        if wrong:
            raise ConfigError(f"{key}: key {wrong[0]!r} ({type(wrong[0]).__name__}): expected text keys")
        return {k: plain(item, f"{key}.{k}") for k, item in value.items()}
    kind = type(value)
    where = "" if kind.__module__ == "builtins" else f"{kind.__module__.split('.')[0]}."
    raise ConfigError(f"{key}={value!r}: expected a value JSON can hold (text, a number, true/false, None, or a list "
                      f"or dict of them), got {where}{kind.__name__}")


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
    check_name(experiment.name)
    for key, value, f in sectioned_settings(experiment):
        check_field(key, value, f)
    check_components(experiment)
    check_data(experiment.data, check_paths, experiment.model.pretrained)
    if check_paths:
        check_writable_folder("log.work_dir", experiment.log.work_dir, inside=experiment.name)
    check_sampler(experiment.data, experiment.train)
    check_lr_steps(experiment.train)
    check_best_metric(experiment)
    check_backend(experiment.train)
    check_wandb_project(experiment.log)


PLAIN_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9._-]{0,254}")  # POSIX's portable file name characters


def check_name(name):
    """The run's name is one plain directory name: never a path, so the run stays inside log.work_dir."""
    if not isinstance(name, str) or not PLAIN_NAME.fullmatch(name):
        raise ConfigError(f"name={name!r}: expected a plain file name of up to 255 letters, digits, '.', '_' and '-', "
                          "not starting with '.' or '-' (it names the run directory inside log.work_dir)")


def sectioned_settings(experiment):
    """(key, value, dataclasses.Field) of every setting in a section: ("train.lr", 0.1, Train's field lr), …"""
    for section in dataclasses.fields(Experiment):
        if section.name != "name":
            values = getattr(experiment, section.name)
            yield from ((f"{section.name}.{f.name}", getattr(values, f.name), f) for f in dataclasses.fields(values))


def check_field(key, value, f):
    """One setting against its annotation (type, range or a Literal's values)."""
    wrong = mismatch(value, f.type)
    if wrong:
        raise ConfigError(f"{key}={value!r}: {wrong}" + did_you_mean(value, wrong.choices))


def check_components(experiment):
    """Each setting naming registered components: the names, their keywords, and each entry's own `check`
    against the other settings (registry.py), once every setting has its type and range."""
    for key, value, f in sectioned_settings(experiment):
        if "registry" in f.metadata:
            check_registered(key, value, f.metadata["registry"], experiment)


def check_registered(key, value, registry_name, experiment=None):
    from arcface_keras import registry

    specs = value if isinstance(value, list) else [value]
    for spec in specs:
        try:
            getattr(registry, registry_name).check(spec, experiment)
        except (KeyError, TypeError, ValueError) as exc:
            raise ConfigError(f"{key}: {exc.args[0]}") from None


def did_you_mean(value, choices):
    close = closest(value, choices) if choices else None
    return f" (did you mean {close!r}?)" if close else ""


def check_data(data, check_paths, pretrained=""):
    """Where the images come from: exactly one of data.train and data.synthetic, paths that exist (the
    pretrained backbone's too), a TFRecord folder of 2+ classes, verification sets, augmentations that build."""
    if data.train and data.synthetic:
        raise ConfigError(f"data.train={data.train!r} and data.synthetic are both set: train on one of them "
                          "(--set data.train= or --set data.synthetic={})")
    if not data.train and not data.synthetic and check_paths:
        raise ConfigError("data.train is empty: give a TFRecord folder, an identity folder, a .rec file "
                          "or data.synthetic")
    if data.synthetic:
        synthetic_settings(data)
    check_val_sets(data, check_paths)
    if check_paths:
        named_paths = ([("data.train", data.train)] if data.train else []) + [
            (f"data.val.{name}", path) for name, path in data.val.items()] + (
            [("model.pretrained", pretrained)] if pretrained else [])
        for key, path in named_paths:
            if not Path(path).expanduser().exists():
                raise MissingPathError(f"{key}={path!r}: no such file or directory")
        if data.train and (Path(data.train).expanduser() / MANIFEST).is_file():
            check_label_space(f"data.train={data.train!r}", Path(data.train).expanduser())
        check_writable_folder("data.cache_dir", data.cache_dir)
    from arcface_keras.registry import AUGMENTATIONS

    try:  # each one built (its options checked), not the pipeline: nothing may start TensorFlow's runtime
        [AUGMENTATIONS.build(spec) for spec in data.augment]  # before a multi-worker strategy is made
    except (KeyError, TypeError, ValueError) as exc:
        raise ConfigError(f"data.augment: {exc.args[0]}") from None


def check_val_sets(data, check_paths):
    """Each of data.val names a path, and not the held-out synthetic set's name; a folder holds a pairs.txt."""
    for name, path in data.val.items():
        if not path.strip():
            raise ConfigError(f"data.val.{name}='': expected a .bin, a {PAIRS_TXT} or a folder holding one")
        if name == SYNTHETIC_SET and data.synthetic:
            raise ConfigError(f"data.val.{name}={path!r}: expected another name, '{name}' names the held-out "
                              "identities of data.synthetic")
        folder = Path(path).expanduser()
        if check_paths and folder.is_dir() and not (folder / PAIRS_TXT).is_file():
            raise ConfigError(f"data.val.{name}={path!r}: a folder without {PAIRS_TXT}: expected a .bin, a "
                              f"{PAIRS_TXT} or a folder holding one (tools/make_pairs.py makes it)")


def check_writable_folder(key, path, inside=""):
    """A folder that exists or can be made (its nearest existing parent is a folder) and that this user can write;
    `inside`: a folder within it that must be so too (log.work_dir's run directory, which may exist already)."""
    path = Path(path).expanduser()
    existing = next(p for p in [path / inside, *(path / inside).parents] if p.exists())
    if not existing.is_dir():
        raise ConfigError(f"{key}={str(path)!r}: expected a folder, and {existing} is a file")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise ConfigError(f"{key}={str(path)!r}: expected a folder this user can write, and {existing} is read-only")


def synthetic_settings(data):
    """The `Synthetic` set that `data.synthetic` asks for, each key checked like a setting."""
    fields = {f.name: f for f in dataclasses.fields(Synthetic)}
    for key, value in data.synthetic.items():
        if key not in fields:
            raise ConfigError(f"data.synthetic: unknown key {key!r}{did_you_mean(key, list(fields))}; "
                              f"valid: {', '.join(fields)}")
        check_field(f"data.synthetic.{key}", value, fields[key])
    settings = Synthetic(**data.synthetic)
    check_pair_capacity(settings)
    return settings


def check_pair_capacity(s):
    """Each of the FOLDS folds of held-out identities can give val_pairs / (2 FOLDS) distinct pairs of each kind."""
    per_fold, wanted = s.val_identities // FOLDS, s.val_pairs // (2 * FOLDS)
    same = per_fold * math.comb(s.val_images, 2)
    different = math.comb(per_fold, 2) * s.val_images ** 2
    if wanted > min(same, different):
        kind, have = ("same", same) if same < wanted else ("different", different)
        raise ConfigError(f"data.synthetic: val_pairs={s.val_pairs} needs {wanted} {kind}-identity pairs per fold; "
                          f"{per_fold} identities x {s.val_images} images per fold give {have} (raise val_identities "
                          "or val_images, or lower val_pairs)")


def check_label_space(key, folder):
    """A TFRecord folder's manifest (read alone, cheaply): 2+ classes, and the largest label, where the
    converter recorded it, below num_classes. Returns the manifest."""
    path = Path(folder) / MANIFEST
    try:
        manifest = json.loads(path.read_text())
        classes, top = manifest["num_classes"], manifest.get("max_label")
    except (OSError, ValueError, TypeError, KeyError) as exc:
        raise ConfigError(f"{key}: {path} is not a readable manifest ({type(exc).__name__}: {exc})") from None
    if not isinstance(classes, int) or classes < MIN_CLASSES:
        raise ConfigError(f"{key}: {path} holds {classes} class(es); training needs at least {MIN_CLASSES} identities")
    if isinstance(top, int) and top >= classes:
        raise ConfigError(f"{key}: {path} has labels up to {top}, not below its num_classes={classes}; "
                          "make the set again with tools/make_tfrecord.py")
    return manifest


def check_sampler(data, train):
    """The "pk" sampler fills each replica's batch with whole groups of K images of one identity, which
    synthetic identities (whose images are counted in the settings) must have."""
    if data.sampler != "pk":
        return
    if train.batch_size % data.images_per_identity:
        raise ConfigError(f"data.sampler='pk': train.batch_size={train.batch_size} is not a multiple of "
                          f"data.images_per_identity={data.images_per_identity}")
    images = Synthetic(**data.synthetic).images if data.synthetic else None
    if images is not None and data.images_per_identity > images:
        raise ConfigError(f"data.sampler='pk': data.images_per_identity={data.images_per_identity} with "
                          f"data.synthetic.images={images}: expected at most {images} (a group of K images of one "
                          "identity would repeat images)")


def check_lr_steps(train):
    """The "step" schedule's epochs rise, and each comes before the end of training."""
    steps = train.lr_steps
    if any(b <= a for a, b in zip(steps, steps[1:])) or any(step >= train.epochs for step in steps):
        raise ConfigError(f"train.lr_steps={steps}: expected increasing epochs below train.epochs={train.epochs}")


def check_best_metric(experiment):
    """eval.best_metric names a verification set of this experiment and a metric where higher is better."""
    from arcface_keras.evaluation.verification import BEST_METRICS

    metric = experiment.eval.best_metric
    if not metric:
        return
    sets = sorted(experiment.data.val) + ([SYNTHETIC_SET] if experiment.data.synthetic else [])
    valid = [f"{name}/{key}" for name in sets for key in BEST_METRICS]
    if metric not in valid:
        raise ConfigError(f"eval.best_metric={metric!r}: expected one of {', '.join(valid) or '(no verification set)'}"
                          + did_you_mean(metric, valid))
    if not experiment.eval.every_steps:
        raise ConfigError(f"eval.best_metric={metric!r} with eval.every_steps=0: expected eval.every_steps >= 1 (the "
                          "best weights are chosen among the verifications during training)")


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


def check_wandb_project(log):
    """A project name W&B accepts (its own rule: up to 128 characters, none of / \\ # ? % :), unless W&B is off."""
    if log.wandb == "disabled":
        return
    import wandb

    try:
        wandb.Settings(project=log.wandb_project)
    except (wandb.errors.UsageError, ValueError) as exc:
        raise ConfigError(f"log.wandb_project={log.wandb_project!r}: expected a name W&B accepts "
                          f"({str(exc).splitlines()[0]})") from None
