"""The storage conformance suite: every backend runs every test here.

A backend joins by one entry in :data:`BACKENDS`: how to open it in a
directory (the same directory again reopens it when ``durable``). The in-memory
reference (:class:`~sop_verified.storage.memory_backend.MemoryBackend`) and
SQLite run now; PostgreSQL joins in a later issue with its own entry.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from sop_verified.storage.memory_backend import MemoryBackend
from sop_verified.storage.ports import StorageBackend
from sop_verified.storage.sqlite import SQLiteBackend
from sop_verified.tools.signed_note import Signer, generate

ORIGIN = "conformance.local/log"


@dataclass(frozen=True)
class BackendKind:
    """How to open one backend for a test."""

    name: str
    open: Callable[[Path], StorageBackend]
    durable: bool
    """True when opening the same directory again finds what was stored."""


BACKENDS = (
    BackendKind("memory", lambda _: MemoryBackend(), durable=False),
    BackendKind("sqlite", lambda d: SQLiteBackend.open(d / "sop.db"), durable=True),
)
"""Every backend the suite runs on; a new backend is one more entry."""


@dataclass
class Opened:
    """A backend under test, and how to reopen it where it lives."""

    kind: BackendKind
    directory: Path
    backend: StorageBackend

    def reopen(self) -> StorageBackend:
        """Close the backend and open it again in the same directory."""
        self.backend.close()
        self.backend = self.kind.open(self.directory)
        return self.backend


@pytest.fixture(params=BACKENDS, ids=[b.name for b in BACKENDS])
def opened(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Opened]:
    kind: BackendKind = request.param
    case = Opened(kind, tmp_path, kind.open(tmp_path))
    yield case
    case.backend.close()


@pytest.fixture
def backend(opened: Opened) -> StorageBackend:
    return opened.backend


@pytest.fixture(scope="session")
def signer() -> Signer:
    return Signer.from_string(generate(ORIGIN)[0])


@pytest.fixture
def durable(opened: Opened) -> Opened:
    """The case, for backends that keep data across a reopen (others are skipped)."""
    if not opened.kind.durable:
        pytest.skip(f"`{opened.kind.name}` keeps nothing across a reopen")
    return opened
