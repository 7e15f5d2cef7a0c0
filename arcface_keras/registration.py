"""The project's Keras-serialisable layers, heads and schedules are registered when Keras is imported.

`keras.saving.load_model` reads an `embedder.keras` the project saved once those classes are
registered. `import arcface_keras` registers them at once when Keras is already imported, and
otherwise as soon as Keras is (whoever imports it first: the user, TensorFlow, our own modules), so
that importing the package alone imports neither Keras nor TensorFlow: the spawned data workers
and the tools that build no model start in a fraction of a second.

"As soon as" means once no module of the package is half-way through its own import: a module of
ours that imports Keras is finished first, so that the registering imports never meet it half-made.
"""
import importlib.abc
import importlib.util
import sys

_importing = []  # the modules (Keras and ours) whose code is running now, outermost first


def register():
    """Import the modules that define the project's Keras-serialisable classes."""
    from arcface_keras.backbones import layers  # noqa: F401
    from arcface_keras.heads import margin, metric  # noqa: F401
    from arcface_keras.training import schedules  # noqa: F401


class _WatchedLoader(importlib.abc.Loader):
    """A module's own loader; once the outermost watched module has run and Keras is imported, the
    finder steps out of the import system and `register` runs."""

    def __init__(self, loader, finder):
        self.loader, self.finder = loader, finder

    def create_module(self, spec):
        return self.loader.create_module(spec)

    def exec_module(self, module):
        _importing.append(module.__name__)
        try:
            self.loader.exec_module(module)
        finally:
            _importing.pop()
        if not _importing and "keras" in sys.modules and self.finder in sys.meta_path:
            sys.meta_path.remove(self.finder)
            register()

    def __getattr__(self, name):  # resource readers and the like come from the real loader
        return getattr(self.loader, name)


class _Finder(importlib.abc.MetaPathFinder):
    """Finds `keras` and the package's modules, wrapping their loaders, until the classes are registered
    (a lookup alone, as TensorFlow makes of Keras before importing it, changes nothing)."""

    def find_spec(self, name, path=None, target=None):
        if name != "keras" and not name.startswith("arcface_keras."):
            return None
        sys.meta_path.remove(self)  # the real finders below answer
        try:
            spec = importlib.util.find_spec(name)
        finally:
            sys.meta_path.insert(0, self)
        if spec is not None and spec.loader is not None:
            spec.loader = _WatchedLoader(spec.loader, self)
        return spec


def install():
    """Register now when Keras is imported, else as soon as it is."""
    if "keras" in sys.modules:
        register()
    elif not any(isinstance(finder, _Finder) for finder in sys.meta_path):
        sys.meta_path.insert(0, _Finder())
