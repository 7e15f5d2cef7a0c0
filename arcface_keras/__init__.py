"""arcface_keras: face recognition training and evaluation on Keras 3."""
__version__ = "0.1.0"
