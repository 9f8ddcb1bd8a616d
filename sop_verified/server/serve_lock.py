"""``serve.lock``: while a server runs, it holds the data directory.

The server takes an exclusive ``flock`` on ``<data_dir>/serve.lock`` (0600,
holding its pid) for as long as it runs; the kernel drops the lock when the
process dies, kill -9 included, so a stale file never blocks a restart. The
CLI asks :func:`holder` before it opens the database for writing: while a
server holds the directory, admin commands go through the admin socket.
"""

from __future__ import annotations

import fcntl
import os
from pathlib import Path

from sop_verified.errors import SOPError

__all__ = ["LOCK_NAME", "ServeLock", "holder"]

LOCK_NAME = "serve.lock"


class ServeLock:
    """The held lock (release it, or let the process end)."""

    def __init__(self, fd: int, path: Path) -> None:
        self._fd = fd
        self.path = path

    @classmethod
    def acquire(cls, data_dir: Path) -> ServeLock:
        """Hold ``data_dir`` for this process.

        Raises:
            SOPError: another process holds it, or it is not a data directory.
        """
        if not (data_dir / "sop.toml").is_file():
            raise SOPError(
                f"no SOP data directory at `{data_dir}`; create one with"
                f" `sop init --data-dir {data_dir}`"
            )
        path = data_dir / LOCK_NAME
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            pid = _read_pid(fd)
            os.close(fd)
            raise SOPError(
                f"a server (pid {pid}) already holds `{data_dir}`; stop it first"
                " (kill -TERM), or talk to it through its admin socket"
            ) from None
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        os.fsync(fd)
        return cls(fd, path)

    def release(self) -> None:
        """Let the directory go (idempotent)."""
        if self._fd >= 0:
            fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = -1


def _read_pid(fd: int) -> str:
    try:
        text = os.pread(fd, 32, 0).decode().strip()
    except (OSError, UnicodeDecodeError):
        return "?"
    return text if text.isascii() and text.isdigit() else "?"


def holder(data_dir: Path) -> int | None:
    """The pid of the server holding ``data_dir``, or None when none does."""
    path = data_dir / LOCK_NAME
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except OSError:
        return None
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        pid = _read_pid(fd)
        return int(pid) if pid.isascii() and pid.isdigit() else -1
    finally:
        os.close(fd)
    return None
