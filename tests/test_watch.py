"""What a run says while it runs: console lines, TensorBoard events, W&B panels and step axis, sweeps."""
import json
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import cv2
import numpy as np
import pytest
import yaml
from conftest import process_env
from tiny_runs import DEMO, Lines, run_args, run_here, tiny
from wandb_records import history_and_summary, raw_records

from arcface_keras.training.progress import format_duration, interval_mean
from arcface_keras.training.records import RunRecords

LINE = re.compile(r"^step (\d+)/(\d+)  epoch (\d+)/(\d+)  loss (\S+)  lr (\S+)  ([\d,]+) img/s  eta (\S+)$")


def seconds(eta):
    hours, minutes, secs = map(int, eta.split(":"))
    return 3600 * hours + 60 * minutes + secs


def timed_run(overrides):
    """tools/run.py on the tiny demo in this process: (arrival time, line) for each line it prints."""
    printed = Lines()
    run_here(overrides, printed)
    return printed.lines


def wandb_rows(run_dir):
    """History rows of every offline W&B file of the run, oldest process first."""
    files = sorted((run_dir / "wandb").glob("offline-run-*/run-*.wandb"), key=lambda p: p.parent.name)
    return files, [row for f in files for row in history_and_summary(f)[0]]


def tensorboard_scalars(folder):
    import tensorflow as tf

    scalars = {}
    for path in sorted(Path(folder).glob("events.out.tfevents.*")):
        for event in tf.compat.v1.train.summary_iterator(str(path)):
            for value in event.summary.value:
                scalars.setdefault(value.tag, []).append((event.step, float(tf.make_ndarray(value.tensor))))
    return scalars


@pytest.fixture(scope="module")
def watched_run(tmp_path_factory):
    """One tiny offline run: 2 epochs of 5 steps, a line every 2 steps, verification every 4."""
    tmp_path = tmp_path_factory.mktemp("watched")
    return tmp_path / "runs" / "demo_synth_mfn_arc", timed_run(tiny(tmp_path, steps=5, epochs=2))


def test_console_line_every_n_steps_and_at_epoch_ends_with_a_plausible_eta(watched_run):
    run_dir, lines = watched_run
    assert not any("\r" in line for _, line in lines)  # no TTY: plain lines only
    progress = [(when, LINE.match(line)) for when, line in lines if LINE.match(line)]
    assert [int(m[1]) for _, m in progress] == [2, 4, 5, 6, 8, 10]  # every 2 steps, and the epoch ends 5 and 10
    assert {(m[2], m[4]) for _, m in progress} == {("10", "2")}
    assert [int(m[3]) for _, m in progress] == [1, 1, 1, 2, 2, 2]
    assert all(float(m[5]) > 0 and np.isfinite(float(m[5])) for _, m in progress)
    assert all(int(m[7].replace(",", "")) > 0 for _, m in progress)
    assert progress[-1][1][8] == "0:00:00"
    # The ETA printed at step 5 against the time the last line actually came: the pace of a few tiny
    # steps (one verification among them) is noisy, so only the order of magnitude is checked.
    (at_middle, middle), (at_end, _) = progress[2], progress[-1]
    actual = at_end - at_middle
    assert actual / 5 - 1 <= seconds(middle[8]) <= actual * 5 + 1


def test_tensorboard_events_hold_training_and_verification_scalars(watched_run):
    run_dir, _ = watched_run
    scalars = tensorboard_scalars(run_dir / "tensorboard")
    assert [step for step, _ in scalars["train/loss"]] == [2, 4, 5, 6, 8, 10]
    assert all(value > 0 for _, value in scalars["train/images_per_second"])
    assert all(0 <= value <= 0.1 + 1e-6 for _, value in scalars["train/lr"])  # demo lr 0.1, cosine to 0
    accuracy = dict(scalars["synthetic/accuracy"])
    assert sorted(accuracy) == [4, 8, 10]
    assert accuracy[10] == pytest.approx(json.loads((run_dir / "eval_report.json").read_text())["synthetic/accuracy"])


def test_wandb_run_has_throughput_eta_and_the_augmentation_grid(watched_run):
    run_dir, _ = watched_run
    files, rows = wandb_rows(run_dir)
    assert len(files) == 1
    train = [row for row in rows if "train/images_per_second" in row]
    assert [row["_step"] for row in train] == [2, 4, 5, 6, 8, 10]
    assert all(row["train/images_per_second"] > 0 and row["train/eta_seconds"] >= 0 for row in train)
    assert train[-1]["train/eta_seconds"] == 0 and "train/lr" in train[0] and "train/loss" in train[0]
    grid = next(row for row in rows if "augmentations/path" in row)
    assert grid["_step"] == 0
    image = cv2.imread(str(files[0].parent / "files" / grid["augmentations/path"]))
    assert image is not None and image.shape[1] > 3 * 32  # original, flip alone, pipeline: three columns


def test_wandb_verification_panels_match_the_final_embedder(watched_run, tmp_path):
    import keras

    import arcface_keras.backbones  # noqa: F401  (registers the backbone layers for loading)
    from arcface_keras.data.verification import load_verification_set
    from arcface_keras.evaluation.embed import embed_images
    from arcface_keras.evaluation.verification import pair_distances

    run_dir, _ = watched_run
    files, rows = wandb_rows(run_dir)
    final = [row for row in rows if row["_step"] == 10 and "synthetic/worst_impostors/captions" in row][0]
    media = files[0].parent / "files"
    roc = json.loads((media / final["synthetic/roc_table/path"]).read_text())
    log_far, tar = np.array(roc["data"]).T
    assert roc["columns"] == ["log10 FAR", "TAR"] and np.all(log_far <= 0) and np.all(np.diff(tar) >= 0)
    assert 0 <= tar.min() and tar.max() == 1.0  # the curve reaches (FAR 1, TAR 1)
    histogram = cv2.imread(str(media / final["synthetic/scores/path"]))
    assert histogram is not None and histogram.std() > 0

    # Recompute the final scores from the saved embedder: the panels must name the same worst pairs.
    config = json.loads((run_dir / "config.json").read_text())
    cache = Path(config["data"]["cache_dir"]) / "synthetic"
    images, issame = load_verification_set(str(next(cache.glob("*/pairs_40.txt"))))
    embedder = keras.saving.load_model(run_dir / "embedder.keras", compile=False)
    embeddings = embed_images(embedder, images, batch_size=32, flip=True)
    similarity = 1 - pair_distances(embeddings[0::2], embeddings[1::2]) / 2
    for kind, same, worst_first in (("impostors", False, -1), ("genuines", True, 1)):
        captions = final[f"synthetic/worst_{kind}/captions"]
        shown = [int(re.search(r"pair (\d+):", c)[1]) for c in captions]
        scores = [float(c.rsplit(" ", 1)[1]) for c in captions]
        assert len(shown) == 8 and all(issame[i] == same for i in shown)
        # Embeddings come back in float32: similarities agree to ~1e-6, shown with 3 decimals.
        np.testing.assert_allclose(scores, similarity[shown], atol=6e-4)
        candidates = np.flatnonzero(issame == same)
        expected = np.sort(worst_first * similarity[candidates])[:8] * worst_first
        np.testing.assert_allclose(scores, expected, atol=6e-4)
        pair = cv2.imread(str(media / final[f"synthetic/worst_{kind}/filenames"][0]))
        assert pair.shape[1] == 2 * pair.shape[0]  # two square faces side by side


def test_wandb_artifact_and_summary_at_the_end(watched_run):
    from wandb.proto import wandb_internal_pb2

    run_dir, _ = watched_run
    files, _ = wandb_rows(run_dir)
    artifacts = []
    for payload in raw_records(files[0]):
        record = wandb_internal_pb2.Record()
        record.ParseFromString(payload)
        if record.WhichOneof("record_type") == "artifact" and record.artifact.type == "model":
            artifacts.append(record.artifact)
    assert len(artifacts) == 1
    assert sorted(entry.path for entry in artifacts[0].manifest.contents) == ["embedder.keras", "eval_report.json"]
    _, summary = history_and_summary(files[0])
    report = json.loads((run_dir / "eval_report.json").read_text())
    assert summary["synthetic/accuracy"] == pytest.approx(report["synthetic/accuracy"]) and summary["step"] == 10


def test_killed_and_resumed_run_continues_one_strictly_increasing_wandb_step_axis(tmp_path, repo_root):
    overrides = tiny(tmp_path, steps=40, epochs=1, extra=["eval.every_steps=0", "train.save_steps=10",
                                                          "log.every_steps=1"])
    command = [sys.executable, "tools/run.py", *run_args(overrides)]
    run_dir = tmp_path / "runs" / "demo_synth_mfn_arc"
    latest, mark = run_dir / "checkpoints" / "latest.json", run_dir / "logged_step.txt"
    proc = subprocess.Popen(command, cwd=repo_root, env=process_env(),
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 240
    while time.time() < deadline and proc.poll() is None:  # kill with rows logged past the checkpoint
        if latest.is_file() and mark.is_file() and int(mark.read_text()) >= json.loads(latest.read_text())["step"] + 3:
            break
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    checkpoint = json.loads(latest.read_text())["step"]
    assert 10 <= checkpoint < 40 and int(mark.read_text()) > checkpoint

    steps = [int(LINE.match(line)[1]) for _, line in timed_run(overrides) if LINE.match(line)]
    assert steps[0] == checkpoint + 2 and steps[-1] == 40  # the true step (the first after tracing is not timed)
    files, rows = wandb_rows(run_dir)
    assert len(files) == 2 and len({f.name for f in files}) == 1  # one W&B run, continued
    axis = [row["_step"] for row in rows]
    assert all(b > a for a, b in zip(axis, axis[1:])), axis
    assert axis[-1] == 40


def test_records_drop_steps_an_earlier_process_logged(tmp_path):
    first = RunRecords(tmp_path)
    assert first.log({"x": 1.0}, 5) and first.log({"x": 2.0}, 5) and not first.log({"x": 0.0}, 4)
    again = RunRecords(tmp_path)
    assert not again.log({"x": 1.0}, 5) and again.log({"x": 1.0}, 6)


def test_interval_mean_and_duration_format():
    # running means 2.0 after 4 batches and 3.0 after 10: batches 5..10 averaged (30 - 8) / 6
    assert interval_mean((4, 2.0), 10, 3.0) == pytest.approx(22 / 6)
    assert interval_mean((0, 0.0), 3, 1.5) == pytest.approx(1.5)
    assert format_duration(3725) == "1:02:05" and format_duration(90061) == "1d 01:01:01"
    assert format_duration(None) == "-"


def expand_sweep_command(sweep_config, values):
    """The argv a W&B agent starts for one parameter set, expanded by wandb's own macro code."""
    from wandb.sdk.launch.sweeps import utils

    variables = utils.create_sweep_command_args({"args": {k: {"value": v} for k, v in values.items()}})
    variables.update(env=["/usr/bin/env"], interpreter=["python"], program=[sweep_config["program"]])
    argv = []
    for item in sweep_config["command"]:
        argv += variables[item[2:-1]] if item.startswith("${") else [item]
    return argv


def test_sweep_parameters_reach_the_experiment_as_set_overrides(repo_root, monkeypatch, capsys):
    from tools import run as run_tool

    sweep_config = yaml.safe_load((repo_root / "experiments/sweeps/heads.yaml").read_text())
    values = {"model.head.type": "cosface", "model.head.s": 32.0, "model.head.m": 0.35, "train.lr": 0.05}
    assert set(sweep_config["parameters"]) == set(values)
    argv = expand_sweep_command(sweep_config, values)
    assert argv[:3] == ["/usr/bin/env", "python", "tools/run.py"]
    monkeypatch.chdir(repo_root)
    monkeypatch.setenv("WANDB_SWEEP_ID", "abc")
    monkeypatch.setenv("WANDB_RUN_ID", "r1")
    run_tool.main([*argv[3:], "--check"])
    resolved, _ = json.JSONDecoder().raw_decode(capsys.readouterr().out)  # then the memory plan
    assert resolved["model"]["head"] == {"type": "cosface", "s": 32.0, "m": 0.35}
    assert resolved["train"]["lr"] == 0.05 and resolved["log"]["wandb"] == "online"
    assert resolved["name"] == "demo_synth_mfn_arc-r1"
    with pytest.raises(SystemExit, match="unrecognised argument 'stray'"):
        run_tool.main([DEMO, "stray"])


def test_live_bar_on_a_terminal_and_the_loss_scale_under_float16():
    import io

    import keras

    from arcface_keras.training.progress import Progress

    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(2)])
    model.compile(optimizer=keras.optimizers.LossScaleOptimizer(keras.optimizers.SGD(0.1)), loss="mse")
    model.optimizer.build(model.trainable_variables)
    stream = io.StringIO()
    progress = Progress(3, 10, 20, 8, stream=stream, live=True)
    progress.set_model(model)
    for batch in range(4):
        progress.on_train_batch_begin(batch)
        model.optimizer.iterations.assign(batch + 1)
        progress.drawn = 0.0  # redraw on every step, whatever the clock
        progress.on_train_batch_end(batch, {"loss": 2.0})
    text = stream.getvalue()
    assert "\rstep 2/20 [###" in text and "\r\033[Kstep 3/20  epoch 1/2  loss 2.0000" in text
    assert text.rstrip("\n").endswith("\rstep 4/20 [######........................]  20.0%")
    assert "loss-scale 32768" in text
