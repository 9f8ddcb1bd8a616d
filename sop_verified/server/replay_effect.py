"""A persist replayed from the log carries what its effect did, as the first answer did.

A persist's answer is its decision and its effect: ``write`` when the bytes were
stored, or a DENY naming the refused decision when the effect was refused or
aborted (boot repair aborts a large write a crash cut short). A retry after a
restart is answered from the log (:mod:`.idempotency`); this module finds the
decision's ``persist.effect`` entry, proves it included under the signed
checkpoint, and completes the replayed answer with it, so a client never reads
ALLOW for bytes that were never stored.
"""

from __future__ import annotations

import hashlib
from typing import Any

import orjson

from sop_verified.core.persistence.logged import authenticated_entry
from sop_verified.errors import SOPError
from sop_verified.tools.canonical import canonical_json

__all__ = ["EffectNotLoggedError", "with_effect"]

_EFFECT_TYPE = "persist.effect"
_STORED = ("written", "unchanged")


class EffectNotLoggedError(SOPError):
    """The replayed decision has no effect entry yet (it is still being carried out)."""


def _effect_index(sop: Any, decision_index: int) -> int | None:
    log = sop.store.log
    needle = b'"decision_index":' + str(decision_index).encode()
    for index, _leaf, payload in log.log_entries_containing(
        decision_index + 1, log.log_size(), [needle]
    ):
        try:
            entry = orjson.loads(payload)
        except orjson.JSONDecodeError:
            continue
        if entry.get("type") == _EFFECT_TYPE and entry.get("decision_index") == decision_index:
            return int(index)
    return None


def _receipt(entry: dict[str, Any], index: int, sop: Any) -> dict[str, Any]:
    payload = canonical_json(entry)  # the entry was logged as canonical JSON
    tlog = sop.log
    checkpoint = tlog.checkpoint
    return {
        "index": index,
        "leaf_hash": hashlib.sha256(b"\x00" + payload).hexdigest(),
        "tree_size": checkpoint.size if checkpoint else tlog.size,
        "checkpoint": tlog.checkpoint_note,
    }


def with_effect(decision: dict[str, Any], sop: Any) -> dict[str, Any]:
    """``decision`` (a replayed persist ALLOW) completed with its effect (blocking: a thread).

    Returns:
        The ALLOW with ``write``, or the DENY that refused its effect; a DENY as it was.

    Raises:
        EffectNotLoggedError: the log holds no effect of the decision yet.
        IntegrityError: the effect entry is not in the signed log as stored.
    """
    if decision.get("effect") != "ALLOW":
        return decision
    at = int(decision["log_index"])
    index = _effect_index(sop, at)
    if index is None:
        raise EffectNotLoggedError(
            f"the decision at log index `{at}` has no effect entry yet; retry shortly"
        )
    effect = authenticated_entry(sop.store.log, index, what="the replayed decision's effect")
    if effect.get("type") != _EFFECT_TYPE or effect.get("decision_index") != at:
        raise EffectNotLoggedError(f"log entry `{index}` is not the effect of decision `{at}`")
    receipt = _receipt(effect, index, sop)
    if effect.get("outcome") in _STORED:
        write = {
            "outcome": effect["outcome"],
            "index": index,
            "scope": effect.get("scope"),
            "name": effect.get("name"),
            "stored": effect.get("stored"),
            "digest": effect.get("digest"),
            "size": effect.get("size"),
            "version": None,  # not in the effect entry; `sop log show` has the object's history
            "receipt": receipt,
        }
        return {**decision, "write": write}
    return {  # refused or aborted: the answer the first call gave, a DENY naming the decision
        **decision,
        "effect": "DENY",
        "reasons": effect.get("reasons", []),
        "decision_index": at,
        "log_index": index,
        "receipt": receipt,
        "entry_digest": "sha256:" + hashlib.sha256(canonical_json(effect)).hexdigest(),
    }
