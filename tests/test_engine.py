"""End to end through tools/run.py on tiny settings: artefacts, W&B offline run, resume after a kill."""
import csv
import json
import os
import signal
import subprocess
import sys
import time

import keras
import numpy as np
import pytest
from wandb_records import history_and_summary

DEMO = "experiments/demo_synth_mfn_arc.py"


def tiny(tmp_path, steps=4, epochs=2, extra=()):
    """Overrides that shrink the demo to seconds: tiny data, width, input and step count."""
    return [
        "data.synthetic={'identities': 12, 'images': 6, 'val_identities': 20, 'val_images': 4, 'val_pairs': 40, 'seed': 1}",
        f"data.cache_dir={tmp_path / 'cache'}", "data.image_size=32", "data.shuffle_buffer=100",
        "model.backbone.width=0.25", "model.embedding_size=16",
        f"train.steps_per_epoch={steps}", f"train.epochs={epochs}", "train.batch_size=8", "train.save_steps=2",
        "eval.every_steps=4", "eval.batch_size=32", "log.every_steps=2", f"log.work_dir={tmp_path / 'runs'}", *extra,
    ]


def run_args(overrides):
    return [DEMO] + [a for o in overrides for a in ("--set", o)]


def test_tiny_run_writes_every_artefact(tmp_path, repo_root, monkeypatch):
    monkeypatch.chdir(repo_root)
    from tools import run as run_tool

    result = run_tool.main(run_args(tiny(tmp_path)))
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


def test_bad_override_fails_fast_naming_the_key(tmp_path, repo_root):
    proc = subprocess.run([sys.executable, "tools/run.py", DEMO, "--set", "train.epoch=1"], cwd=repo_root,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode != 0
    assert "train.epoch" in proc.stderr and "did you mean train.epochs" in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1


def test_killed_run_resumes_at_the_step_it_reached(tmp_path, repo_root):
    overrides = tiny(tmp_path, steps=60, epochs=1, extra=["eval.every_steps=0", "log.wandb=disabled"])
    command = [sys.executable, "tools/run.py", *run_args(overrides)]
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    latest = tmp_path / "runs" / "demo_synth_mfn_arc" / "checkpoints" / "latest.json"
    proc = subprocess.Popen(command, cwd=repo_root, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    deadline = time.time() + 240
    while time.time() < deadline and proc.poll() is None:
        if latest.is_file() and json.loads(latest.read_text())["step"] >= 4:
            break
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    reached = json.loads(latest.read_text())["step"]
    assert 4 <= reached < 60

    second = subprocess.run(command, cwd=repo_root, env=env, capture_output=True, text=True, timeout=300)
    assert second.returncode == 0, second.stdout[-2000:] + second.stderr[-2000:]
    resumed_at = int(second.stdout.split("resuming at step ")[1].split()[0])
    assert resumed_at >= reached
    assert json.loads(latest.read_text())["step"] == 60
