"""The run directory's lock (who holds it, when a lock is stale) and the rerun rule on settings, without
training (tests/test_resume.py runs both through real tools/run.py processes)."""
import json
import os
import socket
import subprocess
import sys
import time

import pytest

from arcface_keras.config import Experiment
from arcface_keras.training import run_dir, run_settings
from arcface_keras.training.run_dir import RunError, RunLock

AUTO = {"precision": "float32", "jit_compile": False, "replicas": 1}


def write_lock(directory, age=0.0, **fields):
    lock = directory / run_dir.LOCK
    lock.write_text(json.dumps({"pid": 1, "host": socket.gethostname(), "started": "then", **fields}))
    os.utime(lock, (time.time() - age, time.time() - age))
    return lock


def test_a_lock_is_held_until_its_process_ends_and_a_second_one_is_refused_naming_it(tmp_path):
    directory = tmp_path / "runs" / "x"
    with RunLock(directory, "tools/run.py x") as held:
        record = json.loads((directory / "run.lock").read_text())
        assert record == {**held.me, "command": "tools/run.py x"} and record["pid"] == os.getpid()
        with pytest.raises(RunError, match=rf"^{directory} is in use by pid {os.getpid()} on "
                                           rf"{socket.gethostname()} since .+ \(run.lock\): wait for it"):
            with RunLock(directory):
                pass
    assert not directory.exists()  # released, and the directory it made, still empty, removed


def test_a_lock_whose_holder_is_gone_is_taken_over(tmp_path):
    ended = subprocess.Popen([sys.executable, "-c", "pass"])
    ended.wait()
    for stale in (dict(pid=ended.pid),  # the process ended
                  dict(pid=os.getpid(), process_start=-1),  # the pid now names another process
                  dict(pid=os.getpid(), boot_id="an earlier boot"),  # the machine has rebooted
                  dict(host="another-host", age=run_dir.STALE_AFTER_SECONDS + 60)):  # no heartbeat for too long
        write_lock(tmp_path, **stale)
        with RunLock(tmp_path):
            assert json.loads((tmp_path / "run.lock").read_text())["pid"] == os.getpid()
        assert not (tmp_path / "run.lock").exists()


def test_a_lock_from_another_host_with_a_recent_heartbeat_is_held(tmp_path, monkeypatch):
    write_lock(tmp_path, host="another-host", age=run_dir.STALE_AFTER_SECONDS - 60)
    with pytest.raises(RunError, match="in use by pid 1 on another-host since then"):
        with RunLock(tmp_path):
            pass
    assert json.loads((tmp_path / "run.lock").read_text())["host"] == "another-host"  # left as it was

    monkeypatch.setattr(run_dir, "HEARTBEAT_SECONDS", 0.05)
    (tmp_path / "run.lock").unlink()
    with RunLock(tmp_path):
        os.utime(tmp_path / "run.lock", (0, 0))
        deadline = time.time() + 30
        while (tmp_path / "run.lock").stat().st_mtime == 0 and time.time() < deadline:
            time.sleep(0.05)
        assert time.time() - (tmp_path / "run.lock").stat().st_mtime < 30  # the holder's heartbeat


def settings(**sections):
    experiment = Experiment().to_dict()
    for key, value in sections.items():
        section, name = key.split("__")
        experiment[section][name] = value
    return experiment


def check(tmp_path, old, new, choice=AUTO, new_choice=AUTO, allow=False):
    (tmp_path / "config.json").write_text(json.dumps(old))
    (tmp_path / "versions.json").write_text(json.dumps({"python": "3", **choice}))
    return run_settings.check_rerun(tmp_path, new, new_choice, allow)


def test_a_rerun_goes_on_with_the_same_resolved_settings_or_free_keys_changed(tmp_path):
    assert run_settings.check_rerun(tmp_path, settings(), AUTO) == {}  # a new run
    assert check(tmp_path, settings(), settings()) == {}
    # `auto` as given on one side, what it chose on the other: the same run
    assert check(tmp_path, settings(), settings(train__precision="float32", train__jit_compile=False)) == {}
    # a head by name and as {"type": name}; keys that change neither the weights nor the numbers
    free = settings(log__wandb="disabled", log__every_steps=3, log__work_dir="elsewhere", eval__batch_size=7,
                    data__cache_dir="/cache", train__save_steps=5, train__strategy="one_device")
    assert check(tmp_path, settings(model__head="arcface"), {**free, "name": "moved"}) == {}
    assert check(tmp_path, settings(), settings(train__epochs=3)) == {"train.epochs": (1, 3)}  # trains on
    older = settings()
    del older["train"]["sync_bn"]  # written before the setting existed: it ran as the default does
    assert check(tmp_path, older, settings()) == {}


def test_a_rerun_with_other_settings_is_refused_naming_each_key_unless_allowed(tmp_path):
    old = settings(model__head={"type": "arcface", "m": 0.3})
    new = settings(model__head={"type": "arcface", "m": 0.5, "s": 32.0}, train__epochs=3, eval__flip=False)
    with pytest.raises(run_settings.SettingsChanged) as refused:
        check(tmp_path, old, new)
    message = str(refused.value)
    assert "\n" not in message and f"{tmp_path} was trained with other settings: eval.flip true → false, " \
        "model.head.m 0.3 → 0.5, model.head.s (not set) → 32.0; train under a new name" in message
    assert check(tmp_path, old, new, allow=True) == {"eval.flip": (True, False), "model.head.m": (0.3, 0.5),
                                                     "model.head.s": (run_settings.NOT_SET, 32.0),
                                                     "train.epochs": (1, 3)}
    with pytest.raises(run_settings.SettingsChanged, match="train.epochs 3 → 2"):
        check(tmp_path, settings(train__epochs=3), settings(train__epochs=2))
    # `auto` that chose otherwise on this machine, or another replica count (the global batch)
    with pytest.raises(run_settings.SettingsChanged, match="replicas 2 → 1, train.precision \"mixed_float16\" → "
                                                           "\"mixed_bfloat16\""):
        check(tmp_path, settings(), settings(), {**AUTO, "precision": "mixed_float16", "replicas": 2},
              {**AUTO, "precision": "mixed_bfloat16"})


def test_allowed_changes_are_appended_to_the_history(tmp_path):
    run_settings.record(tmp_path, {}, "tools/run.py x")
    assert not (tmp_path / "history.jsonl").exists()
    run_settings.record(tmp_path, {"train.lr": (0.1, 0.05)}, "tools/run.py x --allow-changes")
    run_settings.record(tmp_path, {"train.epochs": (1, 2)}, "tools/run.py y")
    entries = [json.loads(line) for line in (tmp_path / "history.jsonl").read_text().splitlines()]
    assert [e["changes"] for e in entries] == [{"train.lr": {"old": 0.1, "new": 0.05}},
                                               {"train.epochs": {"old": 1, "new": 2}}]
    assert entries[0]["command"] == "tools/run.py x --allow-changes" and entries[0]["time"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["history.jsonl"]  # no temp file left


def test_temp_files_of_an_earlier_process_are_removed(tmp_path):
    (tmp_path / "checkpoints").mkdir()
    left = [".tmp-123.weights.h5", ".latest.json.tmp123", "config.json.tmp", "eval_log.csv.tmp", ".embedder.tmp.keras"]
    for name in left:
        (tmp_path / ("checkpoints" if "weights" in name or "latest" in name else ".") / name).write_text("x")
    (tmp_path / "checkpoints" / "ckpt-00000003.weights.h5").write_text("kept")
    run_dir.remove_stale_temp_files(tmp_path)
    assert sorted(str(p.relative_to(tmp_path)) for p in tmp_path.rglob("*") if p.is_file()) == [
        "checkpoints/ckpt-00000003.weights.h5"]
