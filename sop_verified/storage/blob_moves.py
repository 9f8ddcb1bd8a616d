"""Is a scope's directory still where its root says? (INV-4 after a write is published.)

A :class:`~sop_verified.storage.blobs.ScopeDir` writes through directory
descriptors it holds, so a write stays confined to *those directories* even if
a path is swapped under it, but a descriptor follows its directory when it is
renamed: a directory moved out of the scope root while a write is in flight
takes the published file with it. After publishing, the write therefore opens
each directory again *by name* from the scopes directory down (``O_NOFOLLOW``,
so a symlink left in a moved directory's place is refused too) and compares
its ``(st_dev, st_ino)`` with the one it held (:func:`moved_from`); if one
moved, the published name is removed through the held descriptor, but only if
it still holds the file just written (:func:`undo_publish`).

Both answer in words for the caller's :class:`~sop_verified.errors.IntegrityError`.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

__all__ = ["FileId", "Trail", "identity", "moved_from", "undo_publish"]

_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC

FileId = tuple[int, int]
"""A file's identity: ``(st_dev, st_ino)``."""

Trail = list[tuple[str, FileId]]
"""Directories opened one below the other: each name and the identity of what it opened."""


def identity(fd: int) -> FileId:
    """The identity of the file open at ``fd``."""
    st = os.fstat(fd)
    return (st.st_dev, st.st_ino)


def _show(ident: FileId) -> str:
    return f"{ident[0]}:{ident[1]}"


def _another(where: str, expected: FileId, found: FileId) -> str:
    return (
        f"`{where}` is another directory (dev:ino `{_show(found)}`,"
        f" expected `{_show(expected)}`): the one written into was moved"
    )


def moved_from(base: Path, base_id: FileId, trail: Sequence[tuple[str, FileId]]) -> str | None:
    """What moved, if a directory from ``base`` down along ``trail`` is not the one held.

    Args:
        base: the scopes directory, opened again by path.
        base_id: its identity when the scope root was opened.
        trail: each directory below ``base`` down to the write's target, with
            the identity of the descriptor the write held.

    Returns:
        None when every directory is in place; otherwise which one is not,
        with the identities expected and found.
    """
    try:
        fd = os.open(base, _DIR_FLAGS)
    except OSError as exc:
        return f"the scopes directory `{base}` cannot be opened again ({exc.strerror})"
    try:
        found = identity(fd)
        if found != base_id:
            return _another(str(base), base_id, found)
        where = ""
        for name, expected in trail:
            where = f"{where}/{name}" if where else name
            try:
                child = os.open(name, _DIR_FLAGS, dir_fd=fd)
            except OSError as exc:
                return (
                    f"the directory `{where}` (dev:ino `{_show(expected)}`) is no longer"
                    f" below the scopes directory ({exc.strerror}): it was moved"
                )
            os.close(fd)
            fd = child
            found = identity(fd)
            if found != expected:
                return _another(where, expected, found)
        return None
    finally:
        os.close(fd)


def undo_publish(dfd: int, leaf: str, written: FileId) -> str:
    """Remove ``leaf`` from the (moved) directory ``dfd`` if it is still the file written.

    Returns:
        What was done, for the message: removed, already gone, or left (another
        file holds the name, or the removal failed); in every case the write is
        not recorded as stored.
    """
    try:
        st = os.stat(leaf, dir_fd=dfd, follow_symlinks=False)
        if (st.st_dev, st.st_ino) != written:
            return (
                f"the name now holds another file (dev:ino `{st.st_dev}:{st.st_ino}`), left"
                " alone; the write is not recorded as stored"
            )
        os.unlink(leaf, dir_fd=dfd)
        os.fsync(dfd)
    except FileNotFoundError:
        return "the published file is already gone; the write is not recorded as stored"
    except OSError as exc:
        return (
            f"removing the published file failed ({exc.strerror}); it stays in the moved"
            " directory and the write is not recorded as stored"
        )
    return "the published file was removed again; the write is not recorded as stored"
