"""arcface_keras: face recognition training and evaluation on Keras 3.

Importing the package quiets TensorFlow's start-up lines (quiet.py) and has the project's
Keras-serialisable layers, heads and schedules registered as soon as Keras is imported
(registration.py), so that `keras.saving.load_model` reads anything the project saved (an
`embedder.keras`) after a plain `import arcface_keras`; the package alone imports neither.
"""
from arcface_keras import quiet, registration

quiet.install()  # before anything imports TensorFlow
registration.install()

__version__ = "0.1.0"
