"""Read a Z3 model back as plain data: a model state, a step's inputs.

Only slots in use are shown (capabilities below ``cap_count``, entries below
``log_size``, …); enumerations are shown by name.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import z3

from sop_verified.spec import state as st
from sop_verified.spec.state import TABLES, Capability, Entry, State, Term
from sop_verified.spec.store import derived_tables, seal_check, tables_equal

__all__ = ["inputs_dict", "state_dict"]

_INPUT_ENUMS: dict[str, Sequence[str]] = {
    "channel": st.CHANNELS,
    "act": st.ACTS,
    "proto": st.PROTOCOLS,
    "owner": st.PROTOCOLS,
    "verdict": st.VERDICTS,
    "to": st.HEALTHS,
    "service": st.SERVICES,
}


class _Reader:
    """Evaluates terms in one model."""

    def __init__(self, model: Any) -> None:
        self.m = model

    def integer(self, t: Term) -> int:
        v = self.m.eval(t, model_completion=True)
        return int(v.as_long())

    def truth(self, t: Term) -> bool:
        return bool(z3.is_true(self.m.eval(t, model_completion=True)))

    def name(self, t: Term, names: Sequence[str]) -> str:
        v = self.integer(t)
        return names[v] if 0 <= v < len(names) else f"<{v}>"

    def value(self, t: Term) -> int | bool:
        v = self.m.eval(t, model_completion=True)
        return bool(z3.is_true(v)) if z3.is_bool(v) else int(v.as_long())


def _rights(r: _Reader, cap: Capability) -> list[str]:
    return [
        f"{st.ACTS[a]}@scope{q}"
        for a in range(st.N_ACTS)
        for q in range(st.N_SCOPES)
        if r.truth(cap.rights[st.right_index(a, q)])
    ]


def _cap(r: _Reader, i: int, cap: Capability) -> dict[str, Any]:
    parent = r.integer(cap.parent)
    return {
        "slot": i,
        "parent": parent if parent >= 0 else None,
        "owner": r.name(cap.owner, st.PROTOCOLS),
        "rights": _rights(r, cap),
        "not_before": r.integer(cap.not_before),
        "expiry": r.integer(cap.expiry),
        "revoked": r.truth(cap.revoked),
    }


def _entry(r: _Reader, k: int, e: Entry) -> dict[str, Any]:
    kind = r.name(e.kind, st.ENTRY_KINDS)
    out: dict[str, Any] = {"index": k, "kind": kind}
    if kind == "admin":
        out["cap"] = r.integer(e.cap)
        return out
    if kind == "seal":
        out["snapshot"] = r.integer(e.snap)
    else:
        out["effect"] = "ALLOW" if r.truth(e.allow) else "DENY"
        out["cap"] = r.integer(e.cap)
    out.update(
        act=r.name(e.act, st.ACTS), scope=r.integer(e.scope), proto=r.name(e.proto, st.PROTOCOLS)
    )
    return out


def _count(r: _Reader, t: Term, limit: int) -> int:
    return max(0, min(r.integer(t), limit))


def _last(r: _Reader, s: State) -> dict[str, Any] | None:
    d = s.last
    if not r.truth(d.made):
        return None
    return {
        "effect": "ALLOW" if r.truth(d.allow) else "DENY",
        "fault": r.truth(d.fault),
        "storage_fault": r.truth(d.storage_fault),
        "recorded_at": r.integer(d.index) if r.truth(d.recorded) else None,
        "cap": r.integer(d.cap),
        "act": r.name(d.act, st.ACTS),
        "scope": r.integer(d.scope),
        "proto": r.name(d.proto, st.PROTOCOLS),
        "obligations": [h for h, o in enumerate(d.obligations) if r.truth(o)],
        "matching_policies": [j for j, mt in enumerate(d.matches) if r.truth(mt)],
    }


def state_dict(s: State, model: Any) -> dict[str, Any]:
    """The model state ``s`` as evaluated in ``model``.

    Args:
        s: a state (its terms may mention pre-state variables and inputs).
        model: a Z3 model.

    Returns:
        Plain data, slots in use only.
    """
    r = _Reader(model)
    n_caps, n_log = _count(r, s.cap_count, st.N_CAPS), _count(r, s.log_size, st.N_LOG)
    n_ck = _count(r, s.checkpoint_count, st.N_CHECKPOINTS)
    n_eff, n_snap = _count(r, s.effect_count, st.N_EFFECTS), _count(r, s.snap_count, st.N_SNAPSHOTS)
    return {
        "now": r.integer(s.now),
        "health": r.name(s.health, st.HEALTHS),
        "services_up": [n for n, u in zip(st.SERVICES, s.services_up, strict=True) if r.truth(u)],
        "capabilities": [_cap(r, i, s.caps[i]) for i in range(n_caps)],
        "policies": [
            {"slot": j, "effect": "forbid" if r.truth(p.forbid) else "permit"}
            for j, p in enumerate(s.policies)
            if r.truth(p.active)
        ],
        "key_epoch": r.integer(s.key_epoch),
        "scopes": [
            {"slot": q, "owner": r.name(sc.owner, st.PROTOCOLS)}
            for q, sc in enumerate(s.scopes)
            if r.truth(sc.defined)
        ],
        "verdicts": [
            {"digest": h, "verdict": r.name(v.value, st.VERDICTS), "alarm": r.truth(v.alarm)}
            for h, v in enumerate(s.verdicts)
            if r.truth(v.recorded) or r.truth(v.alarm)
        ],
        "log": [_entry(r, k, s.log[k]) for k in range(n_log)],
        "checkpoints": [
            {
                "size": (size := max(0, min(r.integer(ck.size), st.N_LOG))),
                "prefix": [_entry(r, k, ck.entries[k]) for k in range(size)],
            }
            for ck in s.checkpoints[:n_ck]
        ],
        "effects": [
            {
                "act": r.name(e.act, st.ACTS),
                "decision": r.integer(e.decision),
                "log_size_at": r.integer(e.log_size_at),
                "scope": r.integer(e.scope),
                "proto": r.name(e.proto, st.PROTOCOLS),
                "inside": r.truth(e.inside),
            }
            for e in s.effects[:n_eff]
        ],
        "snapshots": [
            {
                "slot": k,
                "parent": r.integer(x.parent),
                "entry": r.integer(x.entry),
                "sig_ok": r.truth(x.sig_ok),
                "blobs_ok": r.truth(x.blobs_ok),
                "revoked": r.truth(x.revoked),
            }
            for k, x in enumerate(s.snapshots[:n_snap])
        ],
        "active_snapshot": r.integer(s.active_snapshot),
        "resumes": r.integer(s.resumes),
        "last_decision": _last(r, s),
        "bridge_changes": r.integer(s.bridge_changes),
        "store": _store(r, s),
    }


def _store(r: _Reader, s: State) -> dict[str, Any]:
    """The seal and the stored tables that differ from the derived state SOP decides on."""
    mine = derived_tables(s)
    return {
        "seal_mac_ok": r.truth(s.seal.mac_ok),
        "seal_log_size": r.integer(s.seal.log_size),
        "passes_check": r.truth(seal_check(s)),
        "tampered": [
            name
            for (name, _, _), d, t in zip(TABLES, s.disk, mine, strict=True)
            if not r.truth(tables_equal(d, t))
        ],
    }


def inputs_dict(names: dict[str, Term], model: Any) -> dict[str, Any]:
    """A step's inputs, enumerations by name, boolean vectors as the indices set."""
    r = _Reader(model)
    out: dict[str, Any] = {}
    for key, term in names.items():
        base, _, idx = key.partition("[")
        value = r.value(term)
        if idx:
            bucket = out.setdefault(base, [])
            if value is True:
                bucket.append(_vector_label(base, int(idx.rstrip("]"))))
        elif base in _INPUT_ENUMS and isinstance(value, int) and not isinstance(value, bool):
            names_ = _INPUT_ENUMS[base]
            out[key] = names_[value] if 0 <= value < len(names_) else value
        else:
            out[key] = value
    return out


def _vector_label(base: str, k: int) -> int | str:
    if base == "rights":
        return f"{st.ACTS[k // st.N_SCOPES]}@scope{k % st.N_SCOPES}"
    if base == "self_test_ok":
        return st.SERVICES[k]
    return k
