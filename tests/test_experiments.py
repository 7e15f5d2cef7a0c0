"""Every experiment file loads, resolves and trains two steps through tools/run.py.

The file itself is what runs: only its data (tiny synthetic identities instead of the real sets),
its sizes (input, width, embedding, batch, steps) and its logging are overridden with --set.
The steps run eagerly: tracing a ResNet-50 training step costs minutes on a small CPU, and graph
mode is covered by the engine's own tests.
"""
import ast
import csv
import json
import math
import sys
from pathlib import Path

import keras
import pytest

from arcface_keras import backbones  # noqa: F401  (registers the backbones)
from arcface_keras.config import load_experiment
from arcface_keras.registry import BACKBONES, accepted_keywords, split_spec
from arcface_keras.training import auto

ROOT = Path(__file__).resolve().parent.parent
REFERENCE = {"kface_arc_r50", "casia_softmax_r34", "casia_center_r34", "casia_triplet_r34", "casia_arc_r34",
             "ms1m_arc_r50", "ms1m_arc_mfn", "ms1m_cos_r50", "demo_synth_mfn_arc"}
TINY_DATA = "{'identities': 6, 'images': 8, 'val_identities': 20, 'val_images': 3, 'val_pairs': 40, 'seed': 3}"


def defines_experiment(path):
    """An experiment file assigns `experiment` at top level (experiments/base.py and helpers do not)."""
    tree = ast.parse(path.read_text(), str(path))
    return any(isinstance(target, ast.Name) and target.id == "experiment"
               for node in tree.body if isinstance(node, (ast.Assign, ast.AnnAssign))
               for target in (node.targets if isinstance(node, ast.Assign) else [node.target]))


EXPERIMENTS = sorted(path for path in (ROOT / "experiments").glob("*.py") if defines_experiment(path))


def tiny_overrides(experiment, cache, work_dir):
    overrides = [
        f"data.synthetic={TINY_DATA}", "data.train=", "data.val={}", "data.image_size=32",
        "data.shuffle_buffer=64", f"data.cache_dir={cache}",
        "model.embedding_size=16", "train.epochs=1", "train.steps_per_epoch=2", "train.batch_size=8",
        "train.save_steps=0",
        "eval.every_steps=0", "eval.batch_size=64", "log.wandb=disabled", f"log.work_dir={work_dir}",
    ]
    name, _ = split_spec(experiment.model.backbone)
    if "width" in accepted_keywords(BACKBONES.get(name)):
        overrides.append("model.backbone.width=0.125")
    if experiment.model.pretrained:
        overrides.append(f"model.pretrained={tiny_pretrained(experiment.model.backbone, work_dir)}")
    if experiment.train.lr_steps:  # the file's steps lie beyond the one epoch trained here
        overrides.append("train.lr_steps=[0.5]")
    return overrides


def tiny_pretrained(backbone, work_dir):
    """A fine-tuning experiment's checkpoint at the test's sizes: random arcface_torch weights of the same
    depth or blocks and output (width 1/8, 16-d, 32x32 input) imported as the user would, with
    tools/import_weights.py (an ONNX file for MobileFaceNet, as insightface publishes it)."""
    sys.path.insert(0, str(ROOT / "tests"))
    from arcface_torch_files import random_mbf_state_dict, random_state_dict, write_mbf_onnx, write_torch_zip
    from tools import import_weights

    name, kwargs = split_spec(backbone)
    if name == "mobilefacenet":
        source = work_dir / "backbone.onnx"
        blocks, output = kwargs.get("blocks", (1, 4, 6, 2)), kwargs.get("output", "GDC")
        state = random_mbf_state_dict(0.125, blocks, 16, output, feature_hw=2)
        write_mbf_onnx(source, state, 32, fold_bn=True, fold_final=False)
    else:
        source = work_dir / "backbone.pth"
        write_torch_zip(source, random_state_dict(int(name.removeprefix("resnet")), 8, 16, feature_hw=2))
    import_weights.main([str(source), "--out", str(work_dir / "pretrained.keras"), "--input-size", "32"])
    return work_dir / "pretrained.keras"


@pytest.fixture
def eager():
    """Run tf.functions eagerly; afterwards restore graph mode and the float32 policy a run may have changed."""
    import tensorflow as tf

    tf.config.run_functions_eagerly(True)
    yield
    tf.config.run_functions_eagerly(False)
    keras.mixed_precision.set_dtype_policy("float32")
    keras.backend.clear_session()


@pytest.fixture(scope="module")
def synthetic_cache(tmp_path_factory):
    """One cache for every experiment: the synthetic identities are generated once."""
    return tmp_path_factory.mktemp("experiments_cache")


def test_every_reference_experiment_is_found():
    found = {path.stem for path in EXPERIMENTS}
    assert REFERENCE <= found, REFERENCE - found
    assert "base" not in found


@pytest.mark.parametrize("path", EXPERIMENTS, ids=lambda path: path.stem)
def test_experiment_trains_two_steps(path, synthetic_cache, tmp_path, eager):
    from tools import run as run_tool

    experiment = load_experiment(path, check_paths=False)  # the file's own data is not here
    overrides = tiny_overrides(experiment, synthetic_cache, tmp_path)
    result = run_tool.main([str(path)] + [arg for item in overrides for arg in ("--set", item)])

    run_dir = tmp_path / experiment.name
    with open(run_dir / "train_log.csv") as f:
        rows = list(csv.DictReader(f))
    assert [row["epoch"] for row in rows] == ["0"] and math.isfinite(float(rows[0]["loss"]))
    precision = auto.resolve(experiment.train.precision, False, "tensorflow", auto.local_device("tensorflow")).precision
    if precision == "float32":  # `auto` is float32 on a CPU
        assert result["step"] == 2
    else:  # a step whose float16 gradients overflow the loss scale is skipped, not counted
        assert 0 <= result["step"] <= 2
    assert 0.0 <= result["synthetic/accuracy"] <= 1.0
    ran = json.loads((run_dir / "config.json").read_text())
    own = experiment.to_dict()
    overridden = {item.split("=", 1)[0] for item in overrides}
    for section in ("data", "model", "train", "eval"):  # what the file chose and the test left alone
        for key, value in own[section].items():
            if f"{section}.{key}" not in overridden and key != "backbone":
                assert ran[section][key] == value, f"{section}.{key}"
    (name, kwargs), (ran_name, ran_kwargs) = split_spec(own["model"]["backbone"]), split_spec(ran["model"]["backbone"])
    assert ran_name == name and {**ran_kwargs, "width": None} == {**kwargs, "width": None}
