"""Run a tool with the CPU split into two logical devices (two MirroredStrategy replicas), as a user
with two GPUs would run it; `--then` runs another command after it in the same process:

    python tests/two_cpus.py tools/run.py EXPERIMENT --set train.strategy=mirrored ... [--then tools/run.py ...]
"""
import os
import runpy
import sys
from pathlib import Path

os.environ.setdefault("KERAS_BACKEND", "tensorflow")
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import arcface_keras  # noqa: E402,F401  (first: TensorFlow starts quietly)
import tensorflow as tf  # noqa: E402

cpu = tf.config.list_physical_devices("CPU")[0]
tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
commands = [[]]
for arg in sys.argv[1:]:
    if arg == "--then":
        commands.append([])
    else:
        commands[-1].append(arg)
for command in commands:
    sys.argv = command
    runpy.run_path(sys.argv[0], run_name="__main__")
