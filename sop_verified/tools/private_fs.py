"""Files 0600 and directories 0700, whatever the caller's umask.

Everything SOP creates (the data directory and all below it, the scope roots
and the blobs and temporary files under them, exports) is private to the user
SOP runs as: the database holds capabilities and verdicts, the key files hold
secrets, and a world-readable manifest or blob leaks what SOP protects. The
mode is given at creation (``os.open``/``os.mkdir`` with a mode), never by
changing the process umask: SOP is a library, and the umask belongs to the
process that embeds it. A umask can only take bits away, so the mode is then
set exactly with ``fchmod`` on the descriptor just created (a umask of 0o700
would otherwise leave files SOP cannot read back). A file or directory that
already existed is not SOP's to change and is left as it is.
"""

from __future__ import annotations

import os
import secrets
from pathlib import Path

__all__ = [
    "DIR_MODE",
    "FILE_MODE",
    "create_private_file",
    "ensure_private_file",
    "make_private_dir",
    "set_private_dir",
    "write_private",
    "write_private_new",
]

FILE_MODE = 0o600
"""The mode of every file SOP creates."""

DIR_MODE = 0o700
"""The mode of every directory SOP creates."""

_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
_NEW_FLAGS = os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC


def create_private_file(
    path: Path | str, flags: int = os.O_WRONLY, *, dir_fd: int | None = None
) -> int:
    """Create ``path`` (never an existing name, never through a symlink) mode 0600.

    Args:
        path: The new file (relative to ``dir_fd`` when given).
        flags: Access flags added to ``O_CREAT|O_EXCL|O_NOFOLLOW|O_CLOEXEC``.
        dir_fd: A directory descriptor ``path`` is relative to.

    Returns:
        The open descriptor (the caller closes it).

    Raises:
        OSError: the name exists or the file cannot be created.
    """
    fd = os.open(path, flags | _NEW_FLAGS, FILE_MODE, dir_fd=dir_fd)
    try:
        os.fchmod(fd, FILE_MODE)  # exactly 0600: the umask only ever took bits away
    except BaseException:
        os.close(fd)
        raise
    return fd


def ensure_private_file(path: Path) -> bool:
    """Create ``path`` empty and 0600 unless it exists; True if it was created.

    SQLite creates a missing database file with the umask's mode and gives its
    ``-wal`` and ``-shm`` files the database file's mode, so the database file
    is created here before SQLite opens it.

    Raises:
        OSError: the file cannot be created.
    """
    try:
        fd = create_private_file(path)
    except FileExistsError:
        return False
    os.close(fd)
    return True


def set_private_dir(fd: int) -> None:
    """Set the directory open as ``fd`` (one SOP just created) to exactly 0700."""
    os.fchmod(fd, DIR_MODE)


def make_private_dir(path: Path) -> None:
    """Create the directory ``path`` and any missing parents, each 0700 (like ``mkdir -p``).

    A directory that already exists (``path`` or a parent) is left as it is.

    Raises:
        FileExistsError: ``path`` exists and is not a directory.
        OSError: a directory cannot be created.
    """
    missing = []
    walk = Path(path)
    while not os.path.lexists(walk) and walk != walk.parent:
        missing.append(walk)
        walk = walk.parent
    for directory in reversed(missing):
        try:
            os.mkdir(directory, DIR_MODE)
        except FileExistsError:
            continue  # made meanwhile by someone else: not ours to change
        fd = os.open(directory, _DIR_FLAGS)
        try:
            set_private_dir(fd)
        finally:
            os.close(fd)
    if not os.path.isdir(path):
        raise FileExistsError(f"`{path}` exists and is not a directory")


def write_private(path: Path, data: bytes) -> None:
    """Replace ``path`` atomically with ``data``, mode 0600 (temp file, fsync, rename, fsync dir).

    Args:
        path: The destination (its directory must exist).
        data: The content.

    Raises:
        OSError: the file cannot be written.
    """
    tmp = path.with_name(path.name + ".tmp")
    tmp.unlink(missing_ok=True)  # a leftover of a crash: the new temp file is never shared
    fd = create_private_file(tmp)
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view) :]
        os.fsync(fd)
    except BaseException:
        os.close(fd)
        tmp.unlink(missing_ok=True)
        raise
    os.close(fd)
    os.replace(tmp, path)
    dfd = os.open(path.parent, _DIR_FLAGS)
    try:
        os.fsync(dfd)  # the new name is durable
    finally:
        os.close(dfd)


def write_private_new(path: Path, data: bytes) -> None:
    """Create ``path`` holding ``data``, mode 0600, atomically, never replacing an existing name.

    The bytes go to a fresh temporary file first (fsynced), which is then hard-linked to
    ``path``: the link fails when ``path`` exists (a symlink included), so nothing is ever
    overwritten, and ``path`` never holds part of ``data``.

    Args:
        path: The new file (its directory must exist).
        data: The content.

    Raises:
        FileExistsError: ``path`` exists.
        OSError: the file cannot be written.
    """
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(8)}.tmp")
    fd = create_private_file(tmp)
    try:
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view) :]
            os.fsync(fd)
        finally:
            os.close(fd)
        os.link(tmp, path, follow_symlinks=False)
    finally:
        tmp.unlink(missing_ok=True)
    dfd = os.open(path.parent, _DIR_FLAGS)
    try:
        os.fsync(dfd)  # the new name is durable
    finally:
        os.close(dfd)
