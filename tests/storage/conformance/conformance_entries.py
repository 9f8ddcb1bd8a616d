"""Log entries the conformance tests append: persist decisions, effects, tombstones."""

from __future__ import annotations

from sop_verified.core.persistence.entries import EffectOutcome, effect_entry
from sop_verified.tools.canonical import canonical_json
from sop_verified.tools.tlog_store import LinkedPart

SCOPE = "csp-state"
BLOB_SCOPE = "drac-artifacts"
DIGEST = "sha256:" + "a" * 64


def decision(effect: str = "ALLOW", action: str = "state.persist") -> bytes:
    """A logged decision on a persist request (ALLOW opens a pending effect)."""
    request = {
        "request_id": "r-1",
        "principal": "csp",
        "action": action,
        "resource": "state/csp/k",
        "channel": "bridge",
        "context": {"size_bytes": 1},
        "obligations": [],
        "content_digest": DIGEST,
    }
    return canonical_json({"type": "decision", "effect": effect, "time": 1, "request": request})


def effect(
    decision_index: int,
    *,
    scope: str = SCOPE,
    name: str = "k",
    stored: str = "k@d0",
    digest: str = DIGEST,
    size: int = 1,
) -> bytes:
    """A ``written`` effect entry closing ``decision_index``."""
    return effect_entry(
        op="write",
        outcome=EffectOutcome.WRITTEN,
        time=2,
        decision_index=decision_index,
        request_id="r-1",
        scope=scope,
        name=name,
        stored=stored,
        digest=digest,
        size=size,
    )


def blob_name(char: str) -> str:
    """A content-addressed stored name."""
    return f"sha256/{char * 2}/" + char * 64


def blob_part(stored: str, data: bytes, attached: str | None = None) -> LinkedPart:
    """A decision, its effect writing ``stored``, and ``attached`` (default: ``stored``) kept."""
    return LinkedPart(
        decision(),
        lambda at: effect(
            at,
            scope=BLOB_SCOPE,
            name=f"n-{at}",
            stored=stored,
            digest="sha256:" + stored.rsplit("/", 1)[-1],
            size=len(data),
        ),
        ((BLOB_SCOPE, attached or stored, data),),
    )
