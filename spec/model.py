"""The SOP state machine in Z3: the initial states and every transition.

Each transition is a function of the pre-state ``s`` and fresh input
variables (the non-determinism: what arrives, what fails, what an attacker
does). It returns a :class:`Step`: a guard (when the transition may happen)
and the post-state as Z3 terms over ``s`` and the inputs. ``Step_t(s, s')``
is ``guard ∧ s' = post``. The transitions follow the code
(docs/ORDER_OF_OPERATIONS.md): ``decide`` is ``OpsKernel.submit`` (health
gate, capability, policy, obligations, then the append); the effects are the
persistence controller; ``boot`` is ``nexus/boot.py``.

Named *mutations* seed known bugs into single transitions; proofs/ uses them
to show that each invariant's check can fail (:data:`MUTATIONS`).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass

import z3

from sop_verified.errors import InputError
from sop_verified.spec import state as st
from sop_verified.spec.boot_order import reference_boot_order
from sop_verified.spec.derived import (
    admin_changed,
    ancestors,
    covers,
    revoked_or_ancestor_revoked,
    snapshot_verifies,
)
from sop_verified.spec.state import (
    ADMIN,
    ADMIN_ENTRY,
    BOOTING,
    BRIDGE,
    DECISION_ENTRY,
    DEGRADED,
    ENV,
    FAILED,
    PROVED,
    READY,
    SEAL_ENTRY,
    TABLES,
    VERDICT_ENTRY,
    Capability,
    Checkpoint,
    Effect,
    Entry,
    LastDecision,
    Policy,
    Scope,
    Seal,
    Snapshot,
    State,
    StoredTable,
    Term,
    VerdictSlot,
    ite,
    pick,
    store,
)
from sop_verified.spec.store import (
    derived_tables,
    digests_unforgeable,
    load,
    seal_check,
    seal_commits_to,
    tables_equal,
    write_through,
)

__all__ = [
    "MUTATIONS",
    "TRANSITIONS",
    "Inputs",
    "Mutation",
    "Step",
    "Transition",
    "check_mutations",
    "init",
    "step",
]


@dataclass(frozen=True)
class Mutation:
    """A seeded bug: the invariant it must break, where it lives, what it does."""

    breaks: str
    transitions: tuple[str, ...]
    description: str


MUTATIONS: dict[str, Mutation] = {
    "revoke_forgets_descendants": Mutation(
        "INV-10", ("revoke",), "revoke marks only the target, not its descendants"
    ),
    "attenuate_widens": Mutation(
        "INV-10", ("attenuate",), "attenuate does not check that the child's rights are a subset"
    ),
    "decide_ignores_forbid": Mutation(
        "INV-1", ("decide",), "decide allows when a permit matches even if a forbid does"
    ),
    "fault_allows": Mutation(
        "INV-2", ("decide",), "decide ignores an exception raised while deciding"
    ),
    "verdict_overwrite": Mutation(
        "INV-3", ("record_verdict",), "a disagreeing re-check overwrites the recorded verdict"
    ),
    "write_outside_scope": Mutation(
        "INV-4", ("write",), "the persistence controller skips the scope check"
    ),
    "log_overwrites_when_full": Mutation(
        "INV-5", ("decide",), "a full log overwrites its last entry"
    ),
    "bridge_revokes": Mutation(
        "INV-6", ("revoke",), "revoke does not check that the message came on the admin plane"
    ),
    "resume_skips_lineage": Mutation(
        "INV-7", ("resume",), "resume does not verify the snapshot's lineage"
    ),
    "boot_ready_on_failure": Mutation(
        "INV-8", ("boot",), "boot reports READY although a service failed"
    ),
    "boot_order_any_ready": Mutation(
        "INV-8",
        ("boot_order_kahn_meets_spec",),
        "the boot order picks any ready service, not the first by name",
    ),
    "effect_before_record": Mutation(
        "INV-9",
        ("write", "phase_advance", "seal", "resume"),
        "the effect happens first and its decision is appended after",
    ),
    "admin_unlogged": Mutation(
        "INV-9", ("activate_policy",), "a policy activation takes effect without a log entry"
    ),
    "boot_skips_store_check": Mutation(
        "INV-11", ("boot",), "boot reads the derived tables back without checking the seal"
    ),
    "digests_forgeable": Mutation(
        "INV-11",
        ("tamper_store",),
        "the assumption is dropped: the attacker may find rows with a given digest sum",
    ),
    "seal_trusts_stored_row": Mutation(
        "INV-11",
        ("revoke",),
        "SOP's write subtracts the stored row's digest without checking it is the row it wrote",
    ),
    "remac_ignores_log_size": Mutation(
        "INV-11",
        ("decide",),
        "the seal is MAC'd again on a log append even when it binds another log size",
    ),
}


def check_mutations(mutations: frozenset[str]) -> frozenset[str]:
    """Return ``mutations`` if every name is known, else raise.

    Args:
        mutations: names of seeded bugs.

    Returns:
        The same set.

    Raises:
        InputError: a name is not in :data:`MUTATIONS`.
    """
    unknown = sorted(mutations - MUTATIONS.keys())
    if unknown:
        raise InputError(
            f"unknown mutation `{unknown[0]}`",
            where="mutations",
            accepted=", ".join(f"`{m}`" for m in sorted(MUTATIONS)),
        )
    return mutations


# -- inputs and steps -----------------------------------------------------------
class Inputs:
    """Fresh input variables of one step, with their range constraints."""

    def __init__(self, prefix: str) -> None:
        self.prefix = prefix
        self.names: dict[str, Term] = {}
        self.constraints: list[Term] = []

    def integer(self, name: str, lo: int | None = None, hi: int | None = None) -> Term:
        """A fresh integer input in ``[lo, hi]`` (either bound optional)."""
        v = z3.Int(f"{self.prefix}.{name}")
        self.names[name] = v
        if lo is not None:
            self.constraints.append(v >= lo)
        if hi is not None:
            self.constraints.append(v <= hi)
        return v

    def boolean(self, name: str) -> Term:
        """A fresh boolean input."""
        v = z3.Bool(f"{self.prefix}.{name}")
        self.names[name] = v
        return v

    def booleans(self, name: str, n: int) -> tuple[Term, ...]:
        """``n`` fresh boolean inputs ``name[0..n)``."""
        return tuple(self.boolean(f"{name}[{k}]") for k in range(n))

    def channel(self) -> Term:
        """Where the message arrived: the bridge or the admin plane."""
        return self.integer("channel", BRIDGE, ADMIN)


@dataclass(frozen=True)
class Step:
    """One step: when it may happen (its inputs' ranges included) and the state after it."""

    guard: Term
    post: State


Build = Callable[[State, Inputs, frozenset[str]], tuple[Term, State, Term]]


@dataclass(frozen=True)
class Transition:
    """A named transition of the model."""

    name: str
    doc: str
    build: Build


def _admin_only(channel: Term) -> Term:
    return channel == ADMIN  # spec: INV-6 — admin changes only on the admin plane


def _append(s: State, entry: Entry) -> tuple[Term, State]:
    """Append ``entry``; the guard is that the log has room."""
    post = dataclasses.replace(s, log=store(s.log, s.log_size, entry), log_size=s.log_size + 1)
    return s.log_size < st.N_LOG, post


def _logged(guard: Term, post: State, cap: Term) -> tuple[Term, State]:
    """An admin change, appended to the log in the same step, before it takes effect."""
    entry = Entry(
        z3.IntVal(ADMIN_ENTRY),
        z3.BoolVal(True),
        cap,
        z3.IntVal(0),
        z3.IntVal(0),
        z3.IntVal(0),
        z3.IntVal(-1),
    )
    room, post = _append(post, entry)  # spec: INV-9 — no log entry, no change
    return z3.And(guard, room), post


# -- initial states ------------------------------------------------------------------
def init(s: State) -> Term:
    """The initial states: nothing admitted, nothing logged, BOOTING."""
    return z3.And(
        s.now >= 0,
        s.health == BOOTING,
        *[z3.Not(u) for u in s.services_up],
        s.cap_count == 0,
        *[z3.Not(p.active) for p in s.policies],
        s.key_epoch == 0,
        *[z3.Not(q.defined) for q in s.scopes],
        *[z3.And(z3.Not(v.recorded), z3.Not(v.alarm)) for v in s.verdicts],
        s.log_size == 0,
        s.checkpoint_count == 0,
        s.effect_count == 0,
        s.snap_count == 0,
        s.active_snapshot == -1,
        s.resumes == 0,
        z3.Not(s.last.made),
        s.bridge_changes == 0,
        *[tables_equal(d, t) for d, t in zip(s.disk, derived_tables(s), strict=True)],
        s.seal.mac_ok,
        s.seal.log_size == 0,
        seal_commits_to(s.seal, derived_tables(s)),
    )


# -- admin plane (nexus/sop.py: every change logged first) ---------------------------------
_NO_CAP = z3.IntVal(-1)


def _admit(s: State, x: Inputs, m: frozenset[str]) -> tuple[Term, State, Term]:
    ch = x.channel()
    new = Capability(
        z3.IntVal(-1),
        x.integer("owner", 0, st.N_PROTOCOLS - 1),
        x.booleans("rights", st.N_ACTS * st.N_SCOPES),
        x.integer("not_before"),
        x.integer("expiry"),
        z3.BoolVal(False),
    )
    guard = z3.And(_admin_only(ch), s.cap_count < st.N_CAPS)
    post = dataclasses.replace(s, cap_count=s.cap_count + 1, caps=store(s.caps, s.cap_count, new))
    return (*_logged(guard, post, s.cap_count), ch)


def _attenuate(s: State, x: Inputs, m: frozenset[str]) -> tuple[Term, State, Term]:
    ch = x.channel()
    p = x.integer("parent", 0, st.N_CAPS - 1)
    rights = x.booleans("rights", st.N_ACTS * st.N_SCOPES)
    nbf, exp = x.integer("not_before"), x.integer("expiry")
    par = pick(s.caps, p)
    subset = z3.And([z3.Implies(r, pr) for r, pr in zip(rights, par.rights, strict=True)])
    if "attenuate_widens" in m:
        subset = z3.BoolVal(True)
    narrower = z3.And(subset, nbf >= par.not_before, exp <= par.expiry)  # spec: INV-10
    new = Capability(p, par.owner, rights, nbf, exp, z3.BoolVal(False))
    guard = z3.And(
        _admin_only(ch), s.cap_count < st.N_CAPS, p < s.cap_count, z3.Not(par.revoked), narrower
    )
    post = dataclasses.replace(s, cap_count=s.cap_count + 1, caps=store(s.caps, s.cap_count, new))
    return (*_logged(guard, post, s.cap_count), ch)


def _descends(s: State, i: int, c: Term) -> Term:
    """Capability slot ``i`` is a (strict) descendant of ``c``."""
    return z3.Or([a == c for a in ancestors(s, z3.IntVal(i))])


def _revoke(s: State, x: Inputs, m: frozenset[str]) -> tuple[Term, State, Term]:
    ch = x.channel()
    c = x.integer("cap", 0, st.N_CAPS - 1)
    caps = []
    for i, cap in enumerate(s.caps):
        hit = z3.Or(c == i, _descends(s, i, c))  # spec: INV-10 — the target and all descendants
        if "revoke_forgets_descendants" in m:
            hit = c == i
        caps.append(dataclasses.replace(cap, revoked=z3.Or(cap.revoked, hit)))
    admin = z3.BoolVal(True) if "bridge_revokes" in m else _admin_only(ch)
    guard = z3.And(admin, c < s.cap_count)
    return (*_logged(guard, dataclasses.replace(s, caps=tuple(caps)), c), ch)


def _activate_policy(s: State, x: Inputs, m: frozenset[str]) -> tuple[Term, State, Term]:
    ch = x.channel()
    active = x.booleans("active", st.N_POLICIES)
    forbid = x.booleans("forbid", st.N_POLICIES)
    pols = tuple(Policy(a, f) for a, f in zip(active, forbid, strict=True))
    post = dataclasses.replace(s, policies=pols)
    if "admin_unlogged" in m:
        return _admin_only(ch), post, ch
    return (*_logged(_admin_only(ch), post, _NO_CAP), ch)


def _rotate_key(s: State, x: Inputs, m: frozenset[str]) -> tuple[Term, State, Term]:
    ch = x.channel()
    post = dataclasses.replace(s, key_epoch=s.key_epoch + 1)
    return (*_logged(_admin_only(ch), post, _NO_CAP), ch)


def _define_scope(s: State, x: Inputs, m: frozenset[str]) -> tuple[Term, State, Term]:
    ch = x.channel()
    q = x.integer("scope", 0, st.N_SCOPES - 1)
    new = Scope(z3.BoolVal(True), x.integer("owner", 0, st.N_PROTOCOLS - 1))
    free = z3.Not(pick(s.scopes, q).defined)  # spec: INV-4 — a scope root is never re-owned
    guard = z3.And(_admin_only(ch), free)
    return (*_logged(guard, dataclasses.replace(s, scopes=store(s.scopes, q, new)), _NO_CAP), ch)


def _revoke_snapshot(s: State, x: Inputs, m: frozenset[str]) -> tuple[Term, State, Term]:
    ch = x.channel()
    k = x.integer("snapshot", 0, st.N_SNAPSHOTS - 1)
    snap = dataclasses.replace(pick(s.snapshots, k), revoked=z3.BoolVal(True))
    guard = z3.And(_admin_only(ch), k < s.snap_count)
    post = dataclasses.replace(s, snapshots=store(s.snapshots, k, snap))
    return (*_logged(guard, post, _NO_CAP), ch)


# -- the decision path (OpsKernel.submit) ---------------------------------------------------
def _decide(s: State, x: Inputs, m: frozenset[str]) -> tuple[Term, State, Term]:
    ch = x.channel()
    c = x.integer("cap", -1, st.N_CAPS - 1)  # -1: no token, or a forged one
    act, q = x.integer("act", 0, st.N_ACTS - 1), x.integer("scope", 0, st.N_SCOPES - 1)
    p = x.integer("proto", 0, st.N_PROTOCOLS - 1)
    obligations = x.booleans("obligations", st.N_OBLIGATIONS)
    matches = x.booleans("matches", st.N_POLICIES)
    fault, storage_fault = x.boolean("fault"), x.boolean("storage_fault")
    cap = pick(s.caps, c)
    ready = s.health == READY  # spec: INV-1, INV-8 — only READY admits
    cap_ok = z3.And(
        c >= 0,
        c < s.cap_count,
        z3.Not(revoked_or_ancestor_revoked(s, c)),
        cap.not_before <= s.now,
        s.now < cap.expiry,
        covers(cap, act, q),
        cap.owner == p,
    )
    permit = z3.Or(
        [
            z3.And(pl.active, z3.Not(pl.forbid), mt)
            for pl, mt in zip(s.policies, matches, strict=True)
        ]
    )
    forbid = z3.Or(
        [z3.And(pl.active, pl.forbid, mt) for pl, mt in zip(s.policies, matches, strict=True)]
    )
    policy_ok = permit if "decide_ignores_forbid" in m else z3.And(permit, z3.Not(forbid))
    proved = z3.And(
        [
            z3.Implies(o, z3.And(v.recorded, v.value == PROVED))
            for o, v in zip(obligations, s.verdicts, strict=True)
        ]
    )
    verdict = z3.And(ready, cap_ok, policy_ok, proved)
    if "fault_allows" not in m:
        verdict = z3.And(verdict, z3.Not(fault))  # spec: INV-2 — any exception is DENY
    entry = Entry(z3.IntVal(DECISION_ENTRY), verdict, c, act, q, p, z3.IntVal(-1))
    room, appended = _append(s, entry)
    logged = z3.And(room, z3.Not(storage_fault))  # a full log is a storage failure
    if "log_overwrites_when_full" in m:
        appended, logged = _overwrite_last(s, entry), z3.Not(storage_fault)
    allow = z3.And(verdict, logged)  # spec: INV-2, INV-9 — unlogged is DENY
    post = ite(logged, appended, s)
    last = LastDecision(
        z3.BoolVal(True),
        allow,
        fault,
        z3.Not(logged),
        logged,
        z3.If(logged, post.log_size - 1, z3.IntVal(-1)),
        c,
        act,
        q,
        p,
        obligations,
        matches,
    )
    return z3.BoolVal(True), dataclasses.replace(post, last=last), ch


def _overwrite_last(s: State, entry: Entry) -> State:
    """The seeded bug: when the log is full, the last entry is overwritten."""
    full = s.log_size >= st.N_LOG
    index = z3.If(full, s.log_size - 1, s.log_size)
    return dataclasses.replace(
        s, log=store(s.log, index, entry), log_size=z3.If(full, s.log_size, s.log_size + 1)
    )


def _record_verdict(s: State, x: Inputs, m: frozenset[str]) -> tuple[Term, State, Term]:
    """The proof gate's answer for digest ``h`` (it runs only behind the READY gate)."""
    ch = x.channel()
    h = x.integer("digest", 0, st.N_OBLIGATIONS - 1)
    v = x.integer("verdict", 0, len(st.VERDICTS) - 1)
    storable = x.boolean("storable")  # timeouts and crashes are never recorded
    slot = pick(s.verdicts, h)
    first = z3.And(storable, z3.Not(slot.recorded))
    disagree = z3.And(storable, slot.recorded, slot.value != v)  # put_once found another
    kept = v if "verdict_overwrite" in m else slot.value  # spec: INV-3 — write-once
    new = ite(
        first,
        VerdictSlot(z3.BoolVal(True), v, slot.alarm),
        ite(disagree, VerdictSlot(z3.BoolVal(True), kept, z3.BoolVal(True)), slot),
    )
    health = z3.If(disagree, z3.IntVal(DEGRADED), s.health)  # spec: INV-3 — the alarm
    post = dataclasses.replace(s, verdicts=store(s.verdicts, h, new), health=health)
    # A new verdict is attested and appended to the log (nexus/verdict_attest.py).
    entry = Entry(
        z3.IntVal(VERDICT_ENTRY),
        z3.BoolVal(True),
        z3.IntVal(-1),
        z3.IntVal(0),
        z3.IntVal(0),
        z3.IntVal(0),
        z3.IntVal(-1),
    )
    room, appended = _append(post, entry)
    post = ite(first, appended, post)
    guard = z3.And(s.health == READY, z3.Implies(v == PROVED, storable), z3.Implies(first, room))
    return guard, post, ch


# -- effects (the persistence controller) ------------------------------------------------------
def _effect(s: State, x: Inputs, m: frozenset[str], act: int) -> tuple[Term, State, Term]:
    """Perform one effect of kind ``act``, authorised by an ALLOW already in the log."""
    ch = x.channel()
    d = x.integer("decision", 0, st.N_LOG - 1)
    q, p = x.integer("scope", 0, st.N_SCOPES - 1), x.integer("proto", 0, st.N_PROTOCOLS - 1)
    inside = x.boolean("inside") if act == st.WRITE else z3.BoolVal(True)
    used = z3.Or([z3.And(k < s.effect_count, e.decision == d) for k, e in enumerate(s.effects)])
    if "effect_before_record" in m:
        # The seeded bug: act first, append the ALLOW afterwards.
        room, s = _append(
            s,
            Entry(
                z3.IntVal(DECISION_ENTRY),
                z3.BoolVal(True),
                z3.IntVal(-1),
                z3.IntVal(act),
                q,
                p,
                z3.IntVal(-1),
            ),
        )
        d, authorised, size_at = s.log_size - 1, room, s.log_size - 1
    else:
        e = pick(s.log, d)
        authorised = z3.And(
            d < s.log_size,
            e.kind == DECISION_ENTRY,
            e.allow,  # spec: INV-9
            e.act == act,
            e.scope == q,
            e.proto == p,
            z3.Not(used),
        )
        size_at = s.log_size
    guard = z3.And(s.health == READY, s.effect_count < st.N_EFFECTS, authorised)
    new = Effect(z3.IntVal(act), d, size_at, q, p, inside)
    post = dataclasses.replace(
        s, effect_count=s.effect_count + 1, effects=store(s.effects, s.effect_count, new)
    )
    return guard, post, ch


def _write(s: State, x: Inputs, m: frozenset[str]) -> tuple[Term, State, Term]:
    guard, post, ch = _effect(s, x, m, st.WRITE)
    eff = post.effects
    new = pick(eff, s.effect_count)
    scope = pick(s.scopes, new.scope)
    confined = z3.And(scope.defined, scope.owner == new.proto, new.inside)  # spec: INV-4
    if "write_outside_scope" in m:
        confined = z3.BoolVal(True)
    return z3.And(guard, confined), post, ch


def _phase_advance(s: State, x: Inputs, m: frozenset[str]) -> tuple[Term, State, Term]:
    return _effect(s, x, m, st.PHASE)


def _seal(s: State, x: Inputs, m: frozenset[str]) -> tuple[Term, State, Term]:
    guard, post, ch = _effect(s, x, m, st.SEAL)
    new = pick(post.effects, s.effect_count)
    k = s.snap_count
    room, post = _append(
        post,
        Entry(
            z3.IntVal(SEAL_ENTRY),
            z3.BoolVal(True),
            z3.IntVal(-1),
            z3.IntVal(st.SEAL),
            new.scope,
            new.proto,
            k,
        ),
    )
    snap = Snapshot(
        s.active_snapshot, post.log_size - 1, z3.BoolVal(True), z3.BoolVal(True), z3.BoolVal(False)
    )
    post = dataclasses.replace(
        post, snap_count=k + 1, snapshots=store(s.snapshots, k, snap), active_snapshot=k
    )
    return z3.And(guard, room, k < st.N_SNAPSHOTS), post, ch


def _resume(s: State, x: Inputs, m: frozenset[str]) -> tuple[Term, State, Term]:
    guard, post, ch = _effect(s, x, m, st.RESUME)
    k = x.integer("snapshot", 0, st.N_SNAPSHOTS - 1)
    checks = snapshot_verifies(s, k, lineage="resume_skips_lineage" not in m)
    verified = z3.And([t for _, t in checks])  # spec: INV-7
    post = dataclasses.replace(post, active_snapshot=k, resumes=s.resumes + 1)
    return z3.And(guard, verified), post, ch


# -- the environment: time, faults, attackers, operators' boot ---------------------------------
def _env(s: State, post: State, guard: Term) -> tuple[Term, State, Term]:
    return guard, post, z3.IntVal(ENV)


def _checkpoint(s: State, x: Inputs, m: frozenset[str]) -> tuple[Term, State, Term]:
    c = s.checkpoint_count
    ck = Checkpoint(s.log_size, s.log)
    post = dataclasses.replace(s, checkpoint_count=c + 1, checkpoints=store(s.checkpoints, c, ck))
    return _env(s, post, c < st.N_CHECKPOINTS)


def _tamper_snapshot(s: State, x: Inputs, m: frozenset[str]) -> tuple[Term, State, Term]:
    k = x.integer("snapshot", 0, st.N_SNAPSHOTS - 1)
    old = pick(s.snapshots, k)
    new = Snapshot(
        x.integer("parent"),
        x.integer("entry"),
        x.boolean("sig_ok"),
        x.boolean("blobs_ok"),
        old.revoked,
    )
    post = dataclasses.replace(s, snapshots=store(s.snapshots, k, new))
    return _env(s, post, k < s.snap_count)


def _fresh_table(x: Inputs, name: str, n: int, sorts: tuple[str, ...]) -> StoredTable:
    def field(label: str, sort: str) -> Term:
        return x.boolean(label) if sort == "bool" else x.integer(label)

    return StoredTable(
        x.booleans(f"disk.{name}.present", n),
        tuple(
            tuple(field(f"disk.{name}.row{k}.f{j}", sort) for j, sort in enumerate(sorts))
            for k in range(n)
        ),
    )


def _tamper_store(s: State, x: Inputs, m: frozenset[str]) -> tuple[Term, State, Term]:
    """An attacker who writes the database, not the key files, rewrites derived rows and the seal.

    Any row of any derived table may be edited, inserted or deleted (reordering
    is an edit of the keys' contents: rows are read by key). The seal's bytes
    may be anything, but a seal whose MAC verifies is one SOP produced: one of
    an earlier log size (the log never shrinks, INV-5), or one of this log size,
    which commits to the derived state SOP keeps, because that state changes
    only in a step that appends to the log (INV-11's step part).
    """
    disk = tuple(_fresh_table(x, name, n, sorts) for name, n, sorts in TABLES)
    seal = Seal(
        x.boolean("seal.mac_ok"),
        x.integer("seal.log_size"),
        tuple(x.integer(f"seal.count.{n}") for n, _, _ in TABLES),
        tuple(x.integer(f"seal.sum.{n}") for n, _, _ in TABLES),
    )
    mine = derived_tables(s)
    minted = z3.Or(
        seal.log_size < s.log_size,
        z3.And(seal.log_size == s.log_size, seal_commits_to(seal, mine)),
    )
    guard = z3.Implies(seal.mac_ok, minted)
    if "digests_forgeable" not in m:
        guard = z3.And(guard, digests_unforgeable(disk, mine))  # the assumption of INV-11
    return _env(s, dataclasses.replace(s, disk=disk, seal=seal), guard)


def _boot(s: State, x: Inputs, m: frozenset[str]) -> tuple[Term, State, Term]:
    ok = x.booleans("self_test_ok", st.N_SERVICES)
    up = list(s.services_up)
    started: Term = z3.BoolVal(True)
    for svc in reference_boot_order(st.SERVICE_DEPS):  # the first failure stops the boot
        started = z3.And(started, ok[svc])
        up[svc] = started
    all_up = z3.And(up)
    # The derived tables are read back only if the seal check passes (spec: INV-11).
    authentic = z3.BoolVal(True) if "boot_skips_store_check" in m else seal_check(s)
    health = z3.If(z3.And(all_up, authentic), z3.IntVal(READY), z3.IntVal(FAILED))  # spec: INV-8
    if "boot_ready_on_failure" in m:
        health = z3.IntVal(READY)
    post = ite(authentic, load(s, s.disk), s)
    post = dataclasses.replace(post, services_up=tuple(up), health=health)
    return _env(s, post, s.health == BOOTING)


def _fail(s: State, x: Inputs, m: frozenset[str]) -> tuple[Term, State, Term]:
    svc = x.integer("service", 0, st.N_SERVICES - 1)
    to = x.integer("to", DEGRADED, FAILED)
    up = tuple(z3.And(u, svc != k) for k, u in enumerate(s.services_up))
    guard = z3.Or(s.health == READY, s.health == DEGRADED)
    return _env(s, dataclasses.replace(s, services_up=up, health=to), guard)


def _crash(s: State, x: Inputs, m: frozenset[str]) -> tuple[Term, State, Term]:
    """Volatile state is lost (services, alarms, the last answer); durable state stays."""
    down = tuple(z3.BoolVal(False) for _ in s.services_up)
    verdicts = tuple(dataclasses.replace(v, alarm=z3.BoolVal(False)) for v in s.verdicts)
    post = dataclasses.replace(s, services_up=down, health=z3.IntVal(BOOTING), verdicts=verdicts)
    return _env(s, post, z3.BoolVal(True))


def _tick(s: State, x: Inputs, m: frozenset[str]) -> tuple[Term, State, Term]:
    # The injected clock is not trusted to be monotonic: any reading may come next.
    return _env(s, dataclasses.replace(s, now=x.integer("now", 0)), z3.BoolVal(True))


TRANSITIONS: tuple[Transition, ...] = (
    Transition("admit", "an operator admits a root capability", _admit),
    Transition("attenuate", "an operator derives a narrower child capability", _attenuate),
    Transition("revoke", "an operator revokes a capability (and its descendants)", _revoke),
    Transition("activate_policy", "an operator activates a new policy set", _activate_policy),
    Transition("rotate_key", "an operator rotates the signing key", _rotate_key),
    Transition("define_scope", "an operator approves a new scope root", _define_scope),
    Transition("revoke_snapshot", "an operator revokes a sealed snapshot", _revoke_snapshot),
    Transition("decide", "a request is decided and the decision appended", _decide),
    Transition("record_verdict", "the proof gate caches a verdict", _record_verdict),
    Transition("write", "the persistence controller writes an artifact", _write),
    Transition("phase_advance", "a compilation phase advances", _phase_advance),
    Transition("seal", "a snapshot is sealed and its seal logged", _seal),
    Transition("resume", "a sealed snapshot is resumed", _resume),
    Transition("checkpoint", "a signed checkpoint of the log is taken", _checkpoint),
    Transition("tamper_snapshot", "an attacker edits a stored snapshot", _tamper_snapshot),
    Transition(
        "tamper_store", "an attacker rewrites derived rows and the state seal", _tamper_store
    ),
    Transition("boot", "services start in boot order", _boot),
    Transition("fail", "a service fails at run time", _fail),
    Transition("crash", "the process crashes or restarts; volatile state is lost", _crash),
    Transition("tick", "the clock moves (either way)", _tick),
)


_NO_WRITE_THROUGH = frozenset({"tamper_store", "boot"})
"""The attacker writes the store himself; boot only reads it."""


def step(
    t: Transition, s: State, prefix: str, mutations: frozenset[str] = frozenset()
) -> tuple[Step, Inputs]:
    """Build transition ``t`` from state ``s`` with fresh inputs named ``prefix.…``.

    The post-state also gets the two ghosts every step maintains: ``last.made``
    is true only after a decision, and ``bridge_changes`` counts steps that
    arrived through the bridge and changed admin state (INV-6).

    Args:
        t: the transition.
        s: the pre-state.
        prefix: names the step's input variables.
        mutations: seeded bugs to build in (see :data:`MUTATIONS`).

    Returns:
        The step and its inputs.
    """
    x = Inputs(prefix)
    guard, post, ch = t.build(s, x, mutations)
    if t.name not in _NO_WRITE_THROUGH:  # SOP's own writes reach the stored tables and the seal
        post = write_through(
            s,
            post,
            compare="seal_trusts_stored_row" not in mutations,
            log_size="remac_ignores_log_size" not in mutations,
        )
    if t.name != "decide":
        post = dataclasses.replace(
            post, last=dataclasses.replace(post.last, made=z3.BoolVal(False))
        )
    bridged = z3.And(ch == BRIDGE, admin_changed(s, post))
    post = dataclasses.replace(post, bridge_changes=s.bridge_changes + z3.If(bridged, 1, 0))
    return Step(z3.And(*x.constraints, guard), post), x
