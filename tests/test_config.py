import json

import pytest

from arcface_keras.config import ConfigError, Experiment, apply_overrides, dump, from_dict, load_experiment

DEMO = "experiments/demo_synth_mfn_arc.py"


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
