"""Code run around a module's import, without importing it (TensorFlow's quiet start, the registration
of our Keras classes): a finder wraps the loaders of the modules it wants until it steps out. A lookup
alone (`importlib.util.find_spec`, as tools/run.py makes of TensorFlow and TensorFlow of Keras)
leaves it in place, so that the real import later still comes through it."""
import importlib.abc
import importlib.util
import sys


class _Loader(importlib.abc.Loader):
    """A module's own loader, executing the module through its finder's `run`."""

    def __init__(self, loader, finder):
        self.loader, self.finder = loader, finder

    def create_module(self, spec):
        return self.loader.create_module(spec)

    def exec_module(self, module):
        self.finder.run(module, lambda: self.loader.exec_module(module))

    def __getattr__(self, name):  # resource readers and the like come from the real loader
        return getattr(self.loader, name)


class Finder(importlib.abc.MetaPathFinder):
    """Subclasses say which modules they want and what runs around their code: `run(module, execute)`."""

    def wants(self, name):
        raise NotImplementedError

    def run(self, module, execute):
        execute()

    def find_spec(self, name, path=None, target=None):
        if not self.wants(name):
            return None
        sys.meta_path.remove(self)  # the real finders below answer
        try:
            spec = importlib.util.find_spec(name)
        finally:
            sys.meta_path.insert(0, self)
        if spec is not None and spec.loader is not None:
            spec.loader = _Loader(spec.loader, self)
        return spec

    def install(self):
        """First in the import system, unless a finder of this kind is there already."""
        if not any(type(finder) is type(self) for finder in sys.meta_path):
            sys.meta_path.insert(0, self)

    def step_out(self):
        if self in sys.meta_path:
            sys.meta_path.remove(self)
