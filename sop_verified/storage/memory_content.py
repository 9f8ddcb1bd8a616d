"""The bytes of a scope in memory: the reference every backend's scope content must match.

:class:`MemoryScopeContent` keeps each stored path's bytes in a dictionary
shared by the backend's scopes, with the rules of the file and database
implementations: names checked with :mod:`sop_verified.storage.blob_names`
(INV-4), a write replaces or (``exclusive``) never overwrites, a read
refuses what is larger than asked and bytes whose SHA-256 is not the
expected one. Nothing is ever half-written: a write is one assignment.
"""

from __future__ import annotations

import hashlib
import threading
from collections.abc import Callable

from sop_verified.errors import IntegrityError, PersistenceError
from sop_verified.storage.blob_names import split_relative

__all__ = ["MemoryScopeContent"]

Stored = dict[tuple[str, str], bytes]
"""Every scope's bytes, by ``(scope, stored path)``."""


class MemoryScopeContent:
    """One scope's bytes in a dictionary (a ``ScopeContent``)."""

    def __init__(
        self, lock: threading.Lock, rows: Stored, scope: str, writable: Callable[[str], None]
    ) -> None:
        """Keep scope ``scope``'s bytes in ``rows``, under ``lock``.

        Args:
            lock: the backend's lock.
            rows: every scope's bytes (shared by the backend's scopes).
            scope: the scope's name.
            writable: raises StorageError when writes are refused (closed, injected failure).
        """
        self._lock = lock
        self._rows = rows
        self._scope = scope
        self._writable = writable

    def _key(self, rel: str) -> tuple[str, str]:
        split_relative(rel)  # spec: INV-4 — the names a scope directory accepts, nothing else
        return (self._scope, rel)

    def _get(self, rel: str, max_bytes: int) -> bytes | None:
        key = self._key(rel)
        with self._lock:
            data = self._rows.get(key)
        if data is not None and len(data) > max_bytes:
            raise PersistenceError(
                f"stored object `{rel}` is larger than {max_bytes} bytes", code="too_large"
            )
        return data

    def read(self, rel: str, *, max_bytes: int, expected_hex: str) -> bytes:
        """The bytes at ``rel``, once their SHA-256 is ``expected_hex``.

        Raises:
            ConfinementError: a bad name.
            PersistenceError: nothing is stored there (``not_found``), or more than
                ``max_bytes`` (``too_large``).
            IntegrityError: the bytes have another digest.
        """
        data = self._get(rel, max_bytes)
        if data is None:
            raise PersistenceError(f"no stored object at `{rel}`", code="not_found")
        found = hashlib.sha256(data).hexdigest()
        if found != expected_hex:
            raise IntegrityError(
                f"stored object `{rel}` has digest `sha256:{found}`, "
                f"expected `sha256:{expected_hex}`"
            )
        return data

    def digest(self, rel: str, *, max_bytes: int) -> str | None:
        """The SHA-256 (hex) of the bytes at ``rel``, or None when nothing is there."""
        data = self._get(rel, max_bytes)
        return None if data is None else hashlib.sha256(data).hexdigest()

    def write(self, rel: str, data: bytes, *, tag: str, exclusive: bool) -> None:
        """Store ``data`` at ``rel`` (``exclusive``: refuse an existing name, ``exists``)."""
        del tag  # nothing temporary to name
        key = self._key(rel)
        self._writable(f"`{rel}`")
        with self._lock:
            if exclusive and key in self._rows:
                raise PersistenceError(
                    f"`{rel}` already exists and is never overwritten", code="exists"
                )
            self._rows[key] = bytes(data)

    def unlink(self, rel: str) -> bool:
        """Remove ``rel``; False when it was absent."""
        key = self._key(rel)
        self._writable(f"the removal of `{rel}`")
        with self._lock:
            return self._rows.pop(key, None) is not None

    def sweep_temps(self, rel_dir: str, tag: str | None = None) -> int:
        """Nothing temporary is ever left (a write is one assignment): 0."""
        del rel_dir, tag
        return 0

    def close(self) -> None:
        """Nothing to release."""
