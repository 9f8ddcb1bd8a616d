"""Model-based test: the real kernel and the reference model in lockstep (DESIGN section 6.2).

A hypothesis ``RuleBasedStateMachine`` boots one SOP per example (on a fresh
temporary directory, with a mutable clock and its real proof gate) and
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
    render_policy_set,
    signature,
)
from stateful_menus import (
    ATTACHED,
    ATTACHED_ALWAYS,
    ATTENUATION_MODES,
    CAP_ACTIONS,
    CATALOGUE,
    CONTEXTS,
    NOW,
    POLICY_SETS,
    PROFILES,
    REFUSED_SETS,
    REQUEST_ACTIONS,
    ROUTINE_CONTEXTS,
    SOUND_SETS,
    TOKEN_KINDS,
    make_token,
    malformed_request,
    obligation,
    predicted_refusals,
)

from sop_verified.core import request as kernel_request
from sop_verified.core.capability import Capability, CapabilityRegistry
from sop_verified.core.health import Health
from sop_verified.core.policy import PolicyCheckReport, PolicySet, check_policy_set
from sop_verified.core.request import Decision, Request, Stage
from sop_verified.errors import CapabilityError
from sop_verified.nexus import config as nexus_config
from sop_verified.nexus import sop as sop_module
from sop_verified.nexus.sop import SOP, PolicyRefusedError
from sop_verified.storage.ports import StorageBackend
from sop_verified.tools.checkpoint import open_checkpoint
from sop_verified.tools.paths import Glob

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


def _mth(leaves: list[bytes]) -> bytes:
    """MTH of RFC 9162 section 2.1.1 over leaf hashes, recursively, written from the RFC."""
    if not leaves:
        return hashlib.sha256(b"").digest()
    if len(leaves) == 1:
        return leaves[0]
    k = 1
    while k * 2 < len(leaves):
        k *= 2
    return hashlib.sha256(b"\x01" + _mth(leaves[:k]) + _mth(leaves[k:])).digest()


# ---- the machine ------------------------------------------------------------------------------


class KernelVersusModel(RuleBasedStateMachine):
    """SOP and the reference model, step by step; the invariants are the INVs."""

    caps = Bundle("caps")
    max_generated_sets = 1  # generated policy sets per example (each costs Z3 time)

    def __init__(self) -> None:
        super().__init__()
        self._tmp = tempfile.TemporaryDirectory(prefix="sop-stateful-")
        self.root = Path(self._tmp.name)
        self.clock = NOW
        SOP.init(self.root / "data")
        self.sop = SOP.boot(self.root / "data", now=self._now)
        assert self.sop.health is Health.READY, self.sop.boot_report
        self.model = ReferenceModel(NOW)
        self.expected_digest: str | None = None
        self.expected: dict[str, Expected] = {}  # request id -> the model's decision then
        self.decisions: list[Decision] = []  # every decision submit returned
        self.seen_log: list[tuple[int, bytes, bytes]] = []
        self.cursor = {"inv1": 0, "inv2": 0}  # log entries each invariant has read
        self.decision_cursor = {"inv2": 0, "inv5": 0, "inv9": 0}  # decisions each has read
        self.checked_notes: set[str] = set()  # signed checkpoints already checked
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
        active = store.policies.load_active_policy_set()
        return (
            self.sop.policy.digest if self.sop.policy else None,
            None if active is None else active[0],
            tuple(c.id for c in caps.all()),
            frozenset(store.capabilities.load_revocations()),
        )

    def _ports(self) -> tuple[StorageBackend, CapabilityRegistry]:
        store, caps = self.sop.store, self.sop.capabilities
        assert store is not None
        assert caps is not None
        return store, caps

    def _activate(self, policies: tuple[ModelPolicy, ...]) -> None:
        directory = self.root / self._next("policy")
        directory.mkdir()
        (directory / "policy.toml").write_text(render_policy_set(policies))
        refused = _refusals(self.sop, directory)
        assert refused == predicted_refusals(policies), (render_policy_set(policies), refused)
        if not refused:
            assert self.sop.policy is not None
            self.model.policies = policies
            self.expected_digest = self.sop.policy.digest

    # ---- rules: the admin plane --------------------------------------------------------
    @initialize(name=st.sampled_from([*SOUND_SETS, *SOUND_SETS, None]))
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
        """Derive a child: narrowing, or trying to widen one dimension, or anything at all."""
        p = self.model.caps[parent]
        mode = data.draw(st.sampled_from(ATTENUATION_MODES))
        actions = data.draw(st.sets(st.sampled_from(sorted(p.actions)), min_size=1))
        narrower = [g for g in GLOBS if glob_within(g, p.globs)]
        globs = data.draw(st.sets(st.sampled_from(narrower), min_size=1, max_size=2))
        nb = data.draw(st.sampled_from([None, p.not_before + 5, self.clock]))
        exp = data.draw(st.sampled_from([None, p.expires - 5, self.clock + 1]))
        if mode in ("wider_actions", "anything"):
            actions.add(data.draw(st.sampled_from(CAP_ACTIONS)))
        if mode in ("wider_resources", "anything"):
            globs.add(data.draw(st.sampled_from(GLOBS)))
        if mode in ("wider_window", "anything"):
            nb = data.draw(st.sampled_from([nb, p.not_before - 10]))
            exp = data.draw(st.sampled_from([exp, p.expires + 10]))
        child_nb = p.not_before if nb is None else nb
        child_exp = p.expires if exp is None else exp
        reasons = self.model.attenuate_outcome(
            p, frozenset(actions), tuple(globs), child_nb, child_exp
        )
        derived, code = _attempt(
            lambda: self.sop.attenuate(
                p.token, actions=sorted(actions), resources=sorted(globs), not_before=nb,
                expires=exp,
            )
        )  # fmt: skip
        assert (code is None) == (not reasons), (code, reasons)  # refused exactly when wider
        assert code is None or code in reasons, (code, reasons)
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
        self._set_clock(self.clock + seconds)

    @rule(cap=caps, edge=st.sampled_from(["expires", "not_before", "just_before_expiry"]))
    def advance_clock_to_an_edge(self, cap: int, edge: str) -> None:
        """Move to a capability's window edge, where off-by-one errors live (never backwards)."""
        c = self.model.caps[cap]
        to = {"expires": c.expires, "not_before": c.not_before}.get(edge, c.expires - 1)
        self._set_clock(max(self.clock, to))

    def _set_clock(self, to: int) -> None:
        self.clock = to
        self.model.now = to

    # ---- rules: the bridge ---------------------------------------------------------------
    @rule(cap=caps, data=st.data())
    def submit_covered(self, cap: int, data: st.DataObject) -> None:
        """A request the capability covers, as its holder would send it: reaches the policy."""
        c = self.model.caps[cap]
        raw = self._covered_request(c, data)
        raw["channel"] = data.draw(st.sampled_from(["bridge", "bridge", "bridge", "admin"]))
        raw["context"] = data.draw(CONTEXTS)
        attached = data.draw(ATTACHED, label="obligation")
        if attached is not None:
            raw["obligations"] = [obligation(attached)]
        self._decide_and_compare(raw, ("genuine", c))

    @rule(cap=caps, data=st.data())
    def submit_routine(self, cap: int, data: st.DataObject) -> None:
        """Everyday traffic: covered, small, through the bridge, sometimes classified."""
        c = self.model.caps[cap]
        raw = self._covered_request(c, data)
        raw["context"] = data.draw(ROUTINE_CONTEXTS)
        self._decide_and_compare(raw, ("genuine", c))

    @rule(cap=caps, data=st.data())
    def submit_routine_with_obligation(self, cap: int, data: st.DataObject) -> None:
        """Everyday traffic carrying a proof obligation, provable or not."""
        c = self.model.caps[cap]
        raw = self._covered_request(c, data)
        raw["context"] = data.draw(ROUTINE_CONTEXTS)
        raw["obligations"] = [obligation(data.draw(ATTACHED_ALWAYS, label="obligation"))]
        self._decide_and_compare(raw, ("genuine", c))

    def _covered_request(self, c: ModelCap, data: st.DataObject) -> dict[str, Any]:
        covered = [p for p in PATHS if any(glob_matches(g, p) for g in c.globs)]
        return {
            "request_id": self._next("r"),
            "principal": c.principal,
            "action": data.draw(st.sampled_from(sorted(c.actions))),
            "resource": data.draw(st.sampled_from(covered)),
            "capability": c.token,
        }

    @rule(cap=caps, data=st.data())
    def submit(self, cap: int, data: st.DataObject) -> None:
        c = self.model.caps[cap]
        kind = data.draw(st.sampled_from(TOKEN_KINDS), label="token")
        if kind == "malformed":
            self._decide_and_compare(malformed_request(data, self._next("m")), ("absent", None))
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
            "capability": make_token(kind, c.token),
            "channel": data.draw(st.sampled_from(["bridge", "bridge", "bridge", "admin"])),
            "context": data.draw(CONTEXTS),
        }
        attached = data.draw(ATTACHED, label="obligation")
        if attached is not None:
            raw["obligations"] = [obligation(attached)]
        self._decide_and_compare(raw, (kind, c if kind == "genuine" else None))

    def _decide_and_compare(self, raw: dict[str, Any], kind: tuple[str, ModelCap | None]) -> None:
        expected = self.model.decide(raw, kind)
        store, _ = self._ports()
        before, size = self._authority(), store.log.log_size()
        decision = self.sop.submit(raw)
        assert self._authority() == before  # spec: INV-6 — the bridge changed nothing
        # One decision entry, last, after the attestations of verdicts proved for it.
        kinds = [json.loads(p)["type"] for _, _, p in store.log.log_entries(size)]
        assert kinds[-1:] == ["decision"], kinds
        assert set(kinds[:-1]) <= {"attestation"}, kinds
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
        rows = store.log.log_entries(self.cursor[name])
        self.cursor[name] = store.log.log_size()
        return [json.loads(p) for _, _, p in rows]

    def _decisions_since(self, name: str) -> list[Decision]:
        new = self.decisions[self.decision_cursor[name] :]
        self.decision_cursor[name] = len(self.decisions)
        return new

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
            assert then.obligations_proved, (entry, then)  # every obligation PROVED
            assert then.effect == "ALLOW", (entry, then)

    @invariant()
    def inv_2_fail_closed(self) -> None:
        stages = {str(s) for s in Stage}
        for d in self._decisions_since("inv2"):
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
        rows = store.log.log_entries()
        assert [i for i, _, _ in rows] == list(range(store.log.log_size()))  # no gap, no loss
        assert all(leaf == _leaf_hash(p) for _, leaf, p in rows[len(self.seen_log) :])
        assert len(rows) >= len(self.seen_log)  # the log only grows
        assert rows[: len(self.seen_log)] == self.seen_log  # earlier entries byte-identical
        self.seen_log = rows
        # Every signed checkpoint (each receipt's, and the latest) commits to a prefix of
        # these very entries: as the prefixes never change, all checkpoints are consistent.
        log = store.log.opened
        notes = [d.receipt.checkpoint for d in self._decisions_since("inv5") if d.receipt]
        for note in [*notes, log.checkpoint_note]:
            if note is None or note in self.checked_notes:
                continue
            cp = open_checkpoint(note, log.verifiers, origin=log.origin)
            assert cp.root_hash == _mth([leaf for _, leaf, _ in rows[: cp.size]]), cp
            self.checked_notes.add(note)

    @invariant()
    def inv_6_no_bridge_remediation(self) -> None:
        # Only the admin-plane rules move the model; the bridge may move nothing.
        store, caps = self._ports()
        active = store.policies.load_active_policy_set()
        assert (self.sop.policy.digest if self.sop.policy else None) == self.expected_digest
        assert (None if active is None else active[0]) == self.expected_digest
        assert {c.id for c in caps.all()} == {c.id for c in self.model.caps.values()}
        assert set(store.capabilities.load_revocations()) == {
            self.model.caps[k].id for k in self.model.revoked
        }

    @invariant()
    def inv_9_effect_after_record(self) -> None:
        store, _ = self._ports()
        entries = {i: json.loads(p) for i, _, p in store.log.log_entries()}
        for d in self._decisions_since("inv9"):
            assert d.log_index is not None, d  # every decision is recorded, ALLOW above all
            entry = entries[d.log_index]
            assert (entry["type"], entry["effect"]) == ("decision", str(d.effect)), (d, entry)
            if d.request_id is not None:
                assert entry["request"]["request_id"] == d.request_id, (d, entry)

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


FAST = settings(  # 12 examples: the README's test command stays under 5 minutes on 2 cores
    max_examples=12,
    stateful_step_count=30,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
# 150 examples (~2 min here) keep the whole of .ci/run under 15 minutes on 2 cores
SLOW = settings(FAST, max_examples=150)


@pytest.fixture
def memoised_activation_gate(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sop_module, "check_policy_set", _memo_check_policy_set)


@pytest.mark.usefixtures("memoised_activation_gate")
def test_kernel_decides_as_the_reference_model() -> None:
    run_state_machine_as_test(KernelVersusModel, settings=FAST)  # type: ignore[no-untyped-call]  # hypothesis leaves it unannotated


@pytest.mark.slow
@pytest.mark.usefixtures("memoised_activation_gate")
def test_kernel_decides_as_the_reference_model_long_run() -> None:
    run_state_machine_as_test(KernelVersusModel, settings=SLOW)  # type: ignore[no-untyped-call]  # hypothesis leaves it unannotated


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


def test_catalogue_sets_are_what_their_names_say() -> None:
    assert set(SOUND_SETS) | set(REFUSED_SETS) == set(CATALOGUE)
    assert all(not predicted_refusals(CATALOGUE[name]) for name in SOUND_SETS)
    assert all(predicted_refusals(CATALOGUE[name]) for name in REFUSED_SETS)


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
