"""What the state seal covers, whatever the backend: the sealed tables, their columns, the config.

:data:`SEALED` is the seal's layout (every derived table and the columns its
rows are sealed by, in order); the SQLite and PostgreSQL backends name their
tables and columns alike, so one :class:`~sop_verified.storage.state_seal.SealKeeper`
layout serves both. :func:`check_config` holds the configuration's digest
against the one the seal accepted (INV-11). No SQL here.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence

from sop_verified.errors import IntegrityError
from sop_verified.storage.state_seal import NO_CONFIG, Seal, SealKeeper, check_tables

__all__ = ["KEYLESS", "SEALED", "check_config", "check_sealed", "config_bytes"]

SEALED: dict[str, tuple[str, ...]] = {
    "capabilities": ("seq", "id", "parent_id", "claims"),
    "revocations": ("id", "at"),
    "policy_sets": ("seq", "digest", "document", "activated_at"),
    "verdicts": ("digest", "record"),
    "persist_state": ("key", "value"),
    "persist_pending": ("decision_index", "request"),
    "persist_effects": (
        "effect_index",
        "decision_index",
        "outcome",
        "scope",
        "name",
        "stored",
        "digest",
        "size",
        "time",
        "version",
    ),
    "persist_tombstones": ("effect_index", "tombstone_index"),
    "persist_purge": ("tombstone_index", "scope", "stored"),
    "persist_versions": ("scope", "name", "latest"),
    "persist_inline": ("effect_index", "data"),
    "protocol_records": ("log_index", "kind", "receipt"),
    "protocol_state": ("key", "value"),
}
"""Every derived table and the columns its rows are sealed by (the seal's layout, in order)."""

KEYLESS = "the derived state is sealed: open the store with SOP's keys to write"
"""Why a store opened without the state key refuses to write a derived table."""


def check_sealed(
    keeper: SealKeeper,
    stored: object | None,
    log_size: int,
    rows: Mapping[str, Iterable[Sequence[object]]],
    config: str | None = None,
) -> None:
    """Check the stored seal, every derived table against it, and the configuration.

    Args:
        keeper: The keeper holding the state keys.
        stored: The seal row's value as stored (None: there is no seal row).
        log_size: The log's size, authenticated by its signed checkpoint.
        rows: Every row of every sealed table, as the backend reads them.
        config: The configuration's digest (``sha256:<hex>``) to hold against
            the one the seal accepted; None: not checked.

    Raises:
        IntegrityError: the seal is missing, forged or for another log size, a
            table differs from what was sealed, or the configuration is not the
            one accepted.
    """
    if stored is None:
        raise IntegrityError(
            "the derived state has no seal: it was deleted, or this database predates"
            " sealing; run `sop state repair` to rebuild it from the log"
        )
    seal = keeper.open(stored)
    check_tables(keeper, seal, log_size, rows)
    if config is not None:
        check_config(seal, log_size, config)


def check_config(seal: Seal, log_size: int, config: str) -> None:
    """The configuration must be the one SOP last accepted (a fresh log accepts the first).

    Raises:
        IntegrityError: the seal accepted another configuration, or none on a log with entries.
    """
    found = config_bytes(config)
    if seal.config == NO_CONFIG:
        if log_size == 0:
            return  # the first boot accepts the configuration it finds
        raise IntegrityError(
            "the state seal names no accepted configuration although the log holds"
            f" `{log_size}` entries; run `sop config accept` to accept `{config}` (logged)"
        )
    if seal.config != found:  # spec: INV-11 — the configuration is a stored input too
        raise IntegrityError(
            f"`sop.toml` is not the configuration SOP accepted: accepted"
            f" `sha256:{seal.config.hex()}`, found `{config}`; if you changed it, run"
            " `sop config accept` (it is logged), otherwise restore it"
        )


def config_bytes(config: str) -> bytes:
    """The SHA-256 in a configuration digest ``sha256:<64 hex>``.

    Raises:
        IntegrityError: ``config`` is not such a digest.
    """
    if not config.startswith("sha256:") or len(config) != 71:
        raise IntegrityError(f"`{config}` is not a configuration digest (`sha256:<64 hex>`)")
    try:
        return bytes.fromhex(config[7:])
    except ValueError:
        raise IntegrityError(
            f"`{config}` is not a configuration digest (`sha256:<64 hex>`)"
        ) from None
