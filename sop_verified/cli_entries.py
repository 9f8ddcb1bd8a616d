"""A log entry, decoded for people: its type, its own time, and one line saying what it records.

Used by ``sop log show`` (:mod:`sop_verified.cli_log_show`). The type is the
entry's kind (:func:`~sop_verified.events.kinds.kind_of`: its ``type``, or an
admin entry's ``op``); the time is the entry's own Unix time in ISO 8601 UTC
(:func:`~sop_verified.events.projection.entry_time`; an attestation has none).
The summary quotes only the entry (already proved in the log by the caller);
control characters are escaped and long values cut, so one entry is one line.
"""

from __future__ import annotations

import base64
import binascii
import string
from collections.abc import Callable, Mapping
from typing import Any

import orjson

from sop_verified.events.kinds import kind_of
from sop_verified.events.projection import entry_time

__all__ = ["entry_line", "summary"]

_MAX_VALUE = 120


def entry_line(index: int, entry: Mapping[str, Any]) -> dict[str, Any]:
    """``{"index", "type", "time", "summary"}`` of the entry at ``index`` (time: None if none).

    Args:
        index: the entry's log index.
        entry: the entry, parsed.

    Returns:
        The decoded line, JSON-ready.
    """
    kind = kind_of(entry)
    name = kind.name if kind.name != "entry" else str(entry.get("type", "entry"))
    return {
        "index": index,
        "type": _clean(name),
        "time": entry_time(entry, kind.time),
        "summary": summary(kind.name, entry),
    }


def _clean(value: object) -> str:
    """``value`` as one line of printable text, cut at :data:`_MAX_VALUE` characters."""
    text = value if isinstance(value, str) else orjson.dumps(value).decode()
    text = "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)
    return text if len(text) <= _MAX_VALUE else text[: _MAX_VALUE - 1] + "…"


def _items(value: object) -> str:
    if isinstance(value, list):
        return ", ".join(_clean(v) for v in value) or "nothing"
    return _clean(value)


class _Fields(string.Formatter):
    """``{name}`` is the entry's field, cleaned (lists joined); a missing one is ``-``."""

    def get_value(self, key: int | str, args: Any, kwargs: Mapping[str, Any]) -> Any:
        value = kwargs.get(str(key))
        return "-" if value is None else _items(value)


_TEMPLATES: Mapping[str, str] = {
    "persist.tombstone": "{scope}:{name} version {version} deleted by retention rule {rule}",
    "log.key_rotation": "checkpoint key {old} -> {new}",
    "drac.phase": "session {session}: {event} {phase}",
    "drac.artifact": "session {session} {phase}: artifact {name} ({digest}, {size} bytes)",
    "emp.output": "{subject}: {claim} {verdict} (output {output_digest})",
    "csp.seal": "snapshot {snapshot} of session {session} sealed (entries: {entries})",
    "csp.resume": "session {session} resumed from snapshot {snapshot}",
    "protocol.refused": "{protocol} refused: {reason}",
    "capability.admit": "asked: admit {principal}: {actions} on {resources}",
    "capability.attenuate": "asked: attenuate to {actions} on {resources}",
    "capability.revoke": "asked: revoke {capability_id}",
    "capability.revoked": "{capability_id} revoked, with its subtree: {revoked}",
    "policy.activate": "asked: activate policy set {policy_digest}",
    "policy.activated": "policy set {policy_digest} in force",
    "persistence.retention": "the scopes' retention rules applied",
    "emp.key.register": "EMP key {key_id} registered",
    "csp.snapshot.revoke": "snapshot {snapshot} revoked: {reason}",
    "csp.rollback.authorize": "session {session} may resume older snapshot {snapshot}",
    "state.repair": "derived state rebuilt from the log: ok {ok}, mismatches: {total_mismatches}",
    "config.accept": "sop.toml accepted: {config_digest}",
    "log.reanchor": "rollback anchor replaced by the log at {at}",
}


def summary(kind: str, entry: Mapping[str, Any]) -> str:
    """One line saying what ``entry`` (of ``kind``) records.

    Args:
        kind: the entry's kind (``decision``, ``capability.admitted``, ...).
        entry: the entry, parsed.

    Returns:
        The summary (printable, one line).
    """
    special = _SPECIAL.get(kind)
    if special is not None:
        return special(entry)
    fields = dict(entry)
    fields["reason"] = _first_reason(entry) if kind == "protocol.refused" else entry.get("reason")
    if kind == "log.reanchor":
        accepted = entry.get("accepted")
        size = accepted.get("size") if isinstance(accepted, Mapping) else None
        fields["at"] = f"size {size}"
    template = _TEMPLATES.get(kind)
    if template is None:  # an entry this version does not describe: its type, op, a few fields
        scalars = [f"{k}={_clean(v)}" for k, v in entry.items() if isinstance(v, str | int | bool)]
        return " ".join(scalars[:4])
    return _Fields().format(template, **fields)


def _first_reason(entry: Mapping[str, Any]) -> str:
    reasons = entry.get("reasons")
    if not isinstance(reasons, list) or not reasons or not isinstance(reasons[0], Mapping):
        return "no reason given"
    first = reasons[0]
    return f"{_clean(first.get('stage'))}/{_clean(first.get('code'))}"


def _decision(entry: Mapping[str, Any]) -> str:
    request = entry.get("request")
    why = _first_reason(entry)
    effect = _clean(entry.get("effect"))
    if not isinstance(request, Mapping):
        return f"{effect} a request that did not parse ({why})"
    fields = (_clean(request.get(k)) for k in ("action", "resource", "principal"))
    action, resource, principal = fields
    return f"{effect} {action} {resource} by {principal} ({why})"


def _capability(entry: Mapping[str, Any]) -> str:
    claims = entry.get("capability")
    if not isinstance(claims, Mapping):
        return "a capability without claims"
    parent = claims.get("parent_id")
    lineage = "" if parent is None else f", derived from {_clean(parent)}"
    return (
        f"{_clean(claims.get('id'))} for {_clean(claims.get('principal'))}:"
        f" {_items(claims.get('actions'))} on {_items(claims.get('resources'))}{lineage}"
    )


def _effect(entry: Mapping[str, Any]) -> str:
    where = f"{_clean(entry.get('scope', ''))}:{_clean(entry.get('name', ''))}".strip(":")
    text = f"{_clean(entry.get('op'))} {_clean(entry.get('outcome'))} {where}".rstrip()
    if entry.get("decision_index") is not None:
        text += f" (decision {_clean(entry['decision_index'])})"
    return text


def _boot(entry: Mapping[str, Any]) -> str:
    manifest = entry.get("manifest")
    if not isinstance(manifest, Mapping):
        return "a boot without a manifest"
    config = manifest.get("config_digest") or "-"
    policy = manifest.get("policy_digest") or "none"
    return (
        f"boot {_clean(manifest.get('health'))}, config {_clean(config)}, policy {_clean(policy)}"
    )


def _attestation(entry: Mapping[str, Any]) -> str:
    """The statement's predicate type and subjects, read from the envelope (not verified here:
    ``sop attest verify`` checks its signature)."""
    kind = _clean(entry.get("kind", "attestation"))
    envelope = entry.get("envelope")
    payload = envelope.get("payload") if isinstance(envelope, Mapping) else None
    try:
        statement = orjson.loads(base64.b64decode(str(payload), validate=True))
        subjects = [s.get("name", "?") for s in statement["subject"]]
        return f"{kind}: {_clean(statement['predicateType'])} about {_items(subjects)}"
    except (TypeError, KeyError, AttributeError, binascii.Error, orjson.JSONDecodeError):
        return f"{kind}: an envelope whose statement does not decode"


_SPECIAL: Mapping[str, Callable[[Mapping[str, Any]], str]] = {
    "decision": _decision,
    "capability.admitted": _capability,
    "capability.attenuated": _capability,
    "persist.effect": _effect,
    "boot": _boot,
    "attestation": _attestation,
}
