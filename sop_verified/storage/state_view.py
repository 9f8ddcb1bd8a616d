"""What a read-only inspection reads of the derived state: capabilities, revocations, policy.

A :class:`StateView` is read in the same snapshot in which the state seal was
checked (INV-11), by :class:`~sop_verified.storage.sqlite_state.SQLiteStateReader`
or :meth:`~sop_verified.storage.postgres.PostgresBackend.read_state`, so no row
in it escaped the check. Both backends read it with the same statements
(:func:`read_view`): the tables have the same columns in SQLite and PostgreSQL.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Final, LiteralString

__all__ = ["StateView", "read_view"]

_CAPABILITIES: Final = "SELECT id, parent_id, claims FROM capabilities ORDER BY seq"
_REVOCATIONS: Final = "SELECT id, at FROM revocations"
_ACTIVE_POLICY: Final = "SELECT digest, document FROM policy_sets ORDER BY seq DESC LIMIT 1"


@dataclass(frozen=True, slots=True)
class StateView:
    """The derived state an inspection shows, as stored and checked against the seal.

    Attributes:
        log_size: the log size the seal was checked against (the head in the snapshot).
        capabilities: ``(id, parent id, canonical claims)`` in admission order.
        revocations: revoked capability id to revocation time.
        policy: the active policy set's ``(digest, canonical document)``, or None.
    """

    log_size: int
    capabilities: tuple[tuple[str, str | None, bytes], ...]
    revocations: dict[str, int]
    policy: tuple[str, bytes] | None


def read_view(
    query: Callable[[LiteralString], Sequence[Sequence[Any]]], log_size: int
) -> StateView:
    """Read the view with ``query`` (inside the caller's snapshot, after the seal check).

    Args:
        query: runs one statement and returns its rows.
        log_size: the size the seal was checked against.

    Returns:
        The view.
    """
    caps = tuple(
        (str(r[0]), None if r[1] is None else str(r[1]), bytes(r[2])) for r in query(_CAPABILITIES)
    )
    revocations = {str(r[0]): int(r[1]) for r in query(_REVOCATIONS)}
    rows = query(_ACTIVE_POLICY)
    policy = None if not rows else (str(rows[0][0]), bytes(rows[0][1]))
    return StateView(log_size, caps, revocations, policy)
