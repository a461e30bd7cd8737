"""Which runs are still going: a run holds a lock for as long as its requests are in its hands.

A Run takes `<store>/runs/<run_id>.lock` (an exclusive `flock`) before it journals its requests and
lets go once each has its outcome. Resume, in this kernel or another, takes over only the entries of
runs whose lock it can take: a run still going (its create on the wire, its task being polled) is left
to it. Reconciling a create that is still on the wire would find no task yet, call it "not billed" and
finish the entry under the run that is about to get the task. The operating system drops a lock when
its process ends, so a crashed or restarted kernel's runs are free to resume at once.

`flock` locks belong to an open file, not a process: two Runs of one kernel exclude each other too.
The store's SQLite index in WAL mode is shared by processes of one machine only, and so are these
locks. Without `fcntl` (Windows), or on a filesystem without locks, every lock is taken at once:
resume then takes every entry, as it did before runs had locks.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import os
import re
from pathlib import Path

try:
    import fcntl
except ImportError:  # pragma: no cover - Windows
    fcntl = None  # type: ignore[assignment]

__all__ = ["LOCKS_DIR", "RunLock", "hold"]

LOCKS_DIR = "runs"
_NO_LOCKS = {errno.ENOLCK, errno.EOPNOTSUPP, errno.ENOTSUP, errno.EINVAL}
_SAFE_ID = re.compile(r"[0-9A-Za-z_-]{1,64}")


class RunLock:
    """A held run lock; `release()` lets it go (and removes its file)."""

    def __init__(self, path: Path, fd: int | None) -> None:
        self.path, self._fd, self._released = path, fd, False  # fd None: a lock that excludes no one

    def release(self) -> None:
        if self._released:
            return
        self._released = True
        with contextlib.suppress(OSError):
            self.path.unlink()  # while still held: whoever opens the name next makes a new file
        if self._fd is not None:
            os.close(self._fd)

    def __repr__(self) -> str:
        return f"<RunLock {self.path.stem} {'released' if self._released else 'held'}>"


def _file_name(run_id: str) -> str:
    """Our run ids (uuid4 hex) as they are; any other (a store someone else wrote) hashed, so that no id
    can name a file outside the store's `runs/` folder."""
    if _SAFE_ID.fullmatch(run_id):
        return run_id
    return "h-" + hashlib.sha256(run_id.encode("utf-8", "surrogatepass")).hexdigest()[:32]


def hold(root: Path, run_id: str) -> RunLock | None:
    """Run `run_id`'s lock in the store at `root`, or None while a live run holds it (here or elsewhere).

    Raises OSError when the lock file cannot be made (a read-only store: checked before a run starts).
    """
    folder = root / LOCKS_DIR
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{_file_name(run_id)}.lock"
    if fcntl is None:  # pragma: no cover - Windows
        return RunLock(path, None)
    while True:
        fd = os.open(path, os.O_RDONLY | os.O_CREAT, 0o666)  # flock needs no write access: another user's file works
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            return None
        except OSError as exc:  # a filesystem without locks (ENOLCK, EOPNOTSUPP): no exclusion, as on Windows
            os.close(fd)
            if exc.errno not in _NO_LOCKS:
                raise
            return RunLock(path, None)
        except BaseException:
            os.close(fd)
            raise
        # The holder we waited out may have removed the file (release) after we opened it: a lock on a
        # removed file excludes no one, so take the lock on the file now under that name.
        try:
            same = os.path.samestat(os.fstat(fd), os.stat(path))
        except FileNotFoundError:
            same = False
        if same:
            return RunLock(path, fd)
        os.close(fd)
