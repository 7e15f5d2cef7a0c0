"""Tools start without TensorFlow's start-up chatter on stderr (absl pre-init notice, oneDNN and CPU lines)."""
import os
import re
import subprocess
import sys

import cv2
import numpy as np

CHATTER = re.compile(r"absl::InitializeLog|oneDNN custom operations|cpu_feature_guard|^[IW]\d{4} \S+ +\d+ \S+:\d+\]"
                     r"|To enable the following instructions")


def test_a_tool_run_prints_no_tensorflow_startup_lines(tmp_path, repo_root):
    for person in ("a", "b"):  # two identities: the converter refuses fewer
        for k in range(2):
            (tmp_path / "faces" / person).mkdir(parents=True, exist_ok=True)
            cv2.imwrite(str(tmp_path / "faces" / person / f"{k}.jpg"), np.full((8, 8, 3), 40 * k, np.uint8))
    env = {key: value for key, value in os.environ.items() if not key.startswith("TF_CPP")}  # as a user starts it
    run = subprocess.run(
        [sys.executable, str(repo_root / "tools" / "make_tfrecord.py"), "--source", str(tmp_path / "faces"),
         "--out", str(tmp_path / "out"), "--shards", "1", "--quiet", "--verify"],
        env=env, capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr
    assert "verified 1 shards" in run.stdout  # TensorFlow was imported and used
    assert not [line for line in run.stderr.splitlines() if CHATTER.search(line)], run.stderr
