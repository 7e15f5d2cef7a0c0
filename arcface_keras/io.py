"""Small file helpers: atomic writes, so that nothing is ever left half-written."""
import contextlib
import json
import os
from pathlib import Path


@contextlib.contextmanager
def atomic_path(path):
    """Yield a temporary sibling path; on success it is renamed onto `path`, on error removed."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


def unwritable(path):
    """Why a file could not be written at `path` (its folder created if need be), or None: checked before
    a long job, so that its result is not lost at the end."""
    path = Path(path)
    if path.is_dir():
        return f"{path}: is a folder, expected a file name"
    folder = path.parent
    while not folder.exists() and folder != folder.parent:
        folder = folder.parent
    if not folder.is_dir():
        return f"{path}: {folder} is a file, not a folder"
    if not os.access(folder, os.W_OK | os.X_OK):
        return f"{path}: {folder} is not writable"
    return None


def write_json(path, data):
    """Write `data` as indented JSON, atomically."""
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(data, indent=2, sort_keys=True, default=str) + "\n")


def write_text(path, text):
    with atomic_path(path) as tmp:
        tmp.write_text(text)
