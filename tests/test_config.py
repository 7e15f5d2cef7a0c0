import copy
import dataclasses
import json
import math
import os
import typing
from pathlib import Path

import pytest
from annotated_types import Ge, GroupedMetadata, Gt, Le, Lt, MultipleOf

from arcface_keras import registry, sweep
from arcface_keras.config import (ConfigError, Data, Experiment, Synthetic, Train, apply_overrides, dump, from_dict,
                                  load_experiment, validate)

DEMO = "experiments/demo_synth_mfn_arc.py"
ROOT = Path(__file__).resolve().parent.parent


def test_overrides_are_coerced_to_field_types(repo_root):
    experiment = load_experiment(repo_root / DEMO, ["train.epochs=1", "train.lr=0.05", "train.jit_compile=true",
                                                    "data.augment=['flip']", "model.backbone.width=0.25",
                                                    "model.head=cosface", "name=other"])
    assert experiment.train.epochs == 1 and isinstance(experiment.train.epochs, int)
    assert experiment.train.lr == 0.05
    assert experiment.train.jit_compile is True
    assert experiment.data.augment == ["flip"]
    assert experiment.model.backbone["width"] == 0.25 and experiment.model.backbone["type"] == "mobilefacenet"
    assert experiment.model.head == "cosface"
    assert experiment.name == "other"


def test_override_does_not_touch_the_original():
    base = Experiment()
    changed = apply_overrides(base, ["train.epochs=9"])
    assert base.train.epochs == 1 and changed.train.epochs == 9


@pytest.mark.parametrize("override, message", [
    ("train.epoch=1", r"unknown key of train 'train.epoch' \(did you mean train.epochs\?\)"),
    ("trian.epochs=1", r"unknown section 'trian'"),
    ("train.epochs=one", r"train.epochs='one': expected int"),
    ("train.jit_compile=maybe", "expected true or false"),
    ("train.epochs", "expected section.key=value"),
])
def test_bad_overrides_fail_naming_the_key(override, message):
    with pytest.raises(ConfigError, match=message):
        apply_overrides(Experiment(), [override])


def test_dump_round_trips(tmp_path):
    experiment = apply_overrides(Experiment(), ["train.lr=0.3", "model.head.s=30"])
    dump(experiment, tmp_path / "config.json")
    assert from_dict(json.loads((tmp_path / "config.json").read_text())) == experiment


def test_experiment_file_errors(tmp_path):
    with pytest.raises(ConfigError, match="no such experiment file"):
        load_experiment(tmp_path / "missing.py")
    bad = tmp_path / "bad.py"
    bad.write_text("x = 1\n")
    with pytest.raises(ConfigError, match="expected a variable `experiment`"):
        load_experiment(bad)


# ---------------------------------------------------------------- validation at load


@pytest.mark.parametrize("override, message", [
    ("train.optimizer=sdg", r"train.optimizer: unknown optimizer 'sdg'; did you mean 'sgd'\? registered: adamw, sgd"),
    ("train.lr_schedule=cosin", r"train.lr_schedule: unknown lr_schedule 'cosin'; did you mean 'cosine'\?"),
    ("train.lr_scaling=lineer", r"train.lr_scaling='lineer': expected one of 'linear', 'sqrt', 'none' "
                                r"\(did you mean 'linear'\?\)"),
    ("data.sampler=pkk", r"data.sampler='pkk': expected one of 'random', 'pk'"),
    ("train.strategy=horovod", r"train.strategy='horovod': expected one of 'auto', 'mirrored'"),
    ("train.precision=fp16", r"train.precision='fp16': expected one of"),
    ("log.wandb=offlne", r"log.wandb='offlne': expected one of .* \(did you mean 'offline'\?\)"),
    ("eval.best_metric=synthetic/acuracy", r"eval.best_metric='synthetic/acuracy': expected one of "
                                           r"synthetic/accuracy, .* \(did you mean 'synthetic/accuracy'\?\)"),
    ("eval.best_metric=lfw/accuracy", r"eval.best_metric='lfw/accuracy': expected one of synthetic/accuracy"),
    ("eval.best_metric=synthetic/accuracy", r"^eval.best_metric='synthetic/accuracy' with eval.every_steps=0: expected "
                                            r"eval.every_steps >= 1"),
    ("model.head.margin=0.3", r"model.head: head 'arcface' got unknown keyword 'margin'"),
    ("data.augment=['flip', 'blurr']", r"data.augment: unknown augmentation 'blurr'"),
    ("data.augment=[{'type': 'flip', 'p': 2}]", r"data.augment: augmentation 'flip' got p=2: expected float in "
                                                r"\[0, 1\] \(a probability\)"),
    ("data.synthetic.identitys=3", r"data.synthetic: unknown key 'identitys'"),
    ("data.train=/somewhere", r"data.train='/somewhere' and data.synthetic are both set"),
    ("data.synthetic={}", r"data.train is empty"),
    ("data.val.synthetic=/x/pairs.txt", r"^data.val.synthetic='/x/pairs.txt': expected another name, 'synthetic' names "
                                        r"the held-out identities of data.synthetic$"),
    ("data.val.lfw=", r"^data.val.lfw='': expected a .bin, a pairs.txt or a folder holding one$"),
    (f"data.val.lfw={ROOT / 'docs'}", r"^data.val.lfw='.*docs': a folder without pairs.txt: expected a .bin, a "
                                      r"pairs.txt or a folder holding one \(tools/make_pairs.py makes it\)$"),
    ("log.wandb_project=team/faces", r"^log.wandb_project='team/faces': expected a name W&B accepts \(Invalid project "
                                     r"name 'team/faces': cannot contain characters"),
])
def test_every_named_choice_is_checked_at_load(repo_root, override, message):
    with pytest.raises(ConfigError, match=message) as err:
        load_experiment(repo_root / DEMO, [override])
    assert "\n" not in str(err.value)


def test_pk_batches_hold_whole_groups_of_k(repo_root):
    with pytest.raises(ConfigError, match=r"data.sampler='pk': train.batch_size=64 is not a multiple of "
                                          r"data.images_per_identity=3"):
        load_experiment(repo_root / DEMO, ["data.sampler=pk", "data.images_per_identity=3"])
    assert load_experiment(repo_root / DEMO, ["data.sampler=pk", "data.images_per_identity=4"]).data.sampler == "pk"


def test_class_centres_split_over_devices_stay_in_one_process(repo_root):
    with pytest.raises(ConfigError, match=r"train.model_parallel=2 with train.strategy='multi_worker': class centres "
                                          r"are split over the devices of one process only"):
        load_experiment(repo_root / DEMO, ["train.strategy=multi_worker", "train.model_parallel=2"])
    assert load_experiment(repo_root / DEMO, ["train.strategy=multi_worker"]).train.strategy == "multi_worker"


def test_a_type_set_in_the_file_itself_is_checked():
    with pytest.raises(ConfigError, match=r"train.epochs='3': expected int, got str"):
        validate(Experiment(data=Data(synthetic={"identities": 4}), train=Train(epochs="3")))
    with pytest.raises(ConfigError, match=r"train.lr=True: expected float, got bool"):
        validate(Experiment(data=Data(synthetic={"identities": 4}), train=Train(lr=True)))


def test_missing_data_paths_are_named_with_how_to_prepare_them(repo_root, tmp_path):
    with pytest.raises(ConfigError, match=r"data.train='.*ms1m_kface': no such file or directory; prepare the data "
                                          r"first with the commands in the docstring of .*kface_arc_r50.py"):
        load_experiment(repo_root / "experiments/kface_arc_r50.py")
    (tmp_path / "shards").mkdir()
    with pytest.raises(ConfigError, match=r"data.val.lfw='.*lfw.bin': no such file or directory"):
        load_experiment(repo_root / "experiments/kface_arc_r50.py", [f"data.train={tmp_path / 'shards'}"])
    settings = load_experiment(repo_root / "experiments/kface_arc_r50.py", check_paths=False)
    assert settings.data.train.endswith("ms1m_kface")


def test_nested_keys_work_in_every_dict_field(repo_root):
    experiment = load_experiment(repo_root / DEMO, ["data.synthetic.val_pairs=20", "data.val.extra=/x/pairs.txt",
                                                    "model.head.s=30"], check_paths=False)
    assert experiment.data.synthetic["val_pairs"] == 20 and experiment.data.synthetic["identities"] == 200
    assert experiment.data.val == {"extra": "/x/pairs.txt"} and experiment.model.head["s"] == 30
    with pytest.raises(ConfigError, match=r"train.epochs is not a dict"):
        load_experiment(repo_root / DEMO, ["train.epochs.x=1"])
    assert load_experiment(repo_root / DEMO, ["data.augment="]).data.augment == []


def run_tool_exit(argv, capsys):
    """tools/run.py's main called as its command line calls it: the message it exits with, after checking that
    nothing was printed before. sys.exit(message) makes the message the process's one stderr line and its
    exit status 1 (tests/test_quiet_tools.py checks that a tool's start adds nothing to stderr)."""
    from tools import run as run_tool

    with pytest.raises(SystemExit) as exit_info:
        run_tool.main(argv)
    assert capsys.readouterr() == ("", "")
    assert isinstance(exit_info.value.code, str)
    return exit_info.value.code


def test_a_bad_setting_writes_nothing(tmp_path, capsys):
    message = run_tool_exit([str(ROOT / DEMO), "--set", "data.synthetic={}", "--set", "data.train=/no/such/dir",
                             "--set", f"log.work_dir={tmp_path}"], capsys)
    assert message == ("error: data.train='/no/such/dir': no such file or directory; prepare the data "
                       "first, or point the setting elsewhere with --set")
    assert list(tmp_path.iterdir()) == []


# ---------------------------------------------------------------- every setting has its type and range
# The settings are read from the dataclasses (and their annotations), never listed by hand: a new
# setting gets these checks, and a number without a declared range fails them.

STRING_RULES = {  # what is out of range for a text setting
    "name": "../escape", "data.train": "/no/such/folder", "model.pretrained": "/no/such.keras",
    "eval.best_metric": "nowhere/accuracy", "data.val": {"lfw": "/no/such/lfw.bin"}, "data.synthetic": {"idents": 3},
    "log.wandb_project": "a" * 129, "data.cache_dir": str(ROOT / "README.md" / "cache"),
    "log.work_dir": str(ROOT / "README.md" / "runs"),
}
ENGINE_SUPPLIED = set(registry.BACKBONES.supplied) | set(registry.HEADS.supplied)  # refused in a spec (tested below)


def settings():
    """(key, annotation, registry or None) of every setting: each section's fields, the name, data.synthetic's keys."""
    for section in dataclasses.fields(Experiment):
        if not dataclasses.is_dataclass(section.type):
            yield section.name, section.type, None
            continue
        for f in dataclasses.fields(section.type):
            yield f"{section.name}.{f.name}", f.type, f.metadata.get("registry")
    for f in dataclasses.fields(Synthetic):
        yield f"data.synthetic.{f.name}", f.type, None


def parts(annotation):
    """(base type, bounds) of an annotation; Optional[...] is read as its non-None type."""
    args = [a for a in typing.get_args(annotation) if a is not type(None)]
    if typing.get_origin(annotation) is typing.Union and len(args) == 1:
        return parts(args[0])
    if typing.get_origin(annotation) is typing.Annotated:
        metadata = [m for entry in args[1:] for m in (entry if isinstance(entry, GroupedMetadata) else [entry])]
        return args[0], [m for m in metadata if isinstance(m, (Ge, Gt, Le, Lt, MultipleOf))]
    return annotation, []


def allowed_types(annotation):
    base, _ = parts(annotation)
    origin, args = typing.get_origin(base), typing.get_args(base)
    if origin is typing.Union:
        return {t for a in args for t in allowed_types(a)}
    if origin is typing.Literal:
        return {type(c) for c in args}
    if base is float:
        return {int, float}
    return {origin or base}


def wrong_typed(annotation):
    return next(v for v in ["text", 2.5, [1], {"k": 1}] if type(v) not in allowed_types(annotation))


def valid_numbers(annotation):
    """Two increasing values inside the bounds of a numeric annotation."""
    _, bounds = parts(annotation)
    low = max([b.ge for b in bounds if isinstance(b, Ge)] + [b.gt + 1e-3 for b in bounds if isinstance(b, Gt)] + [0])
    high = min([b.le for b in bounds if isinstance(b, Le)] + [b.lt - 1e-3 for b in bounds if isinstance(b, Lt)]
               + [low + 2])
    return low, (low + high) / 2


def out_of_range(annotation):
    """Values just outside each bound of a number (NaN and infinity for a float), or of a list's items."""
    base, bounds = parts(annotation)
    origin, args = typing.get_origin(base), typing.get_args(base)
    if origin is list:
        return [[value] for value in out_of_range(args[0])]
    if origin is tuple:  # a (min, max) pair: an item out of range, and min > max
        low, middle = valid_numbers(args[0])
        return [(value, middle) for value in out_of_range(args[0])] + [(middle, low)]
    step = 1 if base is int else 0.5
    values = [b.ge - step for b in bounds if isinstance(b, Ge)] + [b.gt for b in bounds if isinstance(b, Gt)]
    values += [b.le + step for b in bounds if isinstance(b, Le)] + [b.lt for b in bounds if isinstance(b, Lt)]
    values += [b.multiple_of * 2 + 1 for b in bounds if isinstance(b, MultipleOf)]
    return values + ([math.nan, math.inf] if base is float else [])


def is_number(annotation):
    base, _ = parts(annotation)
    origin = typing.get_origin(base)
    return base in (int, float) or (origin in (list, tuple) and is_number(typing.get_args(base)[0]))


def bad_values(key, annotation, registry_name):
    """Out-of-range values of a setting; a test failure for a setting whose range is not declared."""
    if registry_name:
        return ["no_such_component"] if registry_name != "AUGMENTATIONS" else [["no_such_component"]]
    if key in STRING_RULES:
        return [STRING_RULES[key]]
    base, _ = parts(annotation)
    if typing.get_origin(base) is typing.Union or typing.get_origin(base) is typing.Literal:
        return ["no-such-choice"]
    if is_number(annotation):
        values = out_of_range(annotation)
        assert values, f"{key}: a number without a declared range"
        return values
    assert base is bool, f"{key}: no rule for what is out of range"
    return []


def with_value(experiment, key, value):
    experiment = copy.deepcopy(experiment)
    *path, last = key.split(".")
    if path[-2:] == ["data", "synthetic"]:
        experiment.data.synthetic[last] = value
    else:
        setattr(getattr(experiment, path[0]) if path else experiment, last, value)
    return experiment


@pytest.fixture(scope="module")
def demo():
    return load_experiment(ROOT / DEMO)


def refused_in_one_line(experiment, key):
    with pytest.raises(ConfigError) as err:
        validate(experiment)
    message = str(err.value)
    assert key.split(".")[-1] in message and "\n" not in message, message
    return message


@pytest.mark.parametrize("key, annotation, registry_name", [pytest.param(*s, id=s[0]) for s in settings()])
def test_every_setting_refuses_a_wrong_type_and_an_out_of_range_value(demo, key, annotation, registry_name):
    for value in [wrong_typed(annotation), *bad_values(key, annotation, registry_name)]:
        refused_in_one_line(with_value(demo, key, value), key)
    if is_number(annotation) and "." in key:  # as typed on the command line, too
        for value in out_of_range(annotation):
            with pytest.raises(ConfigError, match=key.replace(".", r"\.")):
                validate(apply_overrides(demo, [f"{key}={value}"]))


def component_keywords():
    """(setting, registered name, keyword, annotation) of every keyword of every shipped head, backbone and augmentation."""
    for key, registry_name in (("model.head", "HEADS"), ("model.backbone", "BACKBONES"), ("data.augment", "AUGMENTATIONS")):
        entries = getattr(registry, registry_name)
        for name in entries.names():
            for keyword, annotation in registry.keyword_annotations(entries.get(name)).items():
                if keyword not in ENGINE_SUPPLIED:
                    yield key, name, keyword, annotation


def test_every_component_keyword_is_typed_ranged_and_checked_at_load(demo):
    seen = 0
    for key, name, keyword, annotation in component_keywords():
        assert annotation is not typing.Any, f"{name}: keyword {keyword!r} has no annotation"
        if is_number(annotation):
            assert out_of_range(annotation), f"{name}: keyword {keyword!r} has no declared range"
        for value in [wrong_typed(annotation), *(out_of_range(annotation) if is_number(annotation) else [])]:
            spec = {"type": name, keyword: value}
            message = refused_in_one_line(with_value(demo, key, [spec] if key == "data.augment" else spec), key)
            assert keyword in message or "(min, max)" in message, message
            seen += 1
    assert seen > 100  # every head, backbone and augmentation was walked


def test_a_bad_head_keyword_fails_check_in_one_line_and_writes_nothing(demo, tmp_path, capsys):
    message = refused_in_one_line(with_value(demo, "model.head", {**demo.model.head, "m": "abc"}), "model.head")
    exit_message = run_tool_exit([str(ROOT / DEMO), "--check", "--set", "model.head.m=abc",
                                  "--set", f"log.work_dir={tmp_path / 'runs'}"], capsys)
    assert exit_message == f"error: {message}" == "error: model.head: head 'arcface' got m='abc': expected float, got str"
    assert list(tmp_path.iterdir()) == []


def test_a_work_dir_or_run_directory_that_is_a_file_or_read_only_is_refused_at_load(demo, tmp_path):
    a_file = tmp_path / "runs"
    a_file.write_text("not a folder")
    message = refused_in_one_line(with_value(demo, "log.work_dir", str(a_file)), "log.work_dir")
    assert message == f"log.work_dir={str(a_file)!r}: expected a folder, and {a_file} is a file"
    (tmp_path / "work").mkdir()
    (tmp_path / "work" / demo.name).write_text("the run directory's name taken by a file")
    message = refused_in_one_line(with_value(demo, "log.work_dir", str(tmp_path / "work")), "log.work_dir")
    assert message.endswith(f"and {tmp_path / 'work' / demo.name} is a file")
    if os.geteuid() != 0:  # root writes wherever the permissions say
        (tmp_path / "read-only").mkdir(mode=0o555)
        message = refused_in_one_line(with_value(demo, "log.work_dir", str(tmp_path / "read-only" / "runs")),
                                      "log.work_dir")
        assert message.endswith(f"can write, and {tmp_path / 'read-only'} is read-only")


def test_the_run_name_is_a_plain_file_name(demo):
    for name in ["../../escape", "a/b", "..", ".", "", ".hidden", "-rf", "tab\tname", "caf\u00e9", "x" * 256]:
        message = refused_in_one_line(with_value(demo, "name", name), "name")
        assert message.startswith(f"name={name!r}: expected a plain file name")
    for name in ["demo_synth_mfn_arc", "r50.v2", "A-1", "x" * 255,
                 sweep.agent_run_name("demo", {"WANDB_SWEEP_ID": "s", "WANDB_RUN_ID": "k3x9q2ab"})]:
        validate(with_value(demo, "name", name))


def test_a_nested_override_into_a_number_names_the_key_and_the_value(demo):
    with pytest.raises(ConfigError, match=r"^override data.synthetic.identities.x='3': data.synthetic.identities "
                                          r"is not a dict \(it is 200\)$"):
        apply_overrides(demo, ["data.synthetic.identities.x=3"])
    with pytest.raises(ConfigError, match=r"data.train is not a dict \(it is ''\)"):
        apply_overrides(demo, ["data.train.x=3"])


def test_held_out_synthetic_identities_give_the_pairs_asked_for(demo, tmp_path):
    """The load-time check agrees with the pair generator at the edge: 20 identities x 2 images give 2 same
    pairs per fold, so 40 pairs are drawn and 60 are refused by both."""
    from arcface_keras.data.synthetic import write_identities
    from arcface_keras.data.verification import make_pairs

    held_out = {"val_identities": 20, "val_images": 2}
    write_identities(tmp_path, 20, 2)
    validate(with_value(demo, "data.synthetic", {**demo.data.synthetic, **held_out, "val_pairs": 40}))
    assert sum(p.issame for fold in make_pairs(tmp_path, num_pairs=40) for p in fold) == 20
    with pytest.raises(ConfigError, match=r"data.synthetic: val_pairs=60 needs 3 same-identity pairs per fold; 2 "
                                          r"identities x 2 images per fold give 2"):
        validate(with_value(demo, "data.synthetic", {**demo.data.synthetic, **held_out, "val_pairs": 60}))
    with pytest.raises(ValueError, match="only 2 distinct pairs exist, 3 requested"):
        make_pairs(tmp_path, num_pairs=60)
    refused_in_one_line(with_value(demo, "data.synthetic", {**demo.data.synthetic, "val_identities": 19}), "val_identities")


# ---------------------------------------------------------------- what the engine fills in, nested specs, constraints


def supplied_keywords():
    """(setting, registered name, keyword, where it comes from) of every shipped entry taking a keyword the engine
    fills in (training/model.build_face_model gives a backbone its input shape and embedding size, a head its classes)."""
    for key, entries in (("model.backbone", registry.BACKBONES), ("model.head", registry.HEADS)):
        for name in entries.names():
            for keyword in set(entries.supplied) & set(registry.accepted_keywords(entries.get(name))):
                yield key, name, keyword, entries.supplied[keyword]


def test_keywords_the_engine_fills_in_are_refused_naming_the_setting_to_use(demo):
    walked = set()
    for key, name, keyword, source in supplied_keywords():
        value = (56, 56, 3) if keyword == "input_shape" else 64
        message = refused_in_one_line(with_value(demo, key, {"type": name, keyword: value}), key)
        assert message == (f"{key}: {key.split('.')[1]} {name!r} got {keyword}={value!r}: expected no {keyword}, "
                           f"the engine sets it from {source}")
        walked.add(keyword)
    assert walked == {"input_shape", "embedding_size", "num_classes"}
    assert "model.embedding_size (set that instead)" in refused_in_one_line(
        apply_overrides(demo, ["model.backbone.embedding_size=64"]), "model.backbone")


@pytest.mark.parametrize("base, message", [
    ("nosuch", r"head 'center' got base='nosuch': unknown head 'nosuch'; registered: adaface, .*"),
    ({"type": "arcface", "m": 5}, r"head 'center' got base=\{.*\}: head 'arcface' got m=5: expected float in \[0, "),
    ({"type": "softmax", "num_classes": 3}, r"head 'center' got base=\{.*\}: head 'softmax' got num_classes=3: "
                                            r"expected no num_classes, the engine sets it from the training data"),
    ({"type": "center", "base": {"type": "cosface", "margin": 0.2}}, r"head 'center' got base=.*: head 'center' got "
                                                                     r"base=.*: head 'cosface' got unknown keyword"),
    ("triplet", r"head 'center' got base='triplet': head 'triplet' with data.sampler='random': expected data.sampler"),
])
def test_the_center_heads_base_is_checked_as_a_head(demo, base, message):
    with pytest.raises(ConfigError, match=r"^model.head: " + message) as err:
        validate(with_value(demo, "model.head", {"type": "center", "base": base}))
    assert "\n" not in str(err.value)


def test_a_center_head_inside_a_center_head_is_accepted(demo):
    """Each adds its own centres and loss (a training step of one is in test_heads)."""
    validate(with_value(demo, "model.head", {"type": "center", "base": {"type": "center", "base": "arcface"}}))


@pytest.mark.parametrize("overrides, message", [
    (["model.backbone={'type': 'resnet18', 'output': 'GDC', 'dropout': 0.2}"],
     r"^model.backbone: backbone 'resnet18' got dropout=0.2 with output='GDC': expected dropout=0 with output 'GDC'"),
    (["data.augment=[{'type': 'gaussian_blur', 'kernel_size': 113}]"],
     r"^data.augment: augmentation 'gaussian_blur' got kernel_size=113 with data.image_size=56: expected "
     r"kernel_size < 112 \(its mirrored border must be narrower than the image\)$"),
    (["model.head={'type': 'triplet', 'squared': False, 'margin': 2.5}", "data.sampler=pk"],
     r"^model.head: head 'triplet' got margin=2.5 with squared=False: expected margin in \[0, 2\] \(plain distances"),
    (["model.head=triplet"], r"^model.head: head 'triplet' with data.sampler='random': expected data.sampler='pk'"),
    (["model.head=triplet", "data.sampler=pk", "data.images_per_identity=16", "train.batch_size=16"],
     r"^model.head: head 'triplet' with train.batch_size=16 and data.images_per_identity=16: expected a batch of 2 "
     r"identities or more \(batch_size >= 32\)"),
    (["data.sampler=pk", "data.images_per_identity=32", "data.synthetic.images=16"],
     r"^data.sampler='pk': data.images_per_identity=32 with data.synthetic.images=16: expected at most 16"),
])
def test_constraints_between_keywords_and_settings_are_checked_at_load(repo_root, overrides, message):
    with pytest.raises(ConfigError, match=message) as err:
        load_experiment(repo_root / DEMO, overrides)
    assert "\n" not in str(err.value)


@pytest.mark.parametrize("overrides", [
    ["model.backbone={'type': 'resnet18', 'output': 'E', 'dropout': 0.2}"],
    ["data.augment=[{'type': 'gaussian_blur', 'kernel_size': 111}]"],
    ["model.head={'type': 'triplet', 'squared': False, 'margin': 2.0}", "data.sampler=pk"],
    ["model.head={'type': 'triplet', 'margin': 4.0}", "data.sampler=pk", "data.images_per_identity=16",
     "data.synthetic.images=16", "train.batch_size=32"],
])
def test_the_edges_of_those_constraints_are_accepted(repo_root, overrides):
    load_experiment(repo_root / DEMO, overrides)


# ---------------------------------------------------------------- values JSON cannot hold


@pytest.mark.parametrize("section, key, value, message", [
    ("data", "augment", lambda np: [{"type": "flip", "p": np.float32(0.5)}],
     r"^data.augment\[0\].p=np.float32\(0.5\): expected a value JSON can hold .*, got numpy.float32$"),
    ("model", "head", lambda np: {"type": "arcface", "m": {0.5}}, r"^model.head.m=\{0.5\}: expected .*, got set$"),
    ("data", "train", lambda np: Path("/x"), r"^data.train=PosixPath\('/x'\): expected .*, got pathlib.PosixPath$"),
    ("data", "val", lambda np: {1: "/x/pairs.txt"}, r"^data.val: key 1 \(int\): expected text keys$"),
])
def test_a_value_json_cannot_hold_is_refused_naming_its_key(section, key, value, message):
    import numpy as np

    experiment = Experiment(data=Data(synthetic={"identities": 4}))
    setattr(getattr(experiment, section), key, value(np))
    with pytest.raises(ConfigError, match=message):
        apply_overrides(experiment, [])


def test_tuples_become_lists_as_config_json_holds_them(tmp_path):
    spec = {"type": "color_jitter", "saturation": (0.5, 1.5)}
    experiment = apply_overrides(Experiment(data=Data(synthetic={"identities": 4}, augment=[spec])), [])
    assert experiment.data.augment == [{"type": "color_jitter", "saturation": [0.5, 1.5]}] and spec["saturation"] == (0.5, 1.5)
    validate(experiment)
    dump(experiment, tmp_path / "config.json")
    assert from_dict(json.loads((tmp_path / "config.json").read_text())) == experiment
    assert apply_overrides(experiment, ["model.head={'type': 'cosface', 'extra': (1, 2)}"]).model.head["extra"] == [1, 2]
