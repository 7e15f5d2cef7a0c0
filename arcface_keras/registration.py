"""The project's Keras-serialisable layers, heads and schedules are registered when Keras is imported.

`keras.saving.load_model` reads an `embedder.keras` the project saved once those classes are
registered. `import arcface_keras` registers them at once when Keras is already imported, and
otherwise as soon as Keras is (whoever imports it first: the user, TensorFlow, our own modules), so
that importing the package alone imports neither Keras nor TensorFlow: the spawned data workers
and the tools that build no model start in a fraction of a second.

"As soon as" means once no module of the package is half-way through its own import: a module of
ours that imports Keras is finished first, so that the registering imports never meet it half-made.
"""
import sys

from arcface_keras import import_hooks


def register():
    """Import the modules that define the project's Keras-serialisable classes."""
    from arcface_keras.backbones import layers  # noqa: F401
    from arcface_keras.heads import margin, metric  # noqa: F401
    from arcface_keras.training import schedules  # noqa: F401


class _RegisteringFinder(import_hooks.Finder):
    """Watches Keras and the package's modules; once the outermost of them has run and Keras is imported,
    steps out of the import system and registers."""

    def __init__(self):
        self.importing = []  # the watched modules whose code is running now, outermost first

    def wants(self, name):
        return name == "keras" or name.startswith("arcface_keras.")

    def run(self, module, execute):
        self.importing.append(module.__name__)
        try:
            execute()
        finally:
            self.importing.pop()
        if not self.importing and "keras" in sys.modules and self in sys.meta_path:
            self.step_out()
            register()


def install():
    """Register now when Keras is imported, else as soon as it is."""
    if "keras" in sys.modules:
        register()
    else:
        _RegisteringFinder().install()
