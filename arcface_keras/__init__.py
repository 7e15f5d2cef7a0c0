"""arcface_keras: face recognition training and evaluation on Keras 3.

Importing the package quiets TensorFlow's start-up lines (quiet.py) and registers the project's
Keras-serialisable layers, heads and schedules, so that `keras.saving.load_model` reads anything
the project saved (an `embedder.keras`) after a plain `import arcface_keras`.
"""
from arcface_keras import quiet

quiet.install()  # before anything imports TensorFlow

__version__ = "0.1.0"

from arcface_keras.backbones import layers as _layers  # noqa: E402,F401
from arcface_keras.heads import margin as _margin, metric as _metric  # noqa: E402,F401
from arcface_keras.training import schedules as _schedules  # noqa: E402,F401
