"""TensorFlow starts quietly: its start-up INFO lines never reach stderr, wherever it is first imported.

TF_CPP_MIN_LOG_LEVEL=2 (unless the user set it) hides the C++ INFO and WARNING lines logged once
logging is set up, such as the CPU-feature notice. The oneDNN notice and absl's "before
InitializeLog" warning are written before that, ignoring every setting, so the first import of
tensorflow runs with stderr captured; its lines are then replayed without the INFO records below
the level asked for. Installed by `import arcface_keras`, before anything can import TensorFlow.
"""
import contextlib
import os
import re
import sys
import tempfile

from arcface_keras import import_hooks

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


class _QuietFinder(import_hooks.Finder):
    """Imports `tensorflow` with stderr filtered, once; then steps out of the import system."""

    def wants(self, name):
        return name == "tensorflow"

    def run(self, module, execute):
        self.step_out()
        with filtered_stderr():
            execute()


def install():
    """Quiet the first import of tensorflow (nothing to do when it is already imported)."""
    if "tensorflow" not in sys.modules:
        _QuietFinder().install()
