"""``sop log anchor --accept-current``: re-anchor a log on purpose, and log that it was done.

Boot refuses a log that does not extend its rollback anchor, or that has
signed checkpoints and no anchor (:mod:`sop_verified.nexus.anchor`). Two
honest situations end there too: a data directory made before anchors
existed, and an anchor lost or restored together with an older ``sop.db`` on
purpose. :func:`unsafe_accept_current` is the one way out, and it is loud:

1. the whole log is audited first (every leaf, tile and checkpoint, from the
   genesis key): a log that does not verify is not accepted;
2. the log is opened with its checkpoint key, without the anchor check;
3. an ``admin`` entry ``log.reanchor`` is appended, recording what the
   anchor held before (size and root, the digest of a file that is no
   checkpoint, why it could not be read, or null) and what is accepted
   now; its checkpoint writes the new anchor.

Re-anchoring is exactly what a rollback would need, so it needs the
checkpoint key (an attacker who can write the data directory but not the
keys cannot do it) and it stays in the log for every later audit to see.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from sop_verified.core.persistence import index_entries
from sop_verified.errors import IntegrityError
from sop_verified.nexus.anchor import ANCHOR_NAME, describe_anchor, read_anchor
from sop_verified.nexus.config import load_config, load_mac_key
from sop_verified.nexus.keys import load_checkpoint_signer
from sop_verified.nexus.log_ops import DB_FILE, audit_data_dir
from sop_verified.nexus.log_service import open_signed_log
from sop_verified.storage.sqlite import SQLiteBackend
from sop_verified.tools.canonical import canonical_json

__all__ = ["REANCHOR_OP", "unsafe_accept_current"]

REANCHOR_OP = "log.reanchor"
"""The ``op`` of the admin entry a re-anchoring appends."""

_log = logging.getLogger(__name__)


def unsafe_accept_current(data_dir: Path, now: int) -> dict[str, Any]:
    """DANGER: accept the log as it is now as the new rollback anchor, and log that.

    Whatever rollback the old anchor would have caught is accepted with it:
    use it only for a data directory made before anchors existed, or after
    checking the log against a copy of the anchor kept elsewhere
    (``sop log verify --anchor``). Warns every time.

    Args:
        data_dir: The data directory.
        now: Unix seconds, recorded in the entry.

    Returns:
        What was replaced and what was accepted: ``previous`` (the old
        anchor's size and root, or its digest, or None), ``accepted`` (size
        and root before the entry), ``entry`` (its index) and ``anchor``
        (the new anchor's size and root).

    Raises:
        IntegrityError: the log does not verify (the audit's first finding).
        ConfigError: no configuration or no readable key.
        StorageError: the database or the anchor could not be written.
    """
    report, _ = audit_data_dir(data_dir, anchor=None)
    real = [f for f in report.findings if f.kind != "anchor"]
    if real or report.total_findings > len(report.findings):
        first = real[0] if real else report.findings[-1]
        raise IntegrityError(
            f"refusing to re-anchor a log that does not verify: {first.kind} at entry"
            f" `{first.index}`: {first.message}; run `sop log verify` for every finding"
        )
    config = load_config(data_dir)
    path = data_dir / ANCHOR_NAME
    previous: dict[str, Any] | None
    try:
        old = read_anchor(path)
        previous = None if old is None else describe_anchor(old)
    except IntegrityError as exc:
        previous = {"unreadable": str(exc)}
    mac_key, _ = load_mac_key(data_dir)  # the state seal follows the appended entry
    store = SQLiteBackend.open(data_dir / DB_FILE, state_key=mac_key)
    try:
        store.set_entry_indexer(index_entries)
        signer = load_checkpoint_signer(data_dir, config.origin)
        log, _ = open_signed_log(data_dir, store, config.origin, signer, unsafe_skip_anchor=True)
        accepted = {"size": log.size, "root": log.root().hex()}
        _log.warning(
            "re-anchoring the log `%s` at size %d (previous anchor: %s)",
            config.origin,
            log.size,
            previous,
        )
        entry = {"type": "admin", "op": REANCHOR_OP, "time": now}
        entry |= {"previous": previous, "accepted": accepted}
        receipt = log.append(canonical_json(entry))  # its checkpoint writes the anchor
        anchor = {"size": log.size, "root": log.root().hex()}
    finally:
        store.close()
    return {"previous": previous, "accepted": accepted, "entry": receipt.index, "anchor": anchor}
