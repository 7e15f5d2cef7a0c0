"""arcface_keras: face recognition training and evaluation on Keras 3."""
from arcface_keras import quiet

quiet.install()  # before anything imports TensorFlow

__version__ = "0.1.0"
