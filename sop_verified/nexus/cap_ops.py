"""``sop cap list``'s side of nexus: every admitted capability, its status and its lineage.

Read-only, without booting SOP (:mod:`sop_verified.nexus.data_dir_state`): the
log is opened read-only and checked against its latest signed checkpoint and
its rollback anchor, the capability and revocation rows are checked against
the state seal bound to that log (INV-11), and the derivation tree is rebuilt
and checked as boot rebuilds it. Status at ``now``, in this order:

- ``revoked``: the capability or an ancestor is revoked (INV-10; ``revoked_by``
  names the revoked one nearest the root, ``revoked_at`` when);
- ``expired``: ``now >= expires``;
- ``not_yet_valid``: ``now < not_before``;
- ``active``: otherwise.

Lineage: ``parent_id``, ``children`` (the capabilities derived from it
directly), ``depth`` (0 for a root: how many attenuations lie between it and
its root) and ``root``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from sop_verified.core.captree import CapabilityRecord, CapabilityTree
from sop_verified.nexus.config import load_mac_key
from sop_verified.nexus.data_dir_log import DataDirLog
from sop_verified.nexus.data_dir_state import capability_tree, open_state_reader

__all__ = ["STATUSES", "list_capabilities"]

STATUSES = ("active", "not_yet_valid", "expired", "revoked")
"""Every status a capability can have (``active`` the only one a request can use)."""


def list_capabilities(data_dir: Path, now: int) -> dict[str, Any]:
    """Every admitted capability of ``data_dir`` with its status at ``now`` and its lineage.

    Args:
        data_dir: the data directory.
        now: Unix seconds the statuses are computed at.

    Returns:
        ``{"now", "log_size", "capabilities": [...], "counts": {status: n}}``, the
        capabilities in admission order (parents before children).

    Raises:
        ConfigError: no configuration, database or capability key.
        IntegrityError: the log, its anchor, the state seal or the stored tree does not check.
        VerificationError: the latest checkpoint does not verify.
        StorageError: the database cannot be read.
    """
    master, _ = load_mac_key(data_dir)
    with DataDirLog(data_dir) as opened:
        opened.check_anchor()  # spec: INV-5 — as boot does, before trusting its size
        size = opened.log.size
        with open_state_reader(data_dir, opened.config, master) as reader:
            view = reader.read_state(size, opened.config.digest())  # spec: INV-11
    tree = capability_tree(view)
    rows = [_row(tree, record, now) for record in tree.records.values()]
    counts = {status: sum(r["status"] == status for r in rows) for status in STATUSES}
    return {"now": now, "log_size": view.log_size, "capabilities": rows, "counts": counts}


def _row(tree: CapabilityTree, record: CapabilityRecord, now: int) -> dict[str, Any]:
    cap = record.cap
    revoked_by = _revoked_by(tree, record)
    if revoked_by is not None:  # spec: INV-10 — an ancestor's revocation kills it
        status = "revoked"
    elif now >= cap.expires:
        status = "expired"
    elif now < cap.not_before:
        status = "not_yet_valid"
    else:
        status = "active"
    return {
        **cap.to_claims(),
        "status": status,
        "revoked_by": revoked_by,
        "revoked_at": None if revoked_by is None else tree.revoked[revoked_by],
        "depth": len(record.chain) - 1,
        "root": _root(tree, record),
        "children": list(tree.children[cap.id]),
    }


def _revoked_by(tree: CapabilityTree, record: CapabilityRecord) -> str | None:
    """The capability whose revocation kills ``record``: the revoked one nearest its root
    (revoking a capability records its whole subtree; the operator named the top one)."""
    found = None
    cap_id: str | None = record.cap.id
    while cap_id is not None:
        if cap_id in tree.revoked:
            found = cap_id
        cap_id = tree.records[cap_id].cap.parent_id
    return found


def _root(tree: CapabilityTree, record: CapabilityRecord) -> str:
    cap = record.cap
    while cap.parent_id is not None:
        cap = tree.records[cap.parent_id].cap
    return cap.id
