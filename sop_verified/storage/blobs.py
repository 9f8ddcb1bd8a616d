"""Scope directories at the file-descriptor level: confined, durable, verified (INV-4).

A :class:`ScopeDir` opens its scope root once, as a directory descriptor, and
resolves every path below it one component at a time, each relative to the
descriptor of the one before, with ``O_NOFOLLOW``: a symlink anywhere on the
path (in the middle or as the last component) is refused, never followed. A
directory on another device (a mount point) is refused, and so is a file with
more than one link (a hard link planted inside a scope could alias a file
outside it). Names are checked here again although requests were already
parsed (defence in depth): no empty, ``.`` or ``..`` component, no NUL, no
backslash, no absolute path, nothing outside ``A-Za-z0-9._~@+=,-`` (so no
Unicode look-alike of a dot or a slash), no name over :data:`MAX_NAME_LEN`,
no name starting with the reserved ``.sop-``.

Writes are durable before they return: the bytes go to a temporary file in
the target directory (``O_CREAT|O_EXCL|O_NOFOLLOW``, random name), which is
fsynced and then published under its final name, either by ``rename``
(replace) or by ``link`` (exclusive: never overwrites), and the directory is
fsynced. After publishing, the write checks that the directory it published
into is still where the scope root says: each directory from the scopes
directory down to the target is opened again *by name* (``O_NOFOLLOW``) and
its device and inode compared with those of the descriptors the write held. A
directory renamed out of the root while the write was in flight (the held
descriptor follows it) fails that check: the published file is removed
through the held descriptor (if the name still holds the file just written)
and an :class:`~sop_verified.errors.IntegrityError` says which directory
moved. Reads open a regular single-link file, refuse anything larger than
the caller's limit, and compare its SHA-256 with the expected digest: a
mismatch is an :class:`~sop_verified.errors.IntegrityError`.

Refusals raise :class:`~sop_verified.errors.ConfinementError` (with a
``code``), a missing object or a refused overwrite a
:class:`~sop_verified.errors.PersistenceError`, any other OS failure a
:class:`~sop_verified.errors.StorageError`.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import os
import secrets
import stat
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from sop_verified.errors import ConfinementError, IntegrityError, PersistenceError, StorageError
from sop_verified.storage.blob_moves import FileId, Trail, identity, moved_from, undo_publish
from sop_verified.storage.blob_names import (
    MAX_NAME_LEN,
    RESERVED_PREFIX,
    TEMP_PREFIX,
    refuse,
    split_relative,
)
from sop_verified.tools.private_fs import DIR_MODE, create_private_file, set_private_dir

__all__ = ["MAX_NAME_LEN", "RESERVED_PREFIX", "TEMP_PREFIX", "ScopeDir", "split_relative"]

_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
_READ_FLAGS = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC
_CHUNK = 1 << 20
_Refusal = ConfinementError | StorageError


class ScopeDir:
    """One scope root, held open as a directory descriptor; every access stays below it."""

    def __init__(self, base: Path, root: str) -> None:
        """Open (creating if missing) ``base/root`` without following any symlink.

        Args:
            base: the trusted directory holding the scope roots (``<data>/scopes``).
            root: the scope root relative to ``base``.

        Raises:
            ConfinementError: ``root`` is malformed, or a component is a symlink
                or not a directory.
            StorageError: the directory cannot be opened or created.
        """
        self.root = root
        self.path = base / root
        self._base = base
        parts = split_relative(root, where="scope root")
        try:
            fd = os.open(base, _DIR_FLAGS)
        except OSError as exc:
            raise StorageError(f"cannot open the scopes directory `{base}`: {exc}") from exc
        self._fd = fd
        st = os.fstat(fd)
        self._dev = st.st_dev
        self._base_id: FileId = (st.st_dev, st.st_ino)
        self._root_trail: Trail = []  # the root's directories, from ``base`` down
        try:
            for part in parts:
                child = self._open_dir(
                    self._fd, part, create=True, where=root, trail=self._root_trail
                )
                os.close(self._fd)
                self._fd = child
        except BaseException:
            os.close(self._fd)
            raise

    def close(self) -> None:
        """Release the root descriptor."""
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1

    # ---- resolution -------------------------------------------------------------------
    def _open_dir(
        self, parent: int, name: str, *, create: bool, where: str, trail: Trail | None = None
    ) -> int:
        try:
            fd = os.open(name, _DIR_FLAGS, dir_fd=parent)
        except FileNotFoundError:
            if not create:
                raise PersistenceError(f"no stored object at `{where}`", code="not_found") from None
            try:
                os.mkdir(name, DIR_MODE, dir_fd=parent)
                os.fsync(parent)  # the new directory's entry is durable
            except FileExistsError:  # created meanwhile, or planted: the open decides
                return self._open_dir(parent, name, create=False, where=where, trail=trail)
            except OSError as exc:
                raise StorageError(f"cannot create a directory at `{where}`: {exc}") from exc
            fd = self._open_dir(parent, name, create=False, where=where, trail=trail)
            try:
                set_private_dir(fd)  # exactly 0700, whatever the umask
            except OSError as exc:
                os.close(fd)
                raise StorageError(f"cannot set the mode of `{where}`: {exc}") from exc
            return fd
        except OSError as exc:
            raise _classify(parent, name, exc, where) from None
        st = os.fstat(fd)
        if st.st_dev != self._dev:
            os.close(fd)
            raise refuse(f"`{name}` is on another device (a mount point)", "mount_point", where)
        if trail is not None:
            trail.append((name, (st.st_dev, st.st_ino)))
        return fd

    @contextmanager
    def _directory(
        self, parts: tuple[str, ...], *, create: bool, where: str, trail: Trail | None = None
    ) -> Iterator[int]:
        """Yield a descriptor of the directory ``parts`` below the root (component by component).

        ``trail``, if given, gets the name and identity of each directory opened below the root.
        """
        if self._fd < 0:
            raise StorageError(f"the scope directory `{self.root}` is closed")
        fd = self._fd
        try:
            for part in parts:  # spec: INV-4 — each component relative to the last, O_NOFOLLOW
                child = self._open_dir(fd, part, create=create, where=where, trail=trail)
                if fd != self._fd:
                    os.close(fd)
                fd = child
            yield fd
        finally:
            if fd != self._fd:
                os.close(fd)

    # ---- reads -------------------------------------------------------------------------
    def read(self, rel: str, *, max_bytes: int, expected_hex: str) -> bytes:
        """Read the file at ``rel`` and verify its SHA-256.

        Args:
            rel: the path below the root.
            max_bytes: the largest size accepted.
            expected_hex: the SHA-256 the content must have (lowercase hex).

        Returns:
            The content.

        Raises:
            ConfinementError: a symlink, hard link, non-regular file or bad name.
            PersistenceError: nothing is stored there (``not_found``) or it is
                larger than ``max_bytes`` (``too_large``).
            IntegrityError: the content's digest is not ``expected_hex``.
            StorageError: the read failed.
        """
        parts = split_relative(rel)
        with self._directory(parts[:-1], create=False, where=rel) as dfd:
            fd = _open_leaf(dfd, parts[-1], rel)
            try:
                data = _read_all(fd, max_bytes, rel)
            finally:
                os.close(fd)
        found = hashlib.sha256(data).hexdigest()
        if found != expected_hex:
            raise IntegrityError(
                f"stored object `{rel}` has digest `sha256:{found}`, "
                f"expected `sha256:{expected_hex}`"
            )
        return data

    def digest(self, rel: str, *, max_bytes: int) -> str | None:
        """The SHA-256 (hex) of the file at ``rel``, or None when nothing is there.

        Raises:
            ConfinementError: a symlink, hard link, non-regular file or bad name.
            PersistenceError: larger than ``max_bytes`` (``too_large``).
            StorageError: the read failed.
        """
        parts = split_relative(rel)
        try:
            with self._directory(parts[:-1], create=False, where=rel) as dfd:
                fd = _open_leaf(dfd, parts[-1], rel)
                try:
                    return hashlib.sha256(_read_all(fd, max_bytes, rel)).hexdigest()
                finally:
                    os.close(fd)
        except PersistenceError as exc:
            if exc.code == "not_found":
                return None
            raise

    # ---- writes ------------------------------------------------------------------------
    def write(self, rel: str, data: bytes, *, tag: str, exclusive: bool) -> None:
        """Durably store ``data`` at ``rel``: temp file, fsync, publish, fsync the directory.

        Args:
            rel: the path below the root (missing directories are created).
            data: the content.
            tag: goes into the temporary file's name (the decision index).
            exclusive: publish with ``link`` (refuses an existing name) instead
                of ``rename`` (replaces it atomically).

        Raises:
            ConfinementError: a bad name, or a symlink or file on the way.
            PersistenceError: ``exclusive`` and the name exists (``exists``).
            IntegrityError: a directory on the way was moved while the write was
                in flight: the file was published outside the root (and removed
                again through the held descriptor, unless the message says otherwise).
            StorageError: the write failed (no temporary file is left behind).
        """
        parts = split_relative(rel)
        trail: Trail = []
        with self._directory(parts[:-1], create=True, where=rel, trail=trail) as dfd:
            tmp, written = _write_temp(dfd, tag, data, rel)
            try:
                if exclusive:
                    _publish_exclusive(dfd, tmp, parts[-1], rel)
                else:
                    _publish_replace(dfd, tmp, parts[-1], rel)
            except BaseException:
                _unlink_quiet(dfd, tmp)
                raise
            _fsync(dfd, rel)  # the published name is durable
            # spec: INV-4 — published where the root says? (the held descriptors follow a move)
            moved = moved_from(self._base, self._base_id, (*self._root_trail, *trail))
            if moved is not None:
                undone = undo_publish(dfd, parts[-1], written)
                raise IntegrityError(
                    f"scope root `{self.root}`: {moved} while `{rel}` was written; {undone}"
                )

    def unlink(self, rel: str) -> bool:
        """Remove the name ``rel`` (a symlink is removed, never followed); False if absent.

        Raises:
            ConfinementError: a bad name or a symlink on the way.
            StorageError: the removal failed.
        """
        parts = split_relative(rel)
        try:
            with self._directory(parts[:-1], create=False, where=rel) as dfd:
                try:
                    os.unlink(parts[-1], dir_fd=dfd)
                except FileNotFoundError:
                    return False
                except OSError as exc:
                    raise StorageError(f"cannot remove `{rel}`: {exc}") from exc
                _fsync(dfd, rel)
                return True
        except PersistenceError as exc:
            if exc.code == "not_found":
                return False
            raise

    def sweep_temps(self, rel_dir: str, tag: str | None = None) -> int:
        """Remove leftover temporary files in the directory ``rel_dir`` ("" for the root).

        Args:
            rel_dir: the directory below the root.
            tag: only temporary files of this tag (decision index); all when None.

        Returns:
            How many were removed.

        Raises:
            ConfinementError: a bad name or a symlink on the way.
            StorageError: listing or removing failed.
        """
        parts = split_relative(rel_dir) if rel_dir else ()
        prefix = TEMP_PREFIX + (f"{tag}-" if tag is not None else "")
        try:
            with self._directory(parts, create=False, where=rel_dir or ".") as dfd:
                names = [n for n in os.listdir(dfd) if n.startswith(prefix)]
                for name in names:
                    os.unlink(name, dir_fd=dfd)
                if names:
                    _fsync(dfd, rel_dir)
                return len(names)
        except PersistenceError as exc:
            if exc.code == "not_found":
                return 0
            raise
        except OSError as exc:
            raise StorageError(f"cannot sweep temporary files in `{rel_dir}`: {exc}") from exc


def _classify(parent: int, name: str, exc: OSError, where: str) -> _Refusal:
    """Turn a failed ``O_NOFOLLOW`` open into a precise refusal."""
    try:
        st = os.stat(name, dir_fd=parent, follow_symlinks=False)
    except OSError:
        return StorageError(f"cannot open `{where}`: {exc.strerror}")
    if stat.S_ISLNK(st.st_mode):  # spec: INV-4 — symlinks are never followed
        return refuse(f"`{name}` is a symlink; SOP never follows one in a scope", "symlink", where)
    if not stat.S_ISDIR(st.st_mode) and exc.errno in (errno.ENOTDIR, errno.EISDIR):
        return refuse(f"`{name}` is not a directory", "not_a_directory", where)
    return StorageError(f"cannot open `{where}`: {exc.strerror}")


def _open_leaf(dfd: int, leaf: str, where: str) -> int:
    try:
        fd = os.open(leaf, _READ_FLAGS, dir_fd=dfd)  # spec: INV-4 — O_NOFOLLOW on the last name
    except FileNotFoundError:
        raise PersistenceError(f"no stored object at `{where}`", code="not_found") from None
    except OSError as exc:
        raise _classify(dfd, leaf, exc, where) from None
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise refuse(f"`{leaf}` is not a regular file", "not_a_regular_file", where)
        if st.st_nlink != 1:  # spec: INV-4 — a hard link may alias a file outside the scope
            raise refuse(f"`{leaf}` has `{st.st_nlink}` links", "hard_link", where)
    except BaseException:
        os.close(fd)
        raise
    return fd


def _read_all(fd: int, max_bytes: int, where: str) -> bytes:
    chunks: list[bytes] = []
    total = 0
    while True:
        try:
            chunk = os.read(fd, min(_CHUNK, max_bytes + 1 - total))
        except OSError as exc:
            raise StorageError(f"cannot read `{where}`: {exc}") from exc
        if not chunk:
            return b"".join(chunks)
        total += len(chunk)
        if total > max_bytes:
            raise PersistenceError(
                f"stored object `{where}` is larger than {max_bytes} bytes", code="too_large"
            )
        chunks.append(chunk)


def _write_temp(dfd: int, tag: str, data: bytes, where: str) -> tuple[str, FileId]:
    """Write ``data`` to a fresh temporary file in ``dfd`` and fsync it; its name and identity."""
    name = f"{TEMP_PREFIX}{tag}-{secrets.token_hex(8)}"
    try:
        fd = create_private_file(name, dir_fd=dfd)  # O_EXCL|O_NOFOLLOW, 0600 whatever the umask
    except OSError as exc:
        raise StorageError(f"cannot create a temporary file for `{where}`: {exc}") from exc
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view) :]
        os.fsync(fd)  # the content is durable before it gets a name
        written = identity(fd)
    except BaseException as exc:
        os.close(fd)
        _unlink_quiet(dfd, name)
        if isinstance(exc, OSError):
            raise StorageError(f"cannot write `{where}`: {exc}") from exc
        raise
    os.close(fd)
    return name, written


def _publish_exclusive(dfd: int, tmp: str, leaf: str, where: str) -> None:
    """Give the temporary file its final name unless the name exists (``link``, then unlink)."""
    try:
        os.link(tmp, leaf, src_dir_fd=dfd, dst_dir_fd=dfd, follow_symlinks=False)
    except FileExistsError:
        raise PersistenceError(
            f"`{where}` already exists and is never overwritten", code="exists"
        ) from None
    except OSError as exc:
        raise StorageError(f"cannot publish `{where}`: {exc}") from exc
    _unlink_quiet(dfd, tmp)


def _publish_replace(dfd: int, tmp: str, leaf: str, where: str) -> None:
    """Give the temporary file its final name atomically, replacing what was there."""
    try:
        os.rename(tmp, leaf, src_dir_fd=dfd, dst_dir_fd=dfd)
    except (IsADirectoryError, NotADirectoryError):
        raise refuse(f"`{leaf}` is a directory", "not_a_regular_file", where) from None
    except OSError as exc:
        raise StorageError(f"cannot publish `{where}`: {exc}") from exc


def _unlink_quiet(dfd: int, name: str) -> None:
    with contextlib.suppress(OSError):  # best effort: boot sweeps leftover temporary files
        os.unlink(name, dir_fd=dfd)


def _fsync(dfd: int, where: str) -> None:
    try:
        os.fsync(dfd)
    except OSError as exc:
        raise StorageError(f"cannot fsync the directory of `{where}`: {exc}") from exc
