import json
import subprocess
import sys

import pytest

from arcface_keras.config import (ConfigError, Data, Experiment, Train, apply_overrides, dump, from_dict,
                                  load_experiment, validate)

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
    ("model.head.margin=0.3", r"model.head: head 'arcface' got unknown keyword 'margin'"),
    ("data.augment=['flip', 'blurr']", r"data.augment: unknown augmentation 'blurr'"),
    ("data.augment=[{'type': 'flip', 'p': 2}]", r"data.augment: augmentation Flip: p=2, expected a probability"),
    ("data.synthetic.identitys=3", r"data.synthetic: unknown key 'identitys'"),
    ("data.train=/somewhere", r"data.train='/somewhere' and data.synthetic are both set"),
    ("data.synthetic={}", r"data.train is empty"),
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
    experiment = load_experiment(repo_root / DEMO, ["data.synthetic.val_pairs=20", "data.val.extra.x=1",
                                                    "model.head.s=30"], check_paths=False)
    assert experiment.data.synthetic["val_pairs"] == 20 and experiment.data.synthetic["identities"] == 200
    assert experiment.data.val == {"extra": {"x": 1}} and experiment.model.head["s"] == 30
    with pytest.raises(ConfigError, match=r"train.epochs is not a dict"):
        load_experiment(repo_root / DEMO, ["train.epochs.x=1"])
    assert load_experiment(repo_root / DEMO, ["data.augment="]).data.augment == []


def test_a_bad_setting_writes_nothing(repo_root, tmp_path):
    proc = subprocess.run([sys.executable, "tools/run.py", DEMO, "--set", "data.synthetic={}", "--set",
                           "data.train=/no/such/dir", "--set", f"log.work_dir={tmp_path}"],
                          cwd=repo_root, capture_output=True, text=True, timeout=300)
    assert proc.returncode != 0 and proc.stdout == ""
    assert proc.stderr.strip() == ("error: data.train='/no/such/dir': no such file or directory; prepare the data "
                                   "first, or point the setting elsewhere with --set")
    assert list(tmp_path.iterdir()) == []
