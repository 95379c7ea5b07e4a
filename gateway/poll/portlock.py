"""The port lock: <state_dir>/<bus>.lock, fcntl.flock'ed by whoever has the
serial port open (the daemon's bus task, or `edgegw scan`/`edgegw read` when
no daemon runs). Two masters on one RS-485 line garble each other's frames.

It lives in the state dir rather than /run/lock so two gateways on one box (a
test rig, the demo beside a site config) never block each other by bus name,
while the daemon and the CLI of one site, which read the same config, always
meet on the same file.
"""
from __future__ import annotations

import errno
import fcntl
import os
import sys
from pathlib import Path


def lock_path(state_dir, bus_name: str) -> Path:
    return Path(state_dir) / f"{bus_name}.lock"


def _whoami() -> str:
    argv = sys.argv
    prog = os.path.basename(argv[0]) if argv and argv[0] else "python"
    if prog in ("cli.py", "__main__.py", "edgegw", "-c", "-m"):
        prog = "edgegw"
    sub = argv[1] if len(argv) > 1 and not argv[1].startswith("-") else ""
    return f"{prog} {sub}".strip()


class PortLock:
    """An exclusive flock on a file; the file says who holds it (for the message)."""

    def __init__(self, path) -> None:
        self.path = Path(path)
        self.fd: int | None = None
        self.held = False

    def acquire(self) -> str | None:
        """None when held by us now, else why not ("in use by pid 12 (edgegw run)")."""
        if self.held:
            return None
        if self.fd is None:
            try:
                self.path.parent.mkdir(mode=0o750, parents=True, exist_ok=True)
                self.fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o640)
            except OSError as exc:
                # A group member may lock the daemon's existing file read-only;
                # so may the daemon on a read-only filesystem.
                if not isinstance(exc, PermissionError) and exc.errno != errno.EROFS:
                    return f"cannot open the lock file {self.path}: {exc.strerror}"
                try:
                    self.fd = os.open(self.path, os.O_RDONLY)
                except OSError as exc2:
                    if exc.errno == errno.EROFS:
                        # Nothing can create it on a read-only filesystem, so
                        # no other tool can hold it either: polling goes on.
                        self.held = True
                        return None
                    return f"cannot open the lock file {self.path}: {exc2.strerror}"
        try:
            fcntl.flock(self.fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return f"in use by {self.holder() or 'another process'} (lock {self.path})"
        except OSError as exc:
            return f"cannot lock {self.path}: {exc.strerror}"
        self.held = True
        try:
            os.ftruncate(self.fd, 0)
            os.pwrite(self.fd, f"pid {os.getpid()} ({_whoami()})\n".encode(), 0)
        except OSError:
            pass   # opened read-only: the lock holds all the same
        return None

    def holder(self) -> str:
        try:
            return self.path.read_text(errors="replace").strip()
        except OSError:
            return ""

    def release(self) -> None:
        if self.fd is not None:
            try:
                fcntl.flock(self.fd, fcntl.LOCK_UN)
            finally:
                os.close(self.fd)
            self.fd = None
        self.held = False
