"""One process owns a run directory: a lock naming it, taken before anything is written and given
back at exit; once held, the temp files of an earlier process are removed; a write that fails is
one line naming the file and the free space.

The lock is `run.lock`, created with O_CREAT|O_EXCL, holding the holder's pid, host, start time,
boot id, process start ticks and command. While it is held a thread refreshes its mtime every
HEARTBEAT_SECONDS. A lock whose holder is gone is taken over:
  same host   the pid no longer runs, or runs another process (its start ticks differ: pids are
              reused), or the machine has booted since (another boot id)
  other host  (a shared filesystem) its heartbeat is older than STALE_AFTER_SECONDS
Only the chief of a multi-worker run takes the lock: the other workers write nothing here.
"""
import contextlib
import errno
import json
import os
import shutil
import socket
import sys
import threading
import time
from pathlib import Path

LOCK = "run.lock"
HEARTBEAT_SECONDS = 30
STALE_AFTER_SECONDS = 600
DISK_ERRNOS = {errno.ENOSPC, errno.EDQUOT, errno.EFBIG, errno.EIO, errno.EROFS}
TEMP_PATTERNS = [".tmp-*.weights.h5", ".*.tmp[0-9]*", "*.json.tmp", "*.csv.tmp", ".embedder.tmp.keras"]


class RunError(Exception):
    """A run refused or ended for a reason its message says in one line (the file or key, and what to do)."""


class RunLock:
    """`with RunLock(directory, command):` holds `directory/run.lock` (creating the directory) or raises
    RunError naming the holder; at exit the lock is removed, and the folders it made too if they are still empty."""

    def __init__(self, directory, command=""):
        self.directory = Path(directory)
        self.path = self.directory / LOCK
        self.me = holder_record(command)
        self.created = []  # the folders this lock made, deepest first
        self.stop = threading.Event()

    def __enter__(self):
        self.created = [p for p in (self.directory, *self.directory.parents) if not p.exists()]
        try:
            self.directory.mkdir(parents=True, exist_ok=True)
            self.acquire()
        except OSError as exc:
            self.remove_if_created()
            raise RunError(f"cannot lock {self.path}: {exc.strerror}") from None
        except RunError:
            self.remove_if_created()
            raise
        threading.Thread(target=self.beat, name="run.lock heartbeat", daemon=True).start()
        return self

    def __exit__(self, *exc):
        self.stop.set()
        if read_lock(self.path)[0] == self.me:
            self.path.unlink(missing_ok=True)
        self.remove_if_created()

    def remove_if_created(self):
        with contextlib.suppress(OSError):  # only when empty: a run that wrote nothing leaves nothing
            for folder in self.created:
                folder.rmdir()

    def acquire(self):
        for _ in range(3):
            try:
                create_exclusive(self.path, json.dumps(self.me, sort_keys=True))
                return
            except FileExistsError:
                held, text = read_lock(self.path)
                if not is_stale(held, self.path):
                    raise RunError(held_message(self.directory, held)) from None
                if read_lock(self.path)[1] == text:  # still the lock judged stale: take it over
                    self.path.unlink(missing_ok=True)
        raise RunError(f"{self.path}: another process keeps taking the lock; try again")

    def beat(self):
        while not self.stop.wait(HEARTBEAT_SECONDS):
            with contextlib.suppress(OSError):
                os.utime(self.path)


def holder_record(command):
    pid = os.getpid()
    return {"pid": pid, "host": socket.gethostname(), "started": time.strftime("%Y-%m-%d %H:%M:%S %z"),
            "boot_id": boot_id(), "process_start": process_start(pid), "command": command}


def create_exclusive(path, text):
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
    try:
        os.write(fd, text.encode())
    finally:
        os.close(fd)


def read_lock(path):
    """(the holder record or None, the raw text); a lock being written or damaged reads as None."""
    try:
        text = Path(path).read_text()
    except OSError:
        return None, None
    try:
        return json.loads(text), text
    except ValueError:
        return None, text


def is_stale(held, path):
    """Whether the holder of a lock is gone (see the module docstring)."""
    same_host = held is not None and held.get("host") == socket.gethostname()
    if not same_host:
        try:
            return time.time() - Path(path).stat().st_mtime > STALE_AFTER_SECONDS
        except FileNotFoundError:
            return True
    if held.get("boot_id") and boot_id() and held["boot_id"] != boot_id():
        return True
    pid = int(held["pid"])
    if not pid_alive(pid):
        return True
    started = held.get("process_start")
    return started is not None and process_start(pid) not in (None, started)


def pid_alive(pid):
    """Whether process `pid` runs (a zombie, ended but not yet reaped, does not)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process
        pass
    return proc_stat(pid)[0] != "Z"


def process_start(pid):
    """The process's start time in clock ticks after boot (/proc/<pid>/stat field 22), or None."""
    return proc_stat(pid)[1]


def proc_stat(pid):
    """(state, start ticks) of process `pid` from /proc/<pid>/stat; (None, None) where there is no /proc."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None, None
    fields = stat[stat.rindex(")") + 2:].split()  # after "pid (comm) ": field 3 (state) onwards
    return fields[0], int(fields[19])


def boot_id():
    with contextlib.suppress(OSError):
        return Path("/proc/sys/kernel/random/boot_id").read_text().strip()
    return None


def held_message(directory, held):
    if held is None:
        return f"{directory} is in use: its {LOCK} is being written by another process"
    return (f"{directory} is in use by pid {held['pid']} on {held['host']} since {held['started']} ({LOCK}): "
            "wait for it to end or stop it (a lock whose process has ended is taken over)")


def remove_stale_temp_files(directory):
    """Remove the temp files that an earlier process of this run left (killed, or the disk full)."""
    for folder in (Path(directory), Path(directory) / "checkpoints"):
        for pattern in TEMP_PATTERNS:
            for path in folder.glob(pattern):
                if path.is_file():
                    path.unlink()


def write_failure(exc, run_dir, newest_step):
    """A RunError for an OSError of a full or failing disk (None for any other error): the file, the
    free space there and the newest intact checkpoint."""
    if not isinstance(exc, OSError) or exc.errno not in DISK_ERRNOS:
        return None
    path = Path(exc.filename or run_dir)
    kept = f"the newest checkpoint (step {newest_step}) is intact" if newest_step is not None else "no checkpoint yet"
    return RunError(f"cannot write {path}: {exc.strerror} ({free_space(path)} free there); {kept}: "
                    "make room and rerun the same command")


def free_space(path):
    """The free space on the filesystem of `path` (its nearest existing parent), e.g. '1.2 GB'."""
    path = Path(path)
    while not path.exists() and path != path.parent:
        path = path.parent
    free = float(shutil.disk_usage(path).free)
    for unit in ("B", "KB", "MB", "GB"):
        if free < 1000:
            return f"{free:.1f} {unit}"
        free /= 1000
    return f"{free:.1f} TB"


def command_line(command):
    return " ".join(command or sys.argv)
