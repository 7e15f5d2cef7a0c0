"""A run is its settings: a rerun compares them with its run directory's before anything is written.

The run directory keeps the experiment as given (`config.json`) and what `auto` chose with the
replica count (`versions.json`). Both sides are compared resolved: `train.precision` and
`train.jit_compile` as chosen, the global batch through `replicas` (train.batch_size × replicas),
a backbone or head given by name as {"type": name}, dict settings key by key, a setting that a
config.json predates as its default. Then
  - the same settings: resume, or print the stored result of a finished run;
  - only `train.epochs` raised: train on;
  - anything else: refused in one line naming each key with its old and new value, unless the
    rerun allows it (tools/run.py --allow-changes): then the change (time, keys, old → new, the
    command) is appended to the run's `history.jsonl` and the run goes on with the new settings.
FREE keys change neither the trained weights nor the reported numbers and may differ freely:
`name` and `log.work_dir` (the directory itself: moved or renamed), the rest of `log.*` (where and
how often it reports), `data.cache_dir` (where the same prepared data is cached), `eval.batch_size`
(how many images are embedded at once), `train.save_steps` (how often a checkpoint is written)
and `train.strategy` (how the replicas are made; their number is compared).
"""
import json
import time
from pathlib import Path

from arcface_keras.config import Experiment
from arcface_keras.io import atomic_path
from arcface_keras.training.run_dir import RunError

FREE = {"name", "log.work_dir", "log.wandb", "log.wandb_project", "log.every_steps", "log.tensorboard",
        "data.cache_dir", "eval.batch_size", "train.save_steps", "train.strategy"}
SPECS = ("model.backbone", "model.head")  # a registered name or {"type": name, **keywords}
RESOLVED = {"train.precision": "precision", "train.jit_compile": "jit_compile", "replicas": "replicas"}
HISTORY = "history.jsonl"
NOT_SET = "(not set)"


class SettingsChanged(RunError):
    """A rerun whose settings differ from its run directory's."""


def resolved(settings, choice):
    """Dotted key → value for an experiment's `to_dict()`, with what `choice` ({"precision",
    "jit_compile", "replicas"}, as versions.json records them) resolved in."""
    flat = flatten(json.loads(json.dumps(settings)))
    for key, name in RESOLVED.items():
        if name in choice:
            flat[key] = choice[name]
    return flat


def flatten(settings, prefix=""):
    flat = {}
    for key, value in settings.items():
        name = prefix + key
        if name in SPECS and isinstance(value, str):
            value = {"type": value}
        if name == "data.augment":
            value = [{"type": v} if isinstance(v, str) else v for v in value]
        if isinstance(value, dict) and value:
            flat.update(flatten(value, name + "."))
        else:
            flat[name] = value
    return flat


def stored(run_dir):
    """(the run directory's resolved settings, the `choice` keys versions.json holds), or (None, {})
    for a new run: `auto` is resolved only where both sides can be."""
    config = Path(run_dir) / "config.json"
    if not config.is_file():
        return None, {}
    versions = Path(run_dir) / "versions.json"
    choice = json.loads(versions.read_text()) if versions.is_file() else {}
    choice = {name: choice[name] for name in RESOLVED.values() if name in choice}
    return resolved(with_defaults(json.loads(config.read_text())), choice), choice


def with_defaults(given):
    """A config.json written before a setting existed ran as its default does: fill the missing ones in."""
    defaults = Experiment().to_dict()
    return {name: {**defaults[name], **value} if isinstance(defaults.get(name), dict) else value
            for name, value in given.items()}


def differences(old, new):
    """{key: (old, new)} for every key whose value differs, FREE keys left out."""
    return {key: (old.get(key, NOT_SET), new.get(key, NOT_SET)) for key in sorted(set(old) | set(new))
            if key not in FREE and old.get(key, NOT_SET) != new.get(key, NOT_SET)}


def check_rerun(run_dir, settings, choice, allow_changes=False):
    """The changes this run makes to the settings of `run_dir` ({} for a new run or the same settings);
    raises SettingsChanged for anything but train.epochs raised, unless `allow_changes`."""
    old, old_choice = stored(run_dir)
    if old is None:
        return {}
    changes = differences(old, resolved(settings, {k: v for k, v in choice.items() if k in old_choice}))
    refused = {k: v for k, v in changes.items() if not (k == "train.epochs" and v[1] > v[0])}
    if refused and not allow_changes:
        said = ", ".join(f"{key} {show(a)} → {show(b)}" for key, (a, b) in refused.items())
        raise SettingsChanged(f"{run_dir} was trained with other settings: {said}; train under a new name "
                              f"(--set name=...) or continue this run with the new settings, recorded in its "
                              f"{HISTORY} (tools/run.py --allow-changes)")
    return changes


def show(value):
    return value if value == NOT_SET else json.dumps(value)


def record(run_dir, changes, command):
    """Append the change to the run's history.jsonl (rewritten whole under a temp name: never a half line)."""
    if not changes:
        return
    path = Path(run_dir) / HISTORY
    entry = {"time": time.strftime("%Y-%m-%d %H:%M:%S %z"), "command": command,
             "changes": {key: {"old": old, "new": new} for key, (old, new) in changes.items()}}
    before = path.read_text() if path.is_file() else ""
    with atomic_path(path) as tmp:
        tmp.write_text(before + json.dumps(entry, sort_keys=True) + "\n")
