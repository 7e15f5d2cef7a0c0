"""kill -9, SIGTERM, a full disk and SIGINT stop a run of tools/run.py; each rerun of the same command resumes, and
the run ends equal to one uninterrupted run (trained once for the file). Also: one process per run, and the rerun
rule on a stopped and on a finished run."""
import contextlib
import csv
import gc
import json
import os
import re
import resource
import shutil
import signal
import subprocess
import sys
import time

import pytest
from conftest import ROOT, process_env
from tiny_runs import (Lines, Training, assert_same_arrays, checkpoint_arrays, file_states, latest_step,
                       progress_step, run_args, stopped_at)


def exit_code_in_process(argv, stdout=None):
    """tools/run.py's main in this process, which must exit with an error or a signal's code: that code. The
    stopped run is freed at once: left in the exception's reference cycles, its tf.data iterators would be
    destroyed by some later garbage collection in this process, and TensorFlow's destructor waits for the
    iterator's autotuning thread to wake next, seconds later for an iterator idle some 30 s (up to 60 s)."""
    from tools import run as run_tool

    try:
        with contextlib.redirect_stdout(stdout or sys.stdout):
            run_tool.main(argv)
    except SystemExit as exc:
        code = exc.code
    else:
        raise AssertionError(f"tools/run.py {' '.join(argv)} did not stop")
    gc.collect()
    return code


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


def test_signals_and_a_full_disk_stop_a_run_that_resumes_exactly(resumable, tmp_path, monkeypatch, capsys):
    """SIGTERM, a full disk and SIGINT in turn, each time rerun with the same command: the run ends with every
    array of its final checkpoint equal to the uninterrupted run's. Checkpoints only at the end of a fit
    (train.save_steps=0, a key free to differ from the reference's), so that a signal's checkpoint is its own.
    SIGTERM comes to this process, sent to itself when the run prints step 2; SIGINT goes to a tools/run.py
    process (tests/test_signals_mirrored.py sends SIGTERM to one). The reruns between them run in this process
    (no TensorFlow start-up each), the full disk as RLIMIT_FSIZE (`ulimit -f`; Python ignores SIGXFSZ, so
    writes fail EFBIG).

    On the way: a rerun with other settings is refused in one line and writes nothing (also when allowed, as
    the checkpoint does not fit); a second process on the run is refused in one line naming the holder;
    a temp file of a killed process is removed; a lock from another host whose heartbeat stopped is taken over.
    """
    overrides, _, reference = resumable
    command = [sys.executable, "tools/run.py", *run_args(overrides + [f"log.work_dir={tmp_path}", "train.save_steps=0"])]
    run_dir = tmp_path / "demo_synth_mfn_arc"
    monkeypatch.chdir(ROOT)
    from tools import run as run_tool

    sent = []

    def term_at_step_2(line):
        if not sent and (progress_step(line) or 0) >= 2:
            sent.append(signal.SIGTERM)
            os.kill(os.getpid(), signal.SIGTERM)

    code = exit_code_in_process(command[2:], Lines(term_at_step_2))
    term = stopped_at(code, capsys.readouterr().err.strip().splitlines(), "SIGTERM", 143)
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
    checkpoint_size = max(path.stat().st_size for path in (run_dir / "checkpoints").glob("ckpt-*.weights.h5"))
    resource.setrlimit(resource.RLIMIT_FSIZE, (checkpoint_size // 2, limits[1]))  # the next checkpoint does not fit
    try:
        full = exit_code_in_process(command[2:])
    finally:
        resource.setrlimit(resource.RLIMIT_FSIZE, limits)
    assert re.fullmatch(rf"error: cannot write {re.escape(str(run_dir))}/checkpoints/ckpt-\d{{8}}\.weights\.h5: File "
                        rf"too large \(\S+ \w?B free there\); the newest checkpoint \(step {term}\) is intact: make "
                        "room and rerun the same command", str(full)), full
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
