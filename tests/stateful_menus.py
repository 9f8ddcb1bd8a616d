"""The menus the stateful test draws from, on the reference model's vocabulary.

Actions, contexts and obligations of requests; a catalogue of hand-made
policy sets (some sound, some that the activation gate must refuse) and a
strategy for random ones; the protocols' usual capabilities; the ways a
token can be made (genuine, forged, under a foreign key, absent, garbage);
attached obligations; malformed requests. Everything here is data or a hypothesis strategy.
"""

from __future__ import annotations

from functools import cache
from typing import Any

from hypothesis import strategies as st
from reference_model import (
    APPROVED_SCOPES,
    CONDITIONS,
    GLOBS,
    PROVABLE,
    REFUTABLE,
    ModelPolicy,
    glob_within,
    governance_violations,
)

__all__ = [
    "ATTACHED",
    "ATTACHED_ALWAYS",
    "ATTENUATION_MODES",
    "CAP_ACTIONS",
    "CATALOGUE",
    "CONTEXTS",
    "NOW",
    "POLICY_SETS",
    "PROFILES",
    "REFUSED_SETS",
    "REQUEST_ACTIONS",
    "ROUTINE_CONTEXTS",
    "SOUND_SETS",
    "TOKEN_KINDS",
    "make_token",
    "malformed_request",
    "obligation",
    "predicted_refusals",
]

NOW = 1_800_000_000
CAP_ACTIONS = (
    "artifact.persist",
    "artifact.read",
    "verdict.record",
    "state.persist",
    "snapshot.seal",
    "phase.advance",
    "policy.activate",
)
REQUEST_ACTIONS = (*CAP_ACTIONS, "capability.revoke")
# An attached obligation, or none; the verdicts are in reference_model.OBLIGATIONS.
ATTACHED = st.sampled_from([None, None, "provable", "refutable"])
ATTACHED_ALWAYS = st.sampled_from(["provable", "refutable"])


def obligation(kind: str) -> dict[str, str]:
    """The attached obligation of ``kind`` (``provable`` or ``refutable``) as JSON."""
    source = PROVABLE if kind == "provable" else REFUTABLE
    return {"id": f"ob-{kind}", "format": "smt2", "source": source}


_CONTEXT_EXTRAS = {
    "classification": st.sampled_from(["public", "secret"]),
    "tenant": st.just("t-1"),
}
CONTEXTS = st.one_of(
    st.fixed_dictionaries(
        {"size_bytes": st.sampled_from([50, 100, 101, 1000, 4096, 4097, 10_000])},
        optional=_CONTEXT_EXTRAS,
    ),
    st.fixed_dictionaries({}, optional=_CONTEXT_EXTRAS),
)

ROUTINE_CONTEXTS = st.fixed_dictionaries(
    {"size_bytes": st.sampled_from([50, 100, 1000])},
    optional={"classification": st.sampled_from(["public", "secret"])},
)


def _p(
    pid: str,
    effect: str,
    principals: tuple[str, ...] | None,
    actions: tuple[str, ...] | None,
    resources: tuple[str, ...] | None,
    channel: str | None = None,
    condition: str = "none",
) -> ModelPolicy:
    return ModelPolicy(pid, effect, principals, actions, resources, channel, condition)


# Hand-made policy sets; some are sound, some must be refused by the activation gate.
CATALOGUE: dict[str, tuple[ModelPolicy, ...]] = {
    "sound": (
        _p("drac-persist", "permit", ("drac",), ("artifact.persist", "artifact.read"),
           ("artifacts/drac/**",), "bridge", "size_le_4096"),
        _p("no-secrets", "forbid", None, None, None, None, "secret"),
    ),
    "roles": (
        _p("writers-state", "permit", ("role:writers",), ("snapshot.seal", "state.persist"),
           ("snapshots/csp/**", "state/csp/**")),
        _p("writers-read", "permit", ("role:writers",), ("artifact.read",), ("artifacts/**",)),
        _p("emp-verdicts", "permit", ("emp",), ("verdict.record",), ("verdicts/emp/**",),
           "bridge", "has_size_le_100"),
        _p("s1-secret", "forbid", None, ("artifact.read",), ("artifacts/drac/s1/*",), None,
           "bare_secret"),
    ),
    "admin-plane": (
        _p("csp-admin", "permit", ("csp",), ("capability.revoke", "policy.activate"),
           ("policies/*",), "admin"),
        _p("read-any", "permit", None, ("artifact.read", "phase.advance"), None, "bridge"),
        _p("persist-scoped", "permit", ("csp", "drac", "emp"), ("artifact.persist",),
           ("artifacts/drac/s1/*",), None, "size_le_4096"),
    ),
    "error-prone": (
        _p("read-if-secret", "permit", None, ("artifact.read",), None, "bridge", "bare_secret"),
        _p("csp-state", "permit", ("csp",), ("snapshot.seal", "state.persist"),
           ("snapshots/csp/**", "state/csp/**"), None, "size_le_4096"),
        _p("emp-verdicts", "permit", ("emp",), ("verdict.record",), ("verdicts/emp/**",)),
        _p("emp-secret", "forbid", ("emp",), ("verdict.record",), ("verdicts/emp/**",), None,
           "bare_secret"),
    ),
    "persist-scratch": (
        _p("drac-scratch", "permit", ("drac",), ("artifact.persist",), ("scratch/**",)),
    ),
    "bridge-admin": (
        _p("any-activate", "permit", None, ("policy.activate",), ("policies/*",)),
        _p("read-any", "permit", None, ("artifact.read",), None),
    ),
    "error-shield": (
        _p("drac-anywhere", "permit", ("drac",), ("artifact.persist",), None, None,
           "size_le_4096"),
        _p("bare-secret", "forbid", None, None, None, None, "bare_secret"),
    ),
    "forbid-shield": (
        _p("writers-artifacts", "permit", ("role:writers",), ("artifact.persist",),
           ("artifacts/**",), "bridge", "has_size_le_100"),
        _p("not-outside", "forbid", None, ("artifact.persist",), ("artifacts/**",), None,
           "has_size_le_100"),
        _p("drac-in-scope", "permit", ("drac",), ("artifact.persist", "artifact.read"),
           ("artifacts/drac/**",), "bridge"),
    ),
}  # fmt: skip

# Each protocol's usual rights, which the catalogue's permits are about.
PROFILES: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    "drac": (("artifact.persist", "artifact.read"), ("artifacts/drac/**",)),
    "emp": (("artifact.read", "verdict.record"), ("artifacts/**", "verdicts/emp/**")),
    "csp": (("snapshot.seal", "state.persist", "policy.activate"), ("**",)),
}
SOUND_SETS = ("sound", "roles", "admin-plane", "forbid-shield", "error-prone")
REFUSED_SETS = ("persist-scratch", "bridge-admin", "error-shield")

SCOPED_GLOBS = tuple(g for g in GLOBS if glob_within(g, APPROVED_SCOPES))
QUIET_ACTIONS = ("artifact.read", "phase.advance")  # neither persist nor admin
# Policies of the menu; the first alternatives keep permits inside what governance accepts,
# so generated sets are accepted about as often as refused.
POLICY_STRATEGY = st.builds(
    lambda effect, principals, actions, resources, channel, condition: (
        effect, principals, actions, resources, channel, condition
    ),
    st.sampled_from(["permit", "permit", "forbid"]),
    st.sampled_from([None, ("drac",), ("csp", "emp"), ("role:writers",), ("csp", "drac", "emp")]),
    st.one_of(
        st.sets(st.sampled_from(QUIET_ACTIONS), min_size=1),
        st.none(),
        st.sets(st.sampled_from(REQUEST_ACTIONS), min_size=1, max_size=3),
    ),
    st.one_of(
        st.sets(st.sampled_from(SCOPED_GLOBS), min_size=1, max_size=2),
        st.none(),
        st.sets(st.sampled_from(GLOBS), min_size=1, max_size=2),
    ),
    st.sampled_from(["bridge", None, "admin"]),
    st.sampled_from(sorted(CONDITIONS)),
)  # fmt: skip


def _policy_set(raw: list[tuple[Any, ...]]) -> tuple[ModelPolicy, ...]:
    out = []
    for i, (effect, principals, actions, resources, channel, condition) in enumerate(raw):
        out.append(
            _p(
                f"g{i}",
                effect,
                principals,
                None if actions is None else tuple(sorted(actions)),
                None if resources is None else tuple(sorted(resources)),
                channel,
                condition,
            )
        )
    return tuple(out)


POLICY_SETS = st.lists(POLICY_STRATEGY, min_size=1, max_size=3).map(_policy_set)


@cache
def predicted_refusals(policies: tuple[ModelPolicy, ...]) -> frozenset[str]:
    """The activation checks the model says the set fails (memoised: the sets repeat)."""
    return governance_violations(policies)


# ---- tokens ---------------------------------------------------------------------------------


def _forged(token: str) -> str:
    """Same claims, a different MAC (its first base64url character changed)."""
    head, mac = token.rsplit(".", 1)
    return f"{head}.{'B' if mac[0] == 'A' else 'A'}{mac[1:]}"


def _foreign_key(token: str) -> str:
    """The same token claiming to be under a key id SOP does not hold."""
    prefix, _, rest = token.split(".", 2)
    return f"{prefix}.zz-foreign.{rest}"


ATTENUATION_MODES = ("narrow", "wider_actions", "wider_resources", "wider_window", "anything")
# How a request's token is made; "genuine" four times so most requests reach the policy.
TOKEN_KINDS = ("genuine",) * 4 + ("forged", "foreign_key", "absent", "garbage", "malformed")


def make_token(kind: str, genuine: str) -> str:
    """The token a request of ``kind`` presents, made from a genuine one."""
    return {
        "genuine": genuine,
        "forged": _forged(genuine),
        "foreign_key": _foreign_key(genuine),
        "absent": "",
        "garbage": "sopcap1.not-a-token",
    }[kind]


def malformed_request(data: st.DataObject, request_id: str) -> dict[str, Any]:
    """A request the schema must reject, one defect at a time."""
    raw: dict[str, Any] = {
        "request_id": request_id,
        "principal": "drac",
        "action": "artifact.persist",
        "resource": "artifacts/drac/s1/out.bin",
        "context": {"size_bytes": 10},
    }
    defect = data.draw(
        st.sampled_from(["unknown_action", "unknown_attribute", "ill_typed", "bad_path", "extra"])
    )
    if defect == "unknown_action":
        raw["action"] = "artifact.delete"
    elif defect == "unknown_attribute":
        raw["context"] = {"colour": "red"}
    elif defect == "ill_typed":
        raw["context"] = {"size_bytes": "10"}
    elif defect == "bad_path":
        raw["resource"] = "artifacts/../etc"
    else:
        raw["admin"] = True
    return raw
