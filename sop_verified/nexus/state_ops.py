"""`sop state check` and `sop state repair` on a data directory (INV-11).

Both start from a full audit of the log (every leaf, tile and checkpoint,
against the checkpoint key): a projection of a log that does not verify
proves nothing, so repair refuses then. Check compares every derived row
with the log's projection and names each one that differs; repair puts the
rebuilt database in place (the old one kept beside it), boots SOP on it, and
logs that it did, with what it found.
"""

from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sop_verified.core.persistence import index_entries
from sop_verified.errors import ConfigError, IntegrityError
from sop_verified.nexus.backends import open_backend
from sop_verified.nexus.config import load_config, load_mac_key
from sop_verified.nexus.keys import load_checkpoint_signer
from sop_verified.nexus.log_ops import audit_data_dir
from sop_verified.nexus.log_service import open_signed_log
from sop_verified.nexus.root import DB_NAME
from sop_verified.nexus.sop import SOP, wall_clock
from sop_verified.nexus.state_rebuild import StateCheck, check_store, diff, rebuild
from sop_verified.tools.canonical import canonical_json

__all__ = ["RepairReport", "accept_config", "check_data_dir", "repair_data_dir"]

_WAL_SUFFIXES = ("", "-wal", "-shm")


def _audited(data_dir: Path, vkey: str | None) -> tuple[bool, str, int]:
    report, trusted = audit_data_dir(data_dir, vkey=vkey, derived_state=False)
    if report.findings:  # the seal is checked (and the rows compared) by the caller
        first = report.findings[0]
        return False, f"entry {first.index}: {first.message}", report.entries
    where = "a key held elsewhere" if trusted.held_elsewhere else "the data directory's own key"
    return True, f"{report.entries} entries verified against {where}", report.entries


def _sqlite_only(data_dir: Path, command: str) -> None:
    """Refuse, naming why, a data directory whose state PostgreSQL keeps.

    Raises:
        ConfigError: ``sop.toml`` names PostgreSQL (or does not load).
    """
    where = load_config(data_dir).postgresql
    if where is not None:
        raise ConfigError(
            f"`{command}` rebuilds and compares the SQLite database `{DB_NAME}`; this data"
            f" directory keeps its log and state in PostgreSQL (schema `{where.schema_name}`),"
            " which it does not do yet",
            accepted="a SQLite data directory; on PostgreSQL, `sop status` checks the state"
            " seal against the verified log, as every boot does (INV-11)",
        )


def check_data_dir(data_dir: Path, *, vkey: str | None = None) -> StateCheck:
    """Audit the log, check the seal, and compare every derived row with the log's projection.

    Raises:
        ConfigError: a PostgreSQL data directory (not done yet), or no configuration.
    """
    _sqlite_only(data_dir, "sop state check")
    log_ok, detail, size = _audited(data_dir, vkey)
    if not log_ok:
        return StateCheck(False, detail, "not checked: the log does not verify")
    master, _ = load_mac_key(data_dir)
    with tempfile.TemporaryDirectory(prefix="sop-state-") as tmp:
        check = check_store(data_dir / DB_NAME, master, size, Path(tmp))
    check.log_detail = detail
    return check


@dataclass
class RepairReport:
    """What ``sop state repair`` did."""

    log_size: int
    kept_as: str
    total: int
    first: list[str] = field(default_factory=list)
    dropped: dict[str, int] = field(default_factory=dict)
    log_index: int | None = None

    def to_dict(self) -> dict[str, Any]:
        """The JSON-ready form (also what the repair's log entry records)."""
        return {
            "log_size": self.log_size,
            "previous_database": self.kept_as,
            "rows_differing": self.total,
            "first_differences": self.first,
            "unauthenticated_rows_dropped": self.dropped,
            "log_index": self.log_index,
        }


def repair_data_dir(data_dir: Path, *, vkey: str | None = None) -> RepairReport:
    """Rebuild every derived table from the log, put it in place, boot, and log the repair.

    Raises:
        IntegrityError: the log does not verify (nothing is changed), or SOP
            does not boot READY on the rebuilt state (the old database is kept).
        ConfigError: a PostgreSQL data directory (not done yet), or no configuration.
    """
    _sqlite_only(data_dir, "sop state repair")
    log_ok, detail, size = _audited(data_dir, vkey)
    if not log_ok:  # spec: INV-11 — never rebuild from a log that does not verify
        raise IntegrityError(
            f"the log does not verify ({detail}); repair rebuilds derived state from the log"
            " and will not rebuild it from a tampered one: restore the log from a backup first"
        )
    master, _ = load_mac_key(data_dir)
    db = data_dir / DB_NAME
    target = data_dir / (DB_NAME + ".rebuild")
    for suffix in _WAL_SUFFIXES:
        (target.parent / (target.name + suffix)).unlink(missing_ok=True)  # our own leftover
    rebuilt = rebuild(db, target, master)
    shown, total = diff(db, rebuilt)
    kept = _free_name(data_dir, f"{DB_NAME}.replaced-{size}")
    for suffix in _WAL_SUFFIXES:
        old = data_dir / (DB_NAME + suffix)
        if old.exists():
            os.replace(old, data_dir / (kept + suffix))
    os.replace(target, db)
    report = RepairReport(
        size,
        kept,
        total,
        [m.message() for m in shown[:5]],
        {t: len(rows) for t, rows in rebuilt.dropped.items()},
    )
    with SOP.boot(data_dir) as sop:
        if sop.boot_report.failed is not None:
            raise IntegrityError(
                f"SOP did not boot on the rebuilt state: {sop.boot_report.detail};"
                f" the previous database is kept as `{kept}`"
            )
        report.log_index = sop.record_state_repair(report.to_dict())
    return report


def _free_name(data_dir: Path, base: str) -> str:
    name, n = base, 1
    while any((data_dir / (name + s)).exists() for s in _WAL_SUFFIXES):
        n += 1
        name = f"{base}.{n}"
    return name


def accept_config(data_dir: Path) -> tuple[str, int]:
    """Accept the data directory's current ``sop.toml`` (after an operator changed it); logged.

    The configuration is an input of every decision (scopes, readers, limits,
    which proof classes need the cross-check), so SOP refuses to boot on one
    it did not accept (INV-11). Accepting needs the keys: the change is logged
    under the checkpoint key and sealed under the state key, which someone who
    can only write the data directory does not have.

    Returns:
        The accepted digest and the index of the log entry that records it.

    Raises:
        IntegrityError: the log or the derived state does not verify (repair first).
        ConfigError: the configuration or a key does not load.
        StorageError: the database failed.
    """
    config = load_config(data_dir)
    digest = config.digest()
    master, _ = load_mac_key(data_dir)
    signer = load_checkpoint_signer(data_dir, config.origin)
    store = open_backend(data_dir, config, state_key=master)  # SQLite, or PostgreSQL's schema
    try:
        store.set_entry_indexer(index_entries)
        log, signer = open_signed_log(data_dir, store, config.origin, signer)
        store.log.verify_tail()
        store.verify_state(log.size)  # spec: INV-11 — never seal over state that does not verify
        entry = {
            "type": "admin",
            "op": "config.accept",
            "time": wall_clock(),
            "config_digest": digest,
        }
        index = store.log.append(canonical_json(entry))  # spec: INV-9 — logged before sealed
        store.accept_config(digest)
    finally:
        store.close()
    return digest, index
