"""Run one persist in a fresh process and kill it (SIGKILL) at a chosen point.

Usage: ``python persistence_crash_child.py DATA TOKEN POINT PRINCIPAL ACTION RESOURCE PAYLOAD``.
The crash points replace one function with a SIGKILL of this process, so no
``finally`` block, no cleanup and no further log append runs: exactly what a
power cut or ``kill -9`` leaves on disk.
"""

from __future__ import annotations

import os
import signal
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import sop_verified.core.persistence.writes as writes
import sop_verified.storage.blobs as blobs
import sop_verified.storage.postgres_log as postgres_log
import sop_verified.storage.sqlite_log as sqlite_log
from sop_verified.nexus.sop import SOP
from sop_verified.storage.postgres_db import Cursor, PostgresDB

NOW = 1_800_000_000


def _die(*_args: Any, **_kw: Any) -> Any:
    os.kill(os.getpid(), signal.SIGKILL)


_real_unsealed_tx = PostgresDB.unsealed_tx


@contextmanager
def _die_before_commit(self: PostgresDB) -> Iterator[Cursor]:
    """The content write's transaction, killed once its statements ran, before ``COMMIT``."""
    with _real_unsealed_tx(self) as cur:
        yield cur
        if cur.statusmessage == "INSERT 0 1":  # the write's, not a digest check's
            _die()


POINTS = {
    # the ALLOW is logged; nothing else happened
    "after_decision": [(writes.Writer, "_plan")],
    # the temporary file is written and synced, not yet named
    "after_temp": [(blobs, "_publish_exclusive"), (blobs, "_publish_replace")],
    # the final name is linked, the temporary name not yet removed (two links)
    "after_link": [(blobs, "_unlink_quiet")],
    # the file is complete under its final name; the effect entry is not logged
    "after_publish": [(writes.Writer, "_append")],
    # the effect entry is logged; the caller never got its answer
    "after_effect": [(writes.Writer, "_allowed")],
    # a small content-addressed write (ADR 0007): inside the one transaction, before COMMIT
    # (the log rows are inserted; the batch's unit of work is being applied)
    "linked_in_commit": [(sqlite_log, "apply_unit")],
    # ... and after the COMMIT, before the caller got its answer
    "linked_after_commit": [(writes.Writer, "_allowed")],
    # PostgreSQL: the bytes' row is inserted, its transaction not committed
    "pg_in_content_write": [(PostgresDB, "unsealed_tx", _die_before_commit)],
    # PostgreSQL: a small content-addressed write's one transaction, before COMMIT
    "pg_linked_in_commit": [(postgres_log, "apply_unit")],
}


def main() -> None:
    data, token, point, principal, action, resource, payload = sys.argv[1:8]
    sop = SOP.boot(Path(data), now=lambda: NOW)
    if str(sop.health) != "READY":
        sys.exit(2)
    for module, name, *crash in POINTS[point]:
        setattr(module, name, crash[0] if crash else _die)
    if "linked_" not in point:
        writes.INLINE_MAX_BYTES = -1  # these points are in the two-step path: no linked commit
    request = {
        "request_id": "crash-1",
        "principal": principal,
        "action": action,
        "resource": resource,
        "capability": token,
    }
    sop.persist(request, payload.encode())
    sys.exit(3)  # the crash point was never reached


if __name__ == "__main__":
    main()
