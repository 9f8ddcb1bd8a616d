"""Every kind of log entry SOP writes, and the event type and data shape each becomes.

An entry's *kind* is its ``type``, or, for ``"type": "admin"`` entries, its
``op``; its event type is ``sop.<kind>.v1``. An entry of a kind this table
does not know, or whose fields do not match the kind's shape, becomes a
``sop.entry.v1`` event: never dropped, one event per entry, always.

Checkpoints are not entries; :data:`CHECKPOINT` is their kind
(:mod:`sop_verified.events.source` places them among the entries' events).

Health transitions are logged: a boot that reaches READY as a ``boot`` entry,
and every later change, READY to DEGRADED by an integrity alarm, as an
``alarm`` entry (:mod:`sop_verified.nexus.alarm_log`). An alarm whose entry
cannot be appended (the log or the store may be what failed) is no event;
``/health/ready`` and ``/metrics`` report it all the same (docs/TELEMETRY.md).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final

from sop_verified.events.shapes import (
    BOOL,
    INT,
    NAME,
    STR,
    STRS,
    ArrayOf,
    ContextShape,
    F,
    MapOf,
    Nullable,
    Obj,
    StatementShape,
)

__all__ = ["CHECKPOINT", "GENERIC", "KINDS", "Kind", "event_type", "kind_of"]

NSTR: Final = Nullable(STR)
NINT: Final = Nullable(INT)

_REASON = Obj(
    {
        "stage": F(STR, required=True, doc="Where on the decision path it arose."),
        "code": F(STR, required=True, doc="SOP's machine-readable reason code."),
        "policy_ids": F(STRS),
        "capability_id": F(STR),
        "obligation": F(STR),
    }
)
REASONS: Final = ArrayOf(_REASON)
"""Reasons without their free-text ``message`` and ``counterexample`` (they may quote inputs)."""

_REQUEST = Obj(
    {
        "request_id": F(STR, required=True),
        "principal": F(STR, required=True),
        "action": F(STR, required=True),
        "resource": F(STR, required=True),
        "channel": F(STR),
        "context": F(ContextShape(), doc="Through the telemetry boundary (docs/TELEMETRY.md)."),
        "obligations": F(
            ArrayOf(Obj({"id": F(STR, required=True), "format": F(STR, required=True)})),
            doc="The attached obligations' ids and formats (their sources stay in the log).",
        ),
        "content_digest": F(STR),
    }
)
_TRANSPORT = Obj({"principal": F(STR), "traceparent": F(STR)})
_CLAIMS = Obj(
    {
        "id": F(STR, required=True),
        "parent_id": F(NSTR),
        "principal": F(STR, required=True),
        "actions": F(STRS, required=True),
        "resources": F(STRS, required=True),
        "not_before": F(INT),
        "expires": F(INT),
        "issued_at": F(INT),
        "key_id": F(STR),
    }
)
_MANIFEST = Obj(
    {
        "format": F(STR),
        "boot_order": F(STRS),
        "booted_at": F(INT),
        "health": F(STR, required=True),
        "failed_service": F(NSTR),
        "services": F(MapOf(STR), doc="Each service's health."),
        "config_digest": F(NSTR),
        "policy_digest": F(NSTR),
        "key_ids": F(MapOf(STR)),
        "versions": F(MapOf(NSTR)),
    }
)
_SIZE_ROOT = Obj({"size": F(INT, required=True), "root": F(STR, required=True)})

# The protocol records' shared fields.
_DECISION_INDEX = F(NINT, doc="The log index of the decision it follows from.")
_REQUEST_ID = F(NSTR)


@dataclass(frozen=True, slots=True)
class Kind:
    """One kind of entry: its event type and its data shape.

    Attributes:
        name: the entry's ``type`` (or an admin entry's ``op``).
        data: the shape of the event's ``data``.
        doc: what the entry records.
        time: where the entry keeps its Unix time (a path of keys); the event's ``time``.
    """

    name: str
    data: Obj
    doc: str
    time: tuple[str, ...] = ("time",)

    @property
    def event_type(self) -> str:
        """``sop.<kind>.v1``."""
        return event_type(self.name)


def event_type(kind: str) -> str:
    """The CloudEvents ``type`` of entries of ``kind``."""
    return f"sop.{kind}.v1"


def _kind(name: str, doc: str, /, *, time: tuple[str, ...] = ("time",), **fields: F) -> Kind:
    return Kind(name, Obj(fields), doc, time)


_PLAIN: tuple[Kind, ...] = (
    _kind(
        "decision",
        "A decision of the kernel (ALLOW or DENY), with its reasons and the request.",
        effect=F(STR, required=True, doc="ALLOW or DENY."),
        capability_id=F(NSTR),
        policy_ids=F(STRS),
        policy_digest=F(STR, doc="The policy set that decided."),
        reasons=F(REASONS, required=True),
        request=F(_REQUEST),
        malformed_request_digest=F(NSTR, doc="For a request that did not parse, its digest."),
        transport=F(_TRANSPORT, doc="The authenticated principal and the W3C traceparent."),
    ),
    _kind(
        "persist.effect",
        "What became of an allowed persist or read: written, unchanged, refused or aborted.",
        op=F(STR, required=True),
        outcome=F(STR, required=True),
        decision_index=_DECISION_INDEX,
        request_id=_REQUEST_ID,
        scope=F(STR),
        name=F(STR),
        stored=F(STR),
        digest=F(STR),
        size=F(INT),
        reasons=F(REASONS),
        repaired=F(BOOL),
    ),
    _kind(
        "persist.tombstone",
        "An object version deleted by a scope's retention rule.",
        effect_index=F(INT, required=True),
        scope=F(STR),
        name=F(STR),
        version=F(INT),
        stored=F(STR),
        digest=F(STR),
        rule=F(STR),
    ),
    _kind(
        "boot",
        "A READY boot and its manifest.",
        time=("manifest", "booted_at"),
        manifest=F(_MANIFEST, required=True),
    ),
    _kind(
        "attestation",
        "An in-toto attestation in a DSSE envelope (boot manifest, proof verdict, artifact).",
        time=(),
        kind=F(STR, required=True),
        statement=F(StatementShape(), source="envelope"),
    ),
    _kind(
        "log.key_rotation",
        "The checkpoint key rotated: the old key announces the new one.",
        old=F(STR, required=True),
        new=F(STR, required=True),
    ),
    _kind(
        "drac.phase",
        "A DRAC session's phase step.",
        session=F(STR, required=True),
        phase=F(STR, required=True),
        event=F(STR),
        decision_index=_DECISION_INDEX,
        request_id=_REQUEST_ID,
    ),
    _kind(
        "drac.artifact",
        "A DRAC artifact catalogued after its write.",
        session=F(STR, required=True),
        phase=F(STR, required=True),
        name=F(STR),
        digest=F(STR),
        size=F(INT),
        inputs=F(STRS),
        resource=F(STR),
        decision_index=_DECISION_INDEX,
        effect_index=F(NINT),
        attestation_index=F(NINT),
        request_id=_REQUEST_ID,
    ),
    _kind(
        "emp.output",
        "An EMP verification output recorded (verified against its registered key).",
        subject=F(STR, required=True),
        claim=F(STR),
        verdict=F(STR),
        output_digest=F(STR),
        key_id=F(STR),
        resource=F(STR),
        decision_index=_DECISION_INDEX,
        effect_index=F(NINT),
        attestation_index=F(NINT),
        request_id=_REQUEST_ID,
    ),
    _kind(
        "csp.seal",
        "A CSP snapshot sealed (its manifest written and signed).",
        snapshot=F(STR, required=True),
        session=F(STR),
        parent=F(NSTR),
        created=F(INT),
        merkle_root=F(STR),
        manifest_digest=F(STR),
        resource=F(STR),
        entries=F(INT),
        statement=F(StatementShape(), source="envelope"),
        decision_index=_DECISION_INDEX,
        effect_index=F(NINT),
        request_id=_REQUEST_ID,
    ),
    _kind(
        "csp.resume",
        "A CSP snapshot resumed (every check passed; INV-7).",
        session=F(STR, required=True),
        snapshot=F(STR, required=True),
        decision_index=_DECISION_INDEX,
        request_id=_REQUEST_ID,
    ),
    _kind(
        "protocol.refused",
        "A protocol (DRAC, EMP, CSP) refused an operation, with its reasons.",
        protocol=F(STR, required=True),
        decision_index=_DECISION_INDEX,
        request_id=_REQUEST_ID,
        reasons=F(REASONS, required=True),
    ),
    _kind(
        "alarm",
        "An integrity alarm: a service, and so SOP, became DEGRADED; every decision is"
        " denied from then on (logged after the fact, from a thread of its own).",
        service=F(NAME, required=True, doc="The service that raised it (`witness`, ...)."),
        reason=F(STR, required=True, doc="What was found."),
        health=F(STR, required=True, doc="SOP's health from then on: `DEGRADED`."),
    ),
)

_ADMIN: tuple[Kind, ...] = (
    _kind(
        "capability.admit",
        "The operator asks to admit a root capability (logged before it is).",
        principal=F(STR, required=True),
        actions=F(STRS),
        resources=F(STRS),
        not_before=F(NINT),
        expires=F(NINT),
    ),
    _kind(
        "capability.admitted", "A root capability admitted.", capability=F(_CLAIMS, required=True)
    ),
    _kind(
        "capability.attenuate",
        "The operator asks to derive a narrower capability (logged before it is).",
        actions=F(STRS),
        resources=F(STRS),
        not_before=F(NINT),
        expires=F(NINT),
    ),
    _kind(
        "capability.attenuated",
        "A derived capability admitted (proved narrower; INV-10).",
        capability=F(_CLAIMS, required=True),
    ),
    _kind(
        "capability.revoke",
        "The operator asks to revoke a capability (logged before it is).",
        capability_id=F(STR, required=True),
    ),
    _kind(
        "capability.revoked",
        "A capability and its descendants revoked (INV-10).",
        capability_id=F(STR, required=True),
        revoked=F(STRS),
        at=F(MapOf(INT), doc="Each revoked id's revocation time."),
    ),
    _kind(
        "policy.activate",
        "The operator activates a policy set (logged before it is in force).",
        policy_digest=F(STR, required=True),
        activated_at=F(INT),
    ),
    _kind("policy.activated", "A policy set in force.", policy_digest=F(STR, required=True)),
    _kind("persistence.retention", "The operator applies the scopes' retention rules."),
    _kind(
        "emp.key.register",
        "An EMP signing key registered.",
        key_id=F(STR, required=True),
        public_key=F(STR),
    ),
    _kind(
        "emp.key.revoke",
        "An EMP signing key revoked: no output it signs is recorded from here on; those"
        " recorded before stay verifiable.",
        key_id=F(STR, required=True),
        reason=F(STR, doc="The operator's reason."),
    ),
    _kind(
        "csp.snapshot.revoke",
        "A CSP snapshot revoked by the operator: it and its descendants never resume.",
        snapshot=F(STR, required=True),
        reason=F(STR, doc="The operator's reason."),
    ),
    _kind(
        "csp.rollback.authorize",
        "The operator authorises resuming an older snapshot of a session.",
        session=F(STR, required=True),
        snapshot=F(STR, required=True),
    ),
    _kind(
        "state.repair",
        "Derived state rebuilt from the verified log (`sop state repair`).",
        ok=F(BOOL),
        log_verified=F(BOOL),
        total_mismatches=F(INT),
        unauthenticated_rows=F(MapOf(INT)),
    ),
    _kind(
        "config.accept",
        "An edited sop.toml accepted (`sop config accept`).",
        config_digest=F(STR, required=True),
    ),
    _kind(
        "log.reanchor",
        "The rollback anchor replaced by the current log (`sop log anchor --accept-current`).",
        accepted=F(_SIZE_ROOT),
    ),
)

GENERIC: Final = _kind(
    "entry",
    "An entry of a kind this version of SOP does not describe (its type and op only;"
    " the entry itself is in the log at `sopindex`).",
    entry_type=F(NAME, source="type", doc="The entry's `type`."),
    op=F(NAME, doc="The entry's `op`."),
)

CHECKPOINT: Final = _kind(
    "checkpoint",
    "A checkpoint the log signed: the tree of its first `size` entries has root `root`. Not"
    " an entry: it comes right after the event of the last entry it covers (`sopindex`),"
    " keyed by `sopsize`, and its note verifies with the log's public key (or, before a key"
    " rotation, with the key the rotation retired).",
    time=(),
    size=F(INT, required=True, doc="The tree size: the checkpoint covers entries `[0, size)`."),
    root=F(STR, required=True, doc="The tree's root hash, base64, as the note says it."),
    note=F(STR, required=True, doc="The signed checkpoint note (C2SP signed-note), as stored."),
)
"""Checkpoints: events of their own kind, never the kind of an entry (``kind_of``)."""

KINDS: Final[Mapping[str, Kind]] = {k.name: k for k in (*_PLAIN, *_ADMIN)}
"""Every kind SOP logs, by name (an admin entry's name is its ``op``)."""

ADMIN_KINDS: Final = frozenset(k.name for k in _ADMIN)
"""The kinds logged as ``"type": "admin"`` entries."""


def kind_of(entry: Mapping[str, Any]) -> Kind:
    """The kind of a log entry: its ``type``, or its ``op`` for an admin entry; else GENERIC."""
    kind = entry.get("type")
    if kind == "admin":
        op = entry.get("op")
        return KINDS[op] if isinstance(op, str) and op in ADMIN_KINDS else GENERIC
    if isinstance(kind, str) and kind not in ADMIN_KINDS:
        return KINDS.get(kind, GENERIC)
    return GENERIC
