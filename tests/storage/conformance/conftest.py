"""The storage conformance suite: every backend runs every test here.

The backends are listed in :mod:`conformance_backends` (one entry each); every
test takes the ``backend`` fixture (or ``opened``/``durable`` to reopen it).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from conformance_backends import BACKENDS, ORIGIN, BackendKind, Opened

from sop_verified.storage.ports import StorageBackend
from sop_verified.tools.signed_note import Signer, generate


@pytest.fixture(params=BACKENDS, ids=[b.name for b in BACKENDS])
def opened(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Opened]:
    kind: BackendKind = request.param
    case: Opened | None = None
    try:
        case = Opened(kind, tmp_path, kind.open(tmp_path))
        yield case
        # spec: INV-11 — whatever the test wrote, through any role, kept the state seal exact
        case.backend.verify_state(case.backend.log_store.log_tail()[0])
    finally:
        if case is not None:
            case.backend.close()
        if kind.cleanup is not None:
            kind.cleanup(tmp_path)


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
