"""TensorFlow starts quietly: its start-up INFO lines never reach stderr, wherever it is first imported.

TF_CPP_MIN_LOG_LEVEL=2 (unless the user set it) hides the C++ INFO and WARNING lines logged once
logging is set up, such as the CPU-feature notice. The oneDNN notice and absl's "before
InitializeLog" warning are written before that, ignoring every setting, so the first import of
tensorflow runs with stderr captured; its lines are then replayed without the INFO records below
the level asked for. Installed by `import arcface_keras`, before anything can import TensorFlow.
"""
import contextlib
import importlib.abc
import importlib.util
import os
import re
import sys
import tempfile

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
_RECORD = re.compile(r"^([IWEF])\d{4} ")  # absl/glog line prefix: severity letter, MMDD
_PRE_INIT_NOTICE = "WARNING: All log messages before absl::InitializeLog() is called are written to STDERR"


def keep_line(line, min_level):
    """Whether a captured start-up line is worth showing at TF_CPP_MIN_LOG_LEVEL `min_level`."""
    if min_level > 0 and line.startswith(_PRE_INIT_NOTICE):
        return False
    record = _RECORD.match(line)
    return record is None or "IWEF".index(record[1]) >= min_level


@contextlib.contextmanager
def filtered_stderr():
    """Capture file descriptor 2 (C++ writes too), then write back the lines `keep_line` keeps."""
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile() as captured:
        os.dup2(captured.fileno(), 2)
        try:
            yield
        finally:
            sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)
            captured.seek(0)
            level = int(os.environ.get("TF_CPP_MIN_LOG_LEVEL", "0") or 0)
            kept = [line for line in captured.read().decode(errors="replace").splitlines(True) if keep_line(line, level)]
            sys.stderr.write("".join(kept))


class _QuietLoader(importlib.abc.Loader):
    """TensorFlow's own loader, executing the package with stderr filtered."""

    def __init__(self, loader):
        self.loader = loader

    def create_module(self, spec):
        return self.loader.create_module(spec)

    def exec_module(self, module):
        with filtered_stderr():
            self.loader.exec_module(module)

    def __getattr__(self, name):  # resource readers and the like come from the real loader
        return getattr(self.loader, name)


class _QuietFinder(importlib.abc.MetaPathFinder):
    """Finds `tensorflow` once, wrapping its loader; then steps out of the import system."""

    def find_spec(self, name, path=None, target=None):
        if name != "tensorflow":
            return None
        sys.meta_path.remove(self)
        spec = importlib.util.find_spec(name)
        if spec is not None and spec.loader is not None:
            spec.loader = _QuietLoader(spec.loader)
        return spec


def install():
    """Quiet the first import of tensorflow (nothing to do when it is already imported)."""
    if "tensorflow" not in sys.modules and not any(isinstance(f, _QuietFinder) for f in sys.meta_path):
        sys.meta_path.insert(0, _QuietFinder())
