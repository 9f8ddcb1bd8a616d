"""Model-based test: the real kernel and the reference model in lockstep (DESIGN section 6.2).

A hypothesis ``RuleBasedStateMachine`` boots one SOP per example (on a fresh
temporary directory, with a mutable clock and the unwired proof gate) and
drives it and :mod:`reference_model` with the same steps: admit, attenuate
(narrowing or trying to widen), revoke, activate a policy set, submit a
request, advance the clock. Every outcome is compared: the effect and the
first reason's stage and code of each decision, the capability and policy ids
it names, the error code of each refused admin action, the findings of each
refused policy set. The ``@invariant`` methods are the INVs of DESIGN section 2.

Generation is restricted to shapes the model predicts exactly: globs of the
forms ``L/**``, ``L/*``, exact paths and ``**`` (see ``reference_model.GLOBS``),
resources from ``reference_model.PATHS`` (a representative of every region
those globs cut, checked below), conditions from ``reference_model.CONDITIONS``.
"""

from __future__ import annotations

import hashlib
import json
import tempfile
import tomllib
from collections.abc import Callable
from functools import cache
from pathlib import Path
from typing import Any, TypeVar

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    Bundle,
    RuleBasedStateMachine,
    initialize,
    invariant,
    multiple,
    rule,
    run_state_machine_as_test,
)
from reference_model import (
    ADMIN_ACTIONS,
    ALL_ACTIONS,
    APPROVED_SCOPES,
    CONDITIONS,
    CONTEXT_TYPES,
    GLOBS,
    OTHER_PRINCIPAL,
    PATHS,
    PERSIST_ACTIONS,
    PRINCIPALS,
    Expected,
    ModelCap,
    ModelPolicy,
    ReferenceModel,
    glob_matches,
    glob_within,
    governance_violations,
    render_policy_set,
    signature,
)

from sop_verified.core import request as kernel_request
from sop_verified.core.capability import Capability, CapabilityRegistry
from sop_verified.core.health import Health
from sop_verified.core.obligations import UnwiredProofGate
from sop_verified.core.policy import PolicyCheckReport, PolicySet, check_policy_set
from sop_verified.core.request import Decision, Request, Stage
from sop_verified.errors import CapabilityError
from sop_verified.nexus import config as nexus_config
from sop_verified.nexus import sop as sop_module
from sop_verified.nexus.sop import SOP, PolicyRefusedError
from sop_verified.storage.sqlite import SQLiteStore
from sop_verified.tools.paths import Glob

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
OBLIGATION = {
    "id": "ob-1",
    "format": "smt2",
    "source": "(declare-const x Int)\n(assert (> x 0))\n(check-sat)\n",
}
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
SOUND_SETS = ("sound", "roles", "admin-plane", "forbid-shield")
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
def _violations(policies: tuple[ModelPolicy, ...]) -> frozenset[str]:
    return governance_violations(policies)


# ---- the activation gate, memoised --------------------------------------------------------

_REPORTS: dict[tuple[str, tuple[str, ...]], PolicyCheckReport] = {}


def _memo_check_policy_set(
    s: PolicySet,
    approved_scopes: Any,
    active: PolicySet | None = None,
    *,
    source: str = "",
    **kw: Any,
) -> PolicyCheckReport:
    """``check_policy_set`` without the comparison with the active set, memoised by digest.

    Each activation costs 0.5-2 s of Z3, and every example boots a fresh SOP, so
    the same sets are checked again and again. Sound for this test: the check is
    a pure function of its arguments, and the comparison with ``active`` only adds
    WARNING/INFO findings (report.py ``_compare``), which never refuse a set; the
    refusal this test compares with the model comes from the governance check,
    which runs for real the first time each set is seen.
    """
    del active
    key = (s.digest, tuple(approved_scopes))
    if key not in _REPORTS:
        _REPORTS[key] = check_policy_set(s, approved_scopes, None, source=source, **kw)
    return _REPORTS[key]


# ---- tokens ---------------------------------------------------------------------------------


def _forged(token: str) -> str:
    """Same claims, a different MAC (its first base64url character changed)."""
    head, mac = token.rsplit(".", 1)
    return f"{head}.{'B' if mac[0] == 'A' else 'A'}{mac[1:]}"


def _foreign_key(token: str) -> str:
    """The same token claiming to be under a key id SOP does not hold."""
    prefix, _, rest = token.split(".", 2)
    return f"{prefix}.zz-foreign.{rest}"


# How a request's token is made; "genuine" four times so most requests reach the policy.
TOKEN_KINDS = ("genuine",) * 4 + ("forged", "foreign_key", "absent", "garbage", "malformed")


def _token(kind: str, genuine: str) -> str:
    return {
        "genuine": genuine,
        "forged": _forged(genuine),
        "foreign_key": _foreign_key(genuine),
        "absent": "",
        "garbage": "sopcap1.not-a-token",
    }[kind]


def _malformed(data: st.DataObject, request_id: str) -> dict[str, Any]:
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


_T = TypeVar("_T")


def _attempt(call: Callable[[], _T]) -> tuple[_T | None, str | None]:
    """Run an admin call: its result, or the code of the CapabilityError it raised."""
    try:
        return call(), None
    except CapabilityError as exc:
        return None, exc.code


def _refusals(sop: SOP, directory: Path) -> frozenset[str]:
    """Activate the set in ``directory``: the codes of the gate's errors, empty if activated."""
    try:
        sop.activate_policy(directory)
    except PolicyRefusedError as exc:
        return frozenset(f.code for f in exc.report.errors)
    return frozenset()


def _leaf_hash(payload: bytes) -> bytes:
    return hashlib.sha256(b"\x00" + payload).digest()  # RFC 6962 leaf hash


# ---- the machine ------------------------------------------------------------------------------


class KernelVersusModel(RuleBasedStateMachine):
    """SOP and the reference model, step by step; the invariants are the INVs."""

    caps = Bundle("caps")
    max_generated_sets = 0  # generated policy sets per example (each costs Z3 time)

    def __init__(self) -> None:
        super().__init__()
        self._tmp = tempfile.TemporaryDirectory(prefix="sop-stateful-")
        self.root = Path(self._tmp.name)
        self.clock = NOW
        SOP.init(self.root / "data")
        self.sop = SOP.boot(self.root / "data", now=self._now, proof_gate=UnwiredProofGate())
        assert self.sop.health is Health.READY, self.sop.boot_report
        self.model = ReferenceModel(NOW)
        self.expected_digest: str | None = None
        self.expected: dict[str, Expected] = {}  # request id -> the model's decision then
        self.decisions: list[Decision] = []  # returned since INV-2/INV-9 last looked
        self.seen_log: list[tuple[int, bytes, bytes]] = []
        self.cursor = {"inv1": 0, "inv2": 0}
        self.counter = 0
        self.generated_sets = 0

    def _now(self) -> int:
        return self.clock

    def teardown(self) -> None:
        self.sop.close()
        self._tmp.cleanup()

    # ---- helpers ----------------------------------------------------------------------
    def _next(self, prefix: str) -> str:
        self.counter += 1
        return f"{prefix}-{self.counter}"

    def _remember(self, cap: Capability, token: str, parent: int | None) -> int:
        key = len(self.model.caps)
        self.model.caps[key] = ModelCap(
            key, cap.id, token, parent, cap.principal, cap.actions, cap.resources,
            cap.not_before, cap.expires,
        )  # fmt: skip
        return key

    def _authority(self) -> tuple[Any, ...]:
        """Everything the bridge must never change (INV-6)."""
        store, caps = self._ports()
        active = store.load_active_policy_set()
        return (
            self.sop.policy.digest if self.sop.policy else None,
            None if active is None else active[0],
            tuple(c.id for c in caps.all()),
            frozenset(store.load_revocations()),
        )

    def _ports(self) -> tuple[SQLiteStore, CapabilityRegistry]:
        store, caps = self.sop.store, self.sop.capabilities
        assert store is not None
        assert caps is not None
        return store, caps

    def _activate(self, policies: tuple[ModelPolicy, ...]) -> None:
        directory = self.root / self._next("policy")
        directory.mkdir()
        (directory / "policy.toml").write_text(render_policy_set(policies))
        refused = _refusals(self.sop, directory)
        assert refused == _violations(policies), (render_policy_set(policies), refused)
        if not refused:
            assert self.sop.policy is not None
            self.model.policies = policies
            self.expected_digest = self.sop.policy.digest

    # ---- rules: the admin plane --------------------------------------------------------
    @initialize(name=st.sampled_from([*SOUND_SETS, None]))
    def activate_first_set(self, name: str | None) -> None:
        if name is not None:
            self._activate(CATALOGUE[name])

    @initialize(target=caps)
    def admit_profiles(self) -> Any:
        """Each protocol's usual capability, valid for a day."""
        keys = []
        for principal, (actions, globs) in PROFILES.items():
            cap, token = self.sop.admit(principal, actions, globs, expires=self.clock + 86_400)
            keys.append(self._remember(cap, token, None))
        return multiple(*keys)

    @rule(data=st.data())
    def activate_policy_set(self, data: st.DataObject) -> None:
        generate = self.generated_sets < self.max_generated_sets and data.draw(
            st.sampled_from([False, False, True]), label="generated"
        )
        if generate:
            self.generated_sets += 1
            self._activate(data.draw(POLICY_SETS, label="policy set"))
        else:
            self._activate(CATALOGUE[data.draw(st.sampled_from(sorted(CATALOGUE)))])

    @rule(target=caps, principal=st.sampled_from(PRINCIPALS), data=st.data())
    def admit(self, principal: str, data: st.DataObject) -> Any:
        """A root capability, of a protocol's usual rights or random ones, in a random window."""
        if data.draw(st.sampled_from(["profile", "random"])) == "profile":
            actions, globs = (set(x) for x in PROFILES[principal])
        else:
            actions = data.draw(st.sets(st.sampled_from(CAP_ACTIONS), min_size=1, max_size=3))
            globs = data.draw(st.sets(st.sampled_from(GLOBS), min_size=1, max_size=2))
        start = data.draw(st.sampled_from([0, -100, 10, 60]))
        length = data.draw(st.sampled_from([600, 30, 1, 0, -5]))
        nb, exp = self.clock + start, self.clock + start + length
        predicted = self.model.admit_outcome(nb, exp)
        admitted, code = _attempt(
            lambda: self.sop.admit(
                principal, sorted(actions), sorted(globs), not_before=nb, expires=exp
            )
        )
        assert code == predicted, (code, predicted)
        if admitted is None:
            return multiple()
        cap, token = admitted
        assert (cap.parent_id, cap.principal, cap.actions) == (None, principal, frozenset(actions))
        assert (set(cap.resources), cap.not_before, cap.expires) == (globs, nb, exp)
        return self._remember(cap, token, None)

    @rule(target=caps, parent=caps, data=st.data())
    def attenuate(self, parent: int, data: st.DataObject) -> Any:
        p = self.model.caps[parent]
        if data.draw(st.booleans(), label="narrowing"):
            actions = data.draw(st.sets(st.sampled_from(sorted(p.actions)), min_size=1))
            narrower = [g for g in GLOBS if glob_within(g, p.globs)]
            globs = data.draw(st.sets(st.sampled_from(narrower), min_size=1, max_size=2))
        else:
            actions = data.draw(st.sets(st.sampled_from(CAP_ACTIONS), min_size=1, max_size=3))
            globs = data.draw(st.sets(st.sampled_from(GLOBS), min_size=1, max_size=2))
        nb = data.draw(st.sampled_from([None, p.not_before + 5, p.not_before - 10, self.clock]))
        exp = data.draw(st.sampled_from([None, p.expires - 5, p.expires + 10, self.clock + 1]))
        child_nb = p.not_before if nb is None else nb
        child_exp = p.expires if exp is None else exp
        predicted = self.model.attenuate_outcome(
            p, frozenset(actions), tuple(globs), child_nb, child_exp
        )
        derived, code = _attempt(
            lambda: self.sop.attenuate(
                p.token, actions=sorted(actions), resources=sorted(globs), not_before=nb,
                expires=exp,
            )
        )  # fmt: skip
        assert code == predicted, (code, predicted)
        if derived is None:
            return multiple()
        cap, token = derived
        assert (cap.parent_id, cap.principal) == (p.id, p.principal)
        assert cap.actions == frozenset(actions)
        assert (set(cap.resources), cap.not_before, cap.expires) == (globs, child_nb, child_exp)
        return self._remember(cap, token, parent)

    @rule(cap=caps, unknown_first=st.booleans())
    def revoke(self, cap: int, unknown_first: bool) -> None:
        if unknown_first:  # revoking what was never admitted changes nothing
            with pytest.raises(CapabilityError) as info:
                self.sop.revoke("cap-" + "0" * 32)
            assert info.value.code == "unknown"
        marked = self.model.revoke(cap)
        revoked = self.sop.revoke(self.model.caps[cap].id)
        assert revoked[0] == self.model.caps[cap].id
        assert set(revoked) == {self.model.caps[k].id for k in marked}

    @rule(seconds=st.sampled_from([1, 10, 60, 300, 3600]))
    def advance_clock(self, seconds: int) -> None:
        self.clock += seconds
        self.model.now = self.clock

    # ---- rules: the bridge ---------------------------------------------------------------
    @rule(cap=caps, data=st.data())
    def submit_covered(self, cap: int, data: st.DataObject) -> None:
        """A request the capability covers, as its holder would send it: reaches the policy."""
        c = self.model.caps[cap]
        covered = [p for p in PATHS if any(glob_matches(g, p) for g in c.globs)]
        raw: dict[str, Any] = {
            "request_id": self._next("r"),
            "principal": c.principal,
            "action": data.draw(st.sampled_from(sorted(c.actions))),
            "resource": data.draw(st.sampled_from(covered)),
            "capability": c.token,
            "channel": data.draw(st.sampled_from(["bridge", "bridge", "bridge", "admin"])),
            "context": data.draw(CONTEXTS),
        }
        if data.draw(st.sampled_from([False, False, False, True]), label="obligation"):
            raw["obligations"] = [OBLIGATION]
        self._decide_and_compare(raw, ("genuine", c))

    @rule(cap=caps, data=st.data())
    def submit(self, cap: int, data: st.DataObject) -> None:
        c = self.model.caps[cap]
        kind = data.draw(st.sampled_from(TOKEN_KINDS), label="token")
        if kind == "malformed":
            self._decide_and_compare(_malformed(data, self._next("m")), ("absent", None))
            return
        principal = data.draw(st.sampled_from([c.principal, *PRINCIPALS, OTHER_PRINCIPAL]))
        action = data.draw(
            st.one_of(st.sampled_from(sorted(c.actions)), st.sampled_from(REQUEST_ACTIONS))
        )
        covered = [p for p in PATHS if any(glob_matches(g, p) for g in c.globs)]
        resource = data.draw(st.one_of(st.sampled_from(covered), st.sampled_from(PATHS)))
        raw: dict[str, Any] = {
            "request_id": self._next("r"),
            "principal": principal,
            "action": action,
            "resource": resource,
            "capability": _token(kind, c.token),
            "channel": data.draw(st.sampled_from(["bridge", "bridge", "bridge", "admin"])),
            "context": data.draw(CONTEXTS),
        }
        if data.draw(st.sampled_from([False, False, False, True]), label="obligation"):
            raw["obligations"] = [OBLIGATION]
        self._decide_and_compare(raw, (kind, c if kind == "genuine" else None))

    def _decide_and_compare(self, raw: dict[str, Any], kind: tuple[str, ModelCap | None]) -> None:
        expected = self.model.decide(raw, kind)
        store, _ = self._ports()
        before, size = self._authority(), store.log_size()
        decision = self.sop.submit(raw)
        assert self._authority() == before  # spec: INV-6 — the bridge changed nothing
        assert store.log_size() == size + 1  # exactly one entry, the decision
        (_, _, payload), = store.log_entries(size)  # fmt: skip
        assert json.loads(payload)["type"] == "decision"
        self.expected[raw["request_id"]] = expected
        self.decisions.append(decision)
        first = decision.reasons[0] if decision.reasons else None
        got = (str(decision.effect), first and str(first.stage), first and first.code)
        assert got == (expected.effect, expected.stage, expected.code), (raw, decision, expected)
        assert decision.capability_id == expected.cap_id, (decision, expected)
        assert frozenset(decision.policy_ids) == expected.policy_ids, (decision, expected)

    # ---- invariants: DESIGN section 2 -----------------------------------------------------
    def _entries_since(self, name: str) -> list[dict[str, Any]]:
        store, _ = self._ports()
        rows = store.log_entries(self.cursor[name])
        self.cursor[name] = store.log_size()
        return [json.loads(p) for _, _, p in rows]

    @invariant()
    def inv_1_deny_by_default(self) -> None:
        assert self.sop.health is Health.READY
        for entry in self._entries_since("inv1"):
            if entry.get("type") != "decision" or entry["effect"] != "ALLOW":
                continue
            request = entry["request"]
            then = self.expected[request["request_id"]]  # the model's state at that time
            v = then.verdict
            assert v is not None, (entry, then)
            assert then.cap_valid, (entry, then)  # a valid, unrevoked, covering capability
            assert entry["capability_id"] == then.cap_id, (entry, then)
            assert v.permits, (entry, then)  # some permit matches
            assert set(entry["policy_ids"]) == v.permits, (entry, then)
            assert not v.forbids, (entry, then)  # no forbid matches
            assert not v.errors, (entry, then)  # and nothing failed to evaluate
            assert request["obligations"] == [], (entry, then)  # no obligation (unwired gate)
            assert then.effect == "ALLOW", (entry, then)

    @invariant()
    def inv_2_fail_closed(self) -> None:
        stages = {str(s) for s in Stage}
        for d in self.decisions:
            assert d.reasons, d  # no decision without reasons
            assert all(str(r.stage) in stages for r in d.reasons), d
            assert all(r.code for r in d.reasons), d
        for entry in self._entries_since("inv2"):
            if entry.get("type") != "decision":
                continue
            assert entry["effect"] in ("ALLOW", "DENY"), entry
            assert entry["reasons"], entry
            assert all(r["stage"] in stages for r in entry["reasons"]), entry
            if "request" not in entry:  # an unparsed request is never allowed
                assert (entry["effect"], entry["reasons"][0]["stage"]) == ("DENY", "schema")

    @invariant()
    def inv_5_log_append_only(self) -> None:
        store, _ = self._ports()
        rows = store.log_entries()
        assert [i for i, _, _ in rows] == list(range(store.log_size()))  # no gap, no loss
        assert all(leaf == _leaf_hash(p) for _, leaf, p in rows[len(self.seen_log) :])
        assert len(rows) >= len(self.seen_log)  # the log only grows
        assert rows[: len(self.seen_log)] == self.seen_log  # earlier entries byte-identical
        self.seen_log = rows

    @invariant()
    def inv_6_no_bridge_remediation(self) -> None:
        # Only the admin-plane rules move the model; the bridge may move nothing.
        store, caps = self._ports()
        active = store.load_active_policy_set()
        assert (self.sop.policy.digest if self.sop.policy else None) == self.expected_digest
        assert (None if active is None else active[0]) == self.expected_digest
        assert {c.id for c in caps.all()} == {c.id for c in self.model.caps.values()}
        assert set(store.load_revocations()) == {self.model.caps[k].id for k in self.model.revoked}

    @invariant()
    def inv_9_effect_after_record(self) -> None:
        store, _ = self._ports()
        entries = {i: json.loads(p) for i, _, p in store.log_entries()}
        for d in self.decisions:
            assert d.log_index is not None, d  # every decision is recorded, ALLOW above all
            entry = entries[d.log_index]
            assert (entry["type"], entry["effect"]) == ("decision", str(d.effect)), (d, entry)
            if d.request_id is not None:
                assert entry["request"]["request_id"] == d.request_id, (d, entry)
        self.decisions.clear()

    @invariant()
    def inv_10_attenuation_only(self) -> None:
        _, caps = self._ports()
        for cap in caps.all():
            if cap.parent_id is None:
                continue
            parent = caps.get(cap.parent_id)
            assert cap.principal == parent.principal, cap
            assert cap.actions <= parent.actions, cap
            assert parent.not_before <= cap.not_before < cap.expires <= parent.expires, cap
            assert all(glob_within(g, parent.resources) for g in cap.resources), cap
        for key, c in self.model.caps.items():
            descendants = {self.model.caps[k].id for k in self.model.descendants(key)}
            assert set(caps.descendants(c.id)) == descendants
            dead = self.model.is_dead(key)
            assert caps.is_revoked(c.id) == dead, c
            if dead:  # dead for check: whatever it would have covered is refused as revoked
                resource = next(p for p in PATHS if any(glob_matches(g, p) for g in c.globs))
                request = Request(
                    request_id="inv-10", principal=c.principal, action=min(c.actions),
                    resource=resource,
                )  # fmt: skip
                with pytest.raises(CapabilityError) as info:
                    caps.check(c.token, request)
                assert info.value.code == "revoked"


class KernelVersusModelWithGeneratedSets(KernelVersusModel):
    """The same, also activating one randomly generated policy set per example."""

    max_generated_sets = 1


FAST = settings(
    max_examples=40,
    stateful_step_count=25,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
SLOW = settings(FAST, max_examples=300)


@pytest.fixture
def memoised_activation_gate(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sop_module, "check_policy_set", _memo_check_policy_set)


@pytest.mark.usefixtures("memoised_activation_gate")
def test_kernel_decides_as_the_reference_model() -> None:
    run_state_machine_as_test(KernelVersusModel, settings=FAST)  # type: ignore[no-untyped-call]  # hypothesis leaves it unannotated


@pytest.mark.slow
@pytest.mark.usefixtures("memoised_activation_gate")
def test_kernel_decides_as_the_reference_model_long_run() -> None:
    machine = KernelVersusModelWithGeneratedSets
    run_state_machine_as_test(machine, settings=SLOW)  # type: ignore[no-untyped-call]  # hypothesis leaves it unannotated


# ---- the model's own footing ---------------------------------------------------------------


def test_model_paths_represent_every_glob_region() -> None:
    """Every membership pattern a path can have in the test's globs has a path in PATHS.

    Globs compare segments with literals or wildcards, so a path is characterised
    by its first four segments (each a literal of some glob, or any other name,
    here `x`) and by whether it has more: enumerating those covers every path.
    """
    words = sorted({s for g in (*GLOBS, *APPROVED_SCOPES) for s in g.split("/")} - {"*", "**"})
    words.append("x")
    have = {signature(p) for p in PATHS}
    frontier = [[w] for w in words]
    for _ in range(4):
        for segs in frontier:
            path = "/".join(segs)
            assert signature(path) in have, path
            assert signature(path + "/x") in have, path + "/x"
        frontier = [[*s, w] for s in frontier for w in words]


def test_model_glob_matching_agrees_with_the_kernel_matcher() -> None:
    for g in GLOBS:
        compiled = Glob(g)
        for p in PATHS:
            assert glob_matches(g, p) == compiled.matches(p), (g, p)


def test_model_vocabulary_is_the_kernels() -> None:
    assert ALL_ACTIONS == kernel_request.ACTIONS
    assert ADMIN_ACTIONS == kernel_request.ADMIN_ACTIONS
    assert PERSIST_ACTIONS == kernel_request.PERSIST_ACTIONS
    assert set(CONTEXT_TYPES) == set(kernel_request.CONTEXT_SCHEMA)
    default = tomllib.loads(nexus_config.DEFAULT_CONFIG)
    assert list(APPROVED_SCOPES) == default["scopes"]["approved"]
