"""End to end through tools/run.py on tiny settings: artefacts, W&B offline run, resume after a kill, a
signal or a full disk, the rerun rule and one process per run."""
import csv
import json
import os
import re
import resource
import shutil
import signal
import subprocess
import sys
import threading
import time

import keras
import numpy as np
import pytest
from conftest import ROOT, process_env
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


def checkpoint_arrays(run_dir):
    """Every array of the newest checkpoint (model and optimizer), by its path in the file."""
    import h5py

    info = json.loads((run_dir / "checkpoints" / "latest.json").read_text())
    arrays = {}
    with h5py.File(run_dir / "checkpoints" / info["path"], "r") as f:
        f.visititems(lambda name, item: arrays.__setitem__(name, item[()]) if isinstance(item, h5py.Dataset) else None)
    return info, arrays


def file_states(run_dir):
    return {path: (path.stat().st_mtime_ns, path.read_bytes()) for path in sorted(run_dir.rglob("*")) if path.is_file()}


# Partial FC draws classes and the augmentations draw random numbers: a resumed run must restore both.
RESUMABLE = ["eval.every_steps=0", "log.wandb=disabled", "train.save_steps=3", "model.head.sample_rate=0.5",
             "data.augment=['flip', {'type': 'color_jitter', 'p': 0.5}, {'type': 'random_crop', 'p': 0.5}]"]


@pytest.fixture(scope="module")
def resumable(tmp_path_factory):
    """The tiny demo, 7 steps per epoch, 2 epochs, trained once without interruption (in this process):
    (its overrides, its run directory, its final checkpoint). The tests that interrupt the same run compare
    their final checkpoints with this one, bit for bit; none writes into it."""
    root = tmp_path_factory.mktemp("resumable")
    overrides = tiny(root, steps=7, epochs=2, extra=RESUMABLE)
    with pytest.MonkeyPatch.context() as patch:
        patch.chdir(ROOT)
        from tools import run as run_tool

        run_tool.main(run_args(overrides + [f"log.work_dir={root / 'straight'}"]))
    run_dir = root / "straight" / "demo_synth_mfn_arc"
    return overrides, run_dir, checkpoint_arrays(run_dir)


def assert_same_arrays(run_dir, reference):
    reference_info, reference_arrays = reference
    info, arrays = checkpoint_arrays(run_dir)
    assert info == reference_info and arrays.keys() == reference_arrays.keys()
    different = [name for name in arrays if not np.array_equal(arrays[name], reference_arrays[name])]
    assert not different, f"{len(different)} arrays differ, e.g. {different[:3]}"


def test_killed_run_resumes_exactly_and_a_finished_run_is_final(resumable, tmp_path, monkeypatch, capsys):
    """kill -9 mid-epoch, rerun: every weight and optimizer slot equals the uninterrupted run's, bit for bit.

    7 steps per epoch, checkpoints every 3: a kill after step 9 resumes inside the second epoch, so
    the resumed stream must skip the batches the killed run consumed; the last step (14) is not a
    multiple of 3 and must be checkpointed all the same. The killed process's lock is taken over.
    Then the rerun rule on the finished run: the same settings, or other values of keys that change
    neither the weights nor the numbers, print the stored result and change nothing; other settings
    are refused in one line; --allow-changes goes on with them and records them; raising
    train.epochs trains on.
    """
    overrides, straight_dir, reference = resumable
    assert reference[0]["step"] == 14 and reference[0]["batches"] == 14  # the last step, between two saves
    monkeypatch.chdir(ROOT)
    from tools import run as run_tool

    command = [sys.executable, "tools/run.py", *run_args(overrides + [f"log.work_dir={tmp_path / 'killed'}"])]
    run_dir = tmp_path / "killed" / "demo_synth_mfn_arc"
    latest = run_dir / "checkpoints" / "latest.json"
    proc = subprocess.Popen(command, cwd=ROOT, env=process_env(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 600  # as the Training watchdog: a loaded machine is slow, not wrong
    while time.time() < deadline and proc.poll() is None:
        if latest.is_file() and json.loads(latest.read_text())["step"] >= 9:
            break
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    reached = json.loads(latest.read_text())["step"]
    assert 9 <= reached < 14, reached
    assert json.loads((run_dir / "run.lock").read_text())["pid"] == proc.pid  # left behind by the kill

    capsys.readouterr()
    run_tool.main(command[2:])  # resumed in this process: no second TensorFlow start-up
    assert f"resuming at step {reached}" in capsys.readouterr().out
    assert_same_arrays(run_dir, reference)
    assert not (run_dir / "run.lock").exists()

    straight = overrides + [f"log.work_dir={straight_dir.parent}"]
    before = file_states(straight_dir)
    again = run_tool.main(run_args(straight))
    free = run_tool.main(run_args(straight + ["eval.batch_size=7", "log.every_steps=5", "train.save_steps=2",
                                              "log.wandb=offline", "train.strategy=one_device"]))
    assert file_states(straight_dir) == before
    stored = json.loads((straight_dir / "eval_report.json").read_text())
    assert again["synthetic/accuracy"] == free["synthetic/accuracy"] == stored["synthetic/accuracy"]
    assert again["step"] == 14

    with pytest.raises(SystemExit) as refused:
        run_tool.main(run_args(straight + ["model.head.m=0.4", "train.lr=0.05", "train.epochs=3"]))
    message = str(refused.value.code)
    assert message.startswith(f"error: {straight_dir} was trained with other settings: ") and "\n" not in message
    assert "model.head.m 0.3 → 0.4, train.lr 0.1 → 0.05; " in message and "epochs" not in message
    assert "--set name=" in message and "--allow-changes" in message
    assert file_states(straight_dir) == before

    extended = tmp_path / "extended" / "demo_synth_mfn_arc"  # a copy: the reference stays as trained
    shutil.copytree(straight_dir, extended)
    unflipped = run_tool.main(run_args(overrides + [f"log.work_dir={extended.parent}", "eval.flip=false"])
                              + ["--allow-changes"])
    assert unflipped["step"] == 14 and json.loads((extended / "config.json").read_text())["eval"]["flip"] is False
    assert json.loads((extended / "eval_report.json").read_text())["synthetic/accuracy"] == unflipped["synthetic/accuracy"]
    longer = run_tool.main(run_args(overrides + [f"log.work_dir={extended.parent}", "eval.flip=false", "train.epochs=3"]))
    assert longer["step"] == 21
    with open(extended / "train_log.csv") as f:
        assert [row["epoch"] for row in csv.DictReader(f)] == ["0", "1", "2"]
    history = [json.loads(line) for line in (extended / "history.jsonl").read_text().splitlines()]
    assert [entry["changes"] for entry in history] == [{"eval.flip": {"old": True, "new": False}},
                                                       {"train.epochs": {"old": 2, "new": 3}}]
    assert history[0]["command"].endswith("--allow-changes") and "train.epochs=3" in history[1]["command"]


class Training:
    """A training process whose progress lines ("step N/M ...") are read as they come; stderr goes to a file."""

    def __init__(self, command, stderr_path):
        self.stderr_path = stderr_path
        self.lines = []
        ignored = signal.getsignal(signal.SIGINT) is signal.SIG_IGN  # as in a shell's background job: the
        if ignored:  # child would inherit it, and a run leaves an ignored signal ignored
            signal.signal(signal.SIGINT, signal.default_int_handler)
        try:
            with stderr_path.open("w") as stderr:
                self.proc = subprocess.Popen(command, cwd=ROOT, env=process_env(PYTHONFAULTHANDLER="1"),
                                             stdout=subprocess.PIPE, stderr=stderr, text=True)
        finally:
            if ignored:
                signal.signal(signal.SIGINT, signal.SIG_IGN)
        # a run that hangs is aborted with the Python stack of each of its threads on stderr (faulthandler)
        self.watchdog = threading.Timer(600, self.proc.send_signal, [signal.SIGABRT])
        self.watchdog.start()

    def wait_for_step(self, step):
        """Read on until a progress line at `step` or later; return its step."""
        for line in self.proc.stdout:
            self.lines.append(line)
            found = re.match(r"step (\d+)/", line)
            if found and int(found.group(1)) >= step:
                return int(found.group(1))
        self.proc.wait()
        raise AssertionError(f"exit status {self.proc.returncode} before step {step}: {''.join(self.lines)[-2000:]}"
                             f"{self.stderr_path.read_text()[-6000:]}")

    def stop(self, signum):
        """Send `signum`; wait for the end; return (exit status, stdout, stderr lines)."""
        self.proc.send_signal(signum)
        rest = self.proc.communicate(timeout=600)[0]
        self.watchdog.cancel()
        return self.proc.returncode, "".join(self.lines) + rest, self.stderr_path.read_text().strip().splitlines()


def stopped_at(returncode, stderr_lines, name, code):
    """The step of a run stopped by signal `name`, which exited `code` saying so in one line."""
    assert returncode == code and len(stderr_lines) == 1, (returncode, stderr_lines[-20:])
    found = re.fullmatch(rf"stopped by {name} at step (\d+); checkpoint saved; rerun the same command to resume",
                         stderr_lines[0])
    assert found, stderr_lines
    return int(found.group(1))


def latest_step(run_dir):
    return json.loads((run_dir / "checkpoints" / "latest.json").read_text())["step"]


def test_signals_and_a_full_disk_stop_a_run_that_resumes_exactly(resumable, tmp_path, monkeypatch, capsys):
    """SIGTERM, a full disk and SIGINT in turn, each time rerun with the same command: the run ends with every
    array of its final checkpoint equal to the uninterrupted run's. Checkpoints only at the end of a fit
    (train.save_steps=0, a key free to differ from the reference's), so that a signal's checkpoint is its own.
    The signals go to tools/run.py processes; the reruns between them run in this process (no TensorFlow
    start-up each), the full disk as RLIMIT_FSIZE (`ulimit -f`; Python ignores SIGXFSZ, so writes fail EFBIG).

    On the way: a rerun with other settings is refused in one line and writes nothing (also when allowed, as
    the checkpoint does not fit); a second process on the run is refused in one line naming the holder;
    a temp file of a killed process is removed; a lock from another host whose heartbeat stopped is taken over.
    """
    overrides, _, reference = resumable
    command = [sys.executable, "tools/run.py", *run_args(overrides + [f"log.work_dir={tmp_path}", "train.save_steps=0"])]
    run_dir = tmp_path / "demo_synth_mfn_arc"
    monkeypatch.chdir(ROOT)
    from tools import run as run_tool

    first = Training(command, tmp_path / "first.err")
    first.wait_for_step(2)
    term = stopped_at(*first.stop(signal.SIGTERM)[::2], "SIGTERM", 143)
    assert term == latest_step(run_dir) < 14

    before = file_states(run_dir)
    with pytest.raises(SystemExit) as other:
        run_tool.main(command[2:] + ["--set", "model.embedding_size=64"])
    assert re.fullmatch(rf"error: {re.escape(str(run_dir))} was trained with other settings: model.embedding_size "
                        r"16 → 64; train under a new name .+ \(tools/run.py --allow-changes\)", str(other.value.code))
    with pytest.raises(SystemExit, match=r"^error: \S+ckpt-\d{8}.weights.h5 does not fit the model these settings "):
        run_tool.main(command[2:] + ["--set", "model.embedding_size=64", "--allow-changes"])
    assert file_states(run_dir) == before

    assert signal.getsignal(signal.SIGXFSZ) is signal.SIG_IGN
    limits = resource.getrlimit(resource.RLIMIT_FSIZE)
    resource.setrlimit(resource.RLIMIT_FSIZE, (512 * 1024, limits[1]))  # the checkpoint (~1.5 MB) does not fit
    try:
        with pytest.raises(SystemExit) as full:
            run_tool.main(command[2:])
    finally:
        resource.setrlimit(resource.RLIMIT_FSIZE, limits)
    assert re.fullmatch(rf"error: cannot write {re.escape(str(run_dir))}/checkpoints/ckpt-\d{{8}}\.weights\.h5: File "
                        rf"too large \(\S+ \w?B free there\); the newest checkpoint \(step {term}\) is intact: make "
                        "room and rerun the same command", str(full.value.code)), full.value.code
    assert latest_step(run_dir) == term and checkpoint_arrays(run_dir)[1]  # it still loads
    assert sorted(p.name for p in (run_dir / "checkpoints").iterdir() if p.name.startswith(".")) == []

    (run_dir / "checkpoints" / ".tmp-99999.weights.h5").write_bytes(b"left by a killed process")
    lock = run_dir / "run.lock"
    lock.write_text(json.dumps({"pid": 1, "host": "another-host", "started": "yesterday"}))
    os.utime(lock, (time.time() - 3600, time.time() - 3600))  # its heartbeat stopped an hour ago

    third = Training(command, tmp_path / "third.err")
    third.wait_for_step(term + 1)
    third.proc.send_signal(signal.SIGSTOP)  # alive, holding the run
    try:
        with pytest.raises(SystemExit) as busy:
            run_tool.main(command[2:])
    finally:
        third.proc.send_signal(signal.SIGCONT)
    interrupted = stopped_at(*third.stop(signal.SIGINT)[::2], "SIGINT", 130)
    assert re.fullmatch(rf"error: {re.escape(str(run_dir))} is in use by pid {third.proc.pid} on \S+ since .+ "
                        r"\(run.lock\): wait for it to end or stop it .+", str(busy.value.code)), busy.value.code
    assert term < interrupted == latest_step(run_dir) and not (run_dir / "checkpoints" / ".tmp-99999.weights.h5").exists()

    capsys.readouterr()
    run_tool.main(command[2:])
    assert f"resuming at step {interrupted}" in capsys.readouterr().out
    assert_same_arrays(run_dir, reference)
    assert not lock.exists()


def test_signals_stop_a_mirrored_run_that_resumes_exactly(tmp_path):
    """The same on two replicas (MirroredStrategy over two logical CPUs): SIGTERM, then SIGINT, then to the
    end, against an uninterrupted run of the same setup."""
    overrides = tiny(tmp_path, steps=7, epochs=2, extra=["eval.every_steps=0", "log.wandb=disabled",
                                                          "train.strategy=mirrored", "train.batch_size=4"])
    two_cpus = [sys.executable, "tests/two_cpus.py", "tools/run.py"]
    straight = subprocess.Popen(two_cpus + run_args(overrides + [f"log.work_dir={tmp_path / 'straight'}"]), cwd=ROOT,
                                env=process_env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    command = two_cpus + run_args(overrides + [f"log.work_dir={tmp_path / 'stopped'}", "train.save_steps=0"])
    run_dir = tmp_path / "stopped" / "demo_synth_mfn_arc"

    first = Training(command, tmp_path / "first.err")
    first.wait_for_step(2)
    term = stopped_at(*first.stop(signal.SIGTERM)[::2], "SIGTERM", 143)
    second = Training(command, tmp_path / "second.err")
    second.wait_for_step(term + 1)
    interrupted = stopped_at(*second.stop(signal.SIGINT)[::2], "SIGINT", 130)
    assert term < interrupted == latest_step(run_dir) and term < 14

    last = subprocess.run(command, cwd=ROOT, env=process_env(), capture_output=True, text=True, timeout=300)
    assert last.returncode == 0, last.stdout[-2000:] + last.stderr[-2000:]
    assert f"resuming at step {interrupted}" in last.stdout
    straight_output = straight.communicate(timeout=300)[0]
    assert straight.returncode == 0 and "2 replica(s), global batch 8" in straight_output, straight_output[-3000:]
    assert_same_arrays(run_dir, checkpoint_arrays(tmp_path / "straight" / "demo_synth_mfn_arc"))


def test_a_fresh_interpreter_loads_a_saved_embedder_after_import_arcface_keras(tmp_path, repo_root):
    """The README's Python use: `import arcface_keras`, load the embedder with Keras, embed two crops, compare."""
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
import arcface_keras  # first: registers the layers, quiets TensorFlow's start-up
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
