"""End to end through tools/run.py on tiny settings: artefacts, W&B offline run, a fresh interpreter's use of the
embedder (tests/test_resume.py: resume after a kill or a signal, and the rerun rule)."""
import csv
import json
import subprocess
import sys

import keras
import numpy as np
import pytest
from tiny_runs import DEMO, run_here, tiny
from wandb_records import history_and_summary


def test_tiny_run_writes_every_artefact(tmp_path):
    result = run_here(tiny(tmp_path))
    run_dir = tmp_path / "runs" / "demo_synth_mfn_arc"
    assert result["step"] == 8
    assert 0.0 <= result["synthetic/accuracy"] <= 1.0
    for name in ("config.json", "command.txt", "versions.json", "train_log.csv", "eval_log.csv",
                 "eval_report.json", "embedder.keras", "checkpoints/latest.json"):
        assert (run_dir / name).is_file(), name
    config = json.loads((run_dir / "config.json").read_text())
    assert config["train"]["steps_per_epoch"] == 4 and config["data"]["image_size"] == 32
    assert json.loads((run_dir / "checkpoints/latest.json").read_text())["step"] == 8
    with open(run_dir / "train_log.csv") as f:
        assert [row["epoch"] for row in csv.DictReader(f)] == ["0", "1"]
    with open(run_dir / "eval_log.csv") as f:
        assert [row["step"] for row in csv.DictReader(f)] == ["4", "8", "8"]  # every 4 steps, then the final one
    report = json.loads((run_dir / "eval_report.json").read_text())
    assert report["sets"]["synthetic"]["num_pairs"] == 40

    embedder = keras.saving.load_model(run_dir / "embedder.keras", compile=False)
    images = np.random.default_rng(0).uniform(-1, 1, (2, 32, 32, 3)).astype("float32")
    assert embedder.predict(images, verbose=0).shape == (2, 16)

    run_files = list((run_dir / "wandb").glob("offline-run-*/run-*.wandb"))
    assert len(run_files) == 1
    history, summary = history_and_summary(run_files[0])
    assert summary["synthetic/accuracy"] == pytest.approx(result["synthetic/accuracy"])
    assert any("train/loss" in row for row in history)
    assert [row["_step"] for row in history if "synthetic/accuracy" in row][:1] == [4]


def test_bad_override_fails_fast_naming_the_key(repo_root, monkeypatch):
    monkeypatch.chdir(repo_root)
    from tools import run as run_tool

    with pytest.raises(SystemExit) as failed:  # Python prints the message as the one line of stderr, exit status 1
        run_tool.main([DEMO, "--set", "train.epoch=1"])
    message = str(failed.value.code)
    assert "train.epoch" in message and "did you mean train.epochs" in message and "\n" not in message


def test_a_fresh_interpreter_loads_a_saved_embedder_after_import_arcface_keras(tmp_path, repo_root):
    """The README's Python use: `import arcface_keras`, load the embedder with Keras, embed two crops, compare;
    with TensorFlow imported in between, as a user's script may."""
    from arcface_keras.training.model import build_face_model
    from arcface_keras.config import Model

    _, embedder, _ = build_face_model(Model(backbone={"type": "mobilefacenet", "width": 0.25}, embedding_size=16),
                                      num_classes=4, image_size=32)
    embedder.save(tmp_path / "embedder.keras")
    rng = np.random.default_rng(0)
    for name in ("a.jpg", "b.jpg"):
        import cv2

        cv2.imwrite(str(tmp_path / name), rng.integers(0, 255, (32, 32, 3), dtype=np.uint8))
    code = f"""
import sys
import arcface_keras  # first: registers the layers once Keras is imported, quiets TensorFlow's start-up
assert "keras" not in sys.modules and "tensorflow" not in sys.modules  # the package alone imports neither
import tensorflow  # looks Keras up, then imports it: the layers are registered all the same
import keras, numpy as np
from arcface_keras.data.decode import decode_rgb
from arcface_keras.evaluation.embed import embed_images

embedder = keras.saving.load_model({str(tmp_path / 'embedder.keras')!r}, compile=False)
faces = np.stack([decode_rgb(open(path, "rb").read(), path) for path in ({str(tmp_path / 'a.jpg')!r}, {str(tmp_path / 'b.jpg')!r})])
a, b = embed_images(embedder, faces)
print(f"cosine similarity {{a @ b:.3f}}")
"""
    proc = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    similarity = float(proc.stdout.split("cosine similarity ")[1])
    assert -1.0 <= similarity <= 1.0 and proc.stderr == ""


def test_a_resumed_run_keeps_the_best_verification_it_had(tmp_path):
    """The best checkpoint is replaced only by a better score than any logged before the resume."""
    from arcface_keras.training.callbacks import VerificationCallback, truncate_csv

    log = tmp_path / "eval_log.csv"
    log.write_text("step,lfw/accuracy\n4,0.71\n8,0.83\n12,0.79\n16,0.90\n")
    truncate_csv(log, 12)  # killed after logging step 16, resumed from the checkpoint at step 12
    assert VerificationCallback(None, 4, log, "lfw/accuracy", tmp_path / "best.weights.h5").best == 0.83
    assert VerificationCallback(None, 4, log, "", tmp_path / "best.weights.h5").best is None
    assert VerificationCallback(None, 4, tmp_path / "none.csv", "lfw/accuracy").best is None


def test_a_batch_larger_than_the_data_set_is_said_in_one_line(tmp_path, capsys):
    from arcface_keras.config import Data, Experiment, Train
    from arcface_keras.data.tfrecord import write_shards
    from arcface_keras.training.engine import plan_training

    write_shards([(b"x%d" % i, i % 2) for i in range(12)], tmp_path / "set", 2, {"num_classes": 2})
    data = Data(train=str(tmp_path / "set"), cache_dir=str(tmp_path / "cache"))
    plan_training(Experiment(data=data, train=Train(batch_size=12)), None)
    assert capsys.readouterr().err == ""
    assert plan_training(Experiment(data=data, train=Train(batch_size=64)), None).global_batch == 64
    assert capsys.readouterr().err == ("[arcface_keras] warning: the global batch of 64 is larger than the 12 "
                                       "training images: every batch repeats images\n")
