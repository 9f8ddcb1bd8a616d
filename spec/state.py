"""The state of the SOP model: a finite universe of Z3 variables.

Every part of SOP's durable and volatile state that an invariant talks about
has a fixed number of slots here (the bounded universe, sizes below). A slot
is in use when its index is below the matching counter (``cap_count``,
``log_size``, ...); slots above are free and their contents are unconstrained.

Encodings: enumerations are Z3 integers with the named constants below, sets
are tuples of Z3 booleans, indices are Z3 integers (``-1`` means "none").
The helpers :func:`ite`, :func:`pick` and :func:`store` work on whole records
(dataclasses of terms), which keeps the transitions in ``sop_verified.spec.model`` readable.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

import z3

__all__ = [
    "ACTS",
    "CHANNELS",
    "ENTRY_KINDS",
    "HEALTHS",
    "N_ACTS",
    "N_CAPS",
    "N_CHECKPOINTS",
    "N_EFFECTS",
    "N_LOG",
    "N_OBLIGATIONS",
    "N_POLICIES",
    "N_PROTOCOLS",
    "N_SCOPES",
    "N_SERVICES",
    "N_SNAPSHOTS",
    "PROTOCOLS",
    "SERVICES",
    "SERVICE_DEPS",
    "TABLES",
    "VERDICTS",
    "Capability",
    "Checkpoint",
    "Clauses",
    "Effect",
    "Entry",
    "LastDecision",
    "Policy",
    "Scope",
    "Seal",
    "Snapshot",
    "State",
    "StoredTable",
    "Term",
    "VerdictSlot",
    "conj",
    "ite",
    "leaves",
    "pick",
    "right_index",
    "same",
    "store",
]

Term = Any
"""A Z3 expression (z3 ships no type information)."""

# -- the bounded universe --------------------------------------------------
N_CAPS = 4  # capability slots (chains up to depth 3)
N_POLICIES = 3  # policy slots in the active set
N_OBLIGATIONS = 3  # obligation digests with a verdict slot
N_LOG = 5  # log entries
N_CHECKPOINTS = 2  # signed checkpoints
N_EFFECTS = 3  # effects performed (writes, seals, resumes, phase advances)
N_SNAPSHOTS = 2  # sealed snapshots
N_SCOPES = 2  # approved scope roots
N_PROTOCOLS = 3  # DRAC, EMP, CSP
N_ACTS = 4  # effectful bridge actions

# -- enumerations ------------------------------------------------------------
HEALTHS = ("BOOTING", "READY", "DEGRADED", "FAILED")
BOOTING, READY, DEGRADED, FAILED = range(4)
VERDICTS = ("PROVED", "REFUTED", "UNKNOWN", "REJECTED")
PROVED, REFUTED, UNKNOWN, REJECTED = range(4)
CHANNELS = ("bridge", "admin", "env")
BRIDGE, ADMIN, ENV = range(3)
ACTS = ("write", "seal", "resume", "phase")
WRITE, SEAL, RESUME, PHASE = range(4)
ENTRY_KINDS = ("decision", "seal", "admin", "verdict")
DECISION_ENTRY, SEAL_ENTRY, ADMIN_ENTRY, VERDICT_ENTRY = range(4)
PROTOCOLS = ("drac", "emp", "csp")
# The declared service graph of the state machine (names sorted = indices).
SERVICES = ("keys", "log", "policy")
SERVICE_DEPS: tuple[tuple[int, ...], ...] = ((), (0,), (0, 1))
N_SERVICES = len(SERVICES)


# The derived tables, each a projection of the log that SOP reads back from storage
# (INV-11): name, number of slots, and the sorts of a row's fields (the row's key,
# its slot, is part of its canonical bytes and is the first argument of its digest).
TABLES: tuple[tuple[str, int, tuple[str, ...]], ...] = (
    (
        "capabilities",
        N_CAPS,
        ("int", "int") + ("bool",) * (N_ACTS * N_SCOPES) + ("int", "int", "bool"),
    ),
    ("policies", N_POLICIES, ("bool",)),
    ("keys", 1, ("int",)),
    ("scopes", N_SCOPES, ("int",)),
    ("verdicts", N_OBLIGATIONS, ("int",)),
    ("snapshot_records", N_SNAPSHOTS, ("bool",)),
)


def right_index(act: int, scope: int) -> int:
    """Position of the right (action ``act`` on scope ``scope``) in a rights vector."""
    return act * N_SCOPES + scope


# -- records -------------------------------------------------------------------
@dataclass(frozen=True)
class Capability:
    """One admitted capability (slot)."""

    parent: Term  # Int: -1 for a root, else the parent's slot
    owner: Term  # Int: the protocol the capability is bound to
    rights: tuple[Term, ...]  # Bool per (action, scope), see right_index
    not_before: Term  # Int
    expiry: Term  # Int (valid while not_before <= now < expiry)
    revoked: Term  # Bool


@dataclass(frozen=True)
class Policy:
    """One policy slot of the active set; what it matches is abstracted per request."""

    active: Term  # Bool
    forbid: Term  # Bool: True for forbid, False for permit


@dataclass(frozen=True)
class Scope:
    """One approved scope root and the protocol that owns it."""

    defined: Term  # Bool
    owner: Term  # Int


@dataclass(frozen=True)
class VerdictSlot:
    """The cached verdict of one obligation digest."""

    recorded: Term  # Bool
    value: Term  # Int in VERDICTS
    alarm: Term  # Bool: a disagreeing re-check was seen


@dataclass(frozen=True)
class Entry:
    """One log entry: a decision, a snapshot seal or an admin change."""

    kind: Term  # Int in ENTRY_KINDS
    allow: Term  # Bool
    cap: Term  # Int
    act: Term  # Int in ACTS
    scope: Term  # Int
    proto: Term  # Int
    snap: Term  # Int: the sealed snapshot (seal entries), else -1


@dataclass(frozen=True)
class Checkpoint:
    """A signed checkpoint: its tree size and the prefix it commits to."""

    size: Term  # Int
    entries: tuple[Entry, ...]  # the committed prefix (a collision-free Merkle root, modelled)


@dataclass(frozen=True)
class Effect:
    """One effect SOP performed and the decision that allowed it."""

    act: Term  # Int in ACTS
    decision: Term  # Int: log index of its ALLOW decision
    log_size_at: Term  # Int: log size when the effect happened
    scope: Term  # Int
    proto: Term  # Int
    inside: Term  # Bool: the written path resolved inside the scope root


@dataclass(frozen=True)
class Snapshot:
    """A sealed snapshot as stored (an attacker may tamper with it at rest)."""

    parent: Term  # Int: lineage, -1 or an earlier snapshot
    entry: Term  # Int: the log index its manifest claims
    sig_ok: Term  # Bool: manifest signature verifies
    blobs_ok: Term  # Bool: every blob digest verifies
    revoked: Term  # Bool


@dataclass(frozen=True)
class StoredTable:
    """One derived table as stored: per slot, whether a row is there, and its fields.

    This is what an attacker with write access to the database edits; SOP
    reads it back only at boot, through the seal check (INV-11).
    """

    present: tuple[Term, ...]  # Bool per slot
    rows: tuple[tuple[Term, ...], ...]  # the fields of each slot's row (see TABLES)


@dataclass(frozen=True)
class Seal:
    """The state seal as stored: per table a row count and a sum of keyed row digests.

    ``mac_ok`` says whether its MAC verifies: an attacker can write any bytes
    here, but the only seals whose MAC verifies are seals SOP produced.
    """

    mac_ok: Term  # Bool
    log_size: Term  # Int: the log size the seal binds
    counts: tuple[Term, ...]  # Int per table
    sums: tuple[Term, ...]  # Int per table: the sum of the keyed digests of its rows


@dataclass(frozen=True)
class LastDecision:
    """The output of the most recent step when it was a decision (``made``)."""

    made: Term  # Bool
    allow: Term  # Bool
    fault: Term  # Bool: exception, timeout or crash while deciding
    storage_fault: Term  # Bool: the log append failed (or the log is full)
    recorded: Term  # Bool
    index: Term  # Int: the log index of the recorded decision
    cap: Term
    act: Term
    scope: Term
    proto: Term
    obligations: tuple[Term, ...]  # Bool per digest: the request carries it
    matches: tuple[Term, ...]  # Bool per policy slot: the policy matches the request


@dataclass(frozen=True)
class State:
    """The whole model state."""

    now: Term
    health: Term
    services_up: tuple[Term, ...]
    cap_count: Term
    caps: tuple[Capability, ...]
    policies: tuple[Policy, ...]
    key_epoch: Term
    scopes: tuple[Scope, ...]
    verdicts: tuple[VerdictSlot, ...]
    log_size: Term
    log: tuple[Entry, ...]
    checkpoint_count: Term
    checkpoints: tuple[Checkpoint, ...]
    effect_count: Term
    effects: tuple[Effect, ...]
    snap_count: Term
    snapshots: tuple[Snapshot, ...]
    active_snapshot: Term
    resumes: Term
    last: LastDecision
    bridge_changes: Term  # ghost: steps through the bridge that changed admin state
    disk: tuple[StoredTable, ...]  # the derived tables as stored (see TABLES)
    seal: Seal

    @staticmethod
    def fresh(prefix: str) -> State:
        """A state of fresh, unconstrained variables named ``prefix.…``."""
        return _fresh_state(prefix)


def _ints(name: str, n: int) -> tuple[Term, ...]:
    return tuple(z3.Int(f"{name}[{i}]") for i in range(n))


def _bools(name: str, n: int) -> tuple[Term, ...]:
    return tuple(z3.Bool(f"{name}[{i}]") for i in range(n))


def _entry(p: str) -> Entry:
    i = z3.Int
    return Entry(
        i(f"{p}.kind"),
        z3.Bool(f"{p}.allow"),
        i(f"{p}.cap"),
        i(f"{p}.act"),
        i(f"{p}.scope"),
        i(f"{p}.proto"),
        i(f"{p}.snap"),
    )


def _cap(p: str) -> Capability:
    return Capability(
        z3.Int(f"{p}.parent"),
        z3.Int(f"{p}.owner"),
        _bools(f"{p}.rights", N_ACTS * N_SCOPES),
        z3.Int(f"{p}.not_before"),
        z3.Int(f"{p}.expiry"),
        z3.Bool(f"{p}.revoked"),
    )


def _fresh_state(p: str) -> State:
    i, b = z3.Int, z3.Bool
    last = LastDecision(
        b(f"{p}.last.made"),
        b(f"{p}.last.allow"),
        b(f"{p}.last.fault"),
        b(f"{p}.last.storage_fault"),
        b(f"{p}.last.recorded"),
        i(f"{p}.last.index"),
        i(f"{p}.last.cap"),
        i(f"{p}.last.act"),
        i(f"{p}.last.scope"),
        i(f"{p}.last.proto"),
        _bools(f"{p}.last.obligations", N_OBLIGATIONS),
        _bools(f"{p}.last.matches", N_POLICIES),
    )
    return State(
        now=i(f"{p}.now"),
        health=i(f"{p}.health"),
        services_up=_bools(f"{p}.services_up", N_SERVICES),
        cap_count=i(f"{p}.cap_count"),
        caps=tuple(_cap(f"{p}.cap[{k}]") for k in range(N_CAPS)),
        policies=tuple(
            Policy(b(f"{p}.pol[{k}].active"), b(f"{p}.pol[{k}].forbid")) for k in range(N_POLICIES)
        ),
        key_epoch=i(f"{p}.key_epoch"),
        scopes=tuple(
            Scope(b(f"{p}.scope[{k}].defined"), i(f"{p}.scope[{k}].owner")) for k in range(N_SCOPES)
        ),
        verdicts=tuple(
            VerdictSlot(b(f"{p}.v[{k}].recorded"), i(f"{p}.v[{k}].value"), b(f"{p}.v[{k}].alarm"))
            for k in range(N_OBLIGATIONS)
        ),
        log_size=i(f"{p}.log_size"),
        log=tuple(_entry(f"{p}.log[{k}]") for k in range(N_LOG)),
        checkpoint_count=i(f"{p}.checkpoint_count"),
        checkpoints=tuple(
            Checkpoint(
                i(f"{p}.ck[{c}].size"), tuple(_entry(f"{p}.ck[{c}].log[{k}]") for k in range(N_LOG))
            )
            for c in range(N_CHECKPOINTS)
        ),
        effect_count=i(f"{p}.effect_count"),
        effects=tuple(
            Effect(
                i(f"{p}.eff[{k}].act"),
                i(f"{p}.eff[{k}].decision"),
                i(f"{p}.eff[{k}].log_size_at"),
                i(f"{p}.eff[{k}].scope"),
                i(f"{p}.eff[{k}].proto"),
                b(f"{p}.eff[{k}].inside"),
            )
            for k in range(N_EFFECTS)
        ),
        snap_count=i(f"{p}.snap_count"),
        snapshots=tuple(
            Snapshot(
                i(f"{p}.snap[{k}].parent"),
                i(f"{p}.snap[{k}].entry"),
                b(f"{p}.snap[{k}].sig_ok"),
                b(f"{p}.snap[{k}].blobs_ok"),
                b(f"{p}.snap[{k}].revoked"),
            )
            for k in range(N_SNAPSHOTS)
        ),
        active_snapshot=i(f"{p}.active_snapshot"),
        resumes=i(f"{p}.resumes"),
        last=last,
        bridge_changes=i(f"{p}.bridge_changes"),
        disk=tuple(_stored_table(f"{p}.disk.{name}", n, sorts) for name, n, sorts in TABLES),
        seal=Seal(
            b(f"{p}.seal.mac_ok"),
            i(f"{p}.seal.log_size"),
            _ints(f"{p}.seal.counts", len(TABLES)),
            _ints(f"{p}.seal.sums", len(TABLES)),
        ),
    )


def _stored_table(p: str, n: int, sorts: tuple[str, ...]) -> StoredTable:
    def field(name: str, sort: str) -> Term:
        return z3.Bool(name) if sort == "bool" else z3.Int(name)

    return StoredTable(
        _bools(f"{p}.present", n),
        tuple(
            tuple(field(f"{p}[{k}].f{j}", sort) for j, sort in enumerate(sorts)) for k in range(n)
        ),
    )


# -- generic record helpers ---------------------------------------------------
_T = TypeVar("_T")


def leaves(value: Any, path: str = "") -> Iterator[tuple[str, Term]]:
    """Every Z3 term inside a record, with a dotted path, in a fixed order."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        for f in dataclasses.fields(value):
            yield from leaves(getattr(value, f.name), f"{path}.{f.name}" if path else f.name)
    elif isinstance(value, tuple):
        for k, item in enumerate(value):
            yield from leaves(item, f"{path}[{k}]")
    else:
        yield path, value


def _map2(fn: Callable[[Term, Term], Term], a: _T, b: _T) -> _T:
    if dataclasses.is_dataclass(a) and not isinstance(a, type):
        changes = {
            f.name: _map2(fn, getattr(a, f.name), getattr(b, f.name)) for f in dataclasses.fields(a)
        }
        return dataclasses.replace(a, **changes)
    if isinstance(a, tuple):
        assert isinstance(b, tuple)
        return tuple(_map2(fn, x, y) for x, y in zip(a, b, strict=True))  # type: ignore[return-value]  # same tuple type
    return fn(a, b)  # type: ignore[no-any-return]  # terms are Any


def ite(cond: Term, then: _T, other: _T) -> _T:
    """``If(cond, then, other)`` over whole records; unchanged leaves stay shared."""

    def leaf(x: Term, y: Term) -> Term:
        if _same(x, y):
            return x
        return _if(cond, x, y)

    return _map2(leaf, then, other)


def _if(cond: Term, x: Term, y: Term) -> Term:
    """``z3.If`` without its argument coercion (terms of one sort only; the hot path)."""
    if isinstance(x, z3.ExprRef) and isinstance(y, z3.ExprRef) and x.sort().eq(y.sort()):
        ctx = cond.ctx
        ast = z3.Z3_mk_ite(ctx.ref(), cond.as_ast(), x.as_ast(), y.as_ast())
        return z3.z3._to_expr_ref(ast, ctx)
    return z3.If(cond, x, y)


def _same(x: Term, y: Term) -> bool:
    if x is y:
        return True
    if isinstance(x, z3.ExprRef) and isinstance(y, z3.ExprRef):
        return bool(x.eq(y))
    return False


def pick(items: Sequence[_T], index: Term) -> _T:
    """The record at symbolic ``index`` (the last one when out of range: guard the range)."""
    out = items[-1]
    for k in range(len(items) - 2, -1, -1):
        out = ite(index == k, items[k], out)
    return out


def store(items: tuple[_T, ...], index: Term, value: _T) -> tuple[_T, ...]:
    """``items`` with slot ``index`` (symbolic) replaced by ``value``."""
    return tuple(ite(index == k, value, item) for k, item in enumerate(items))


Clauses = list[tuple[str, Term]]
"""Labelled clauses ``[(what it says, Z3 term), …]``: how invariants are written."""


def same(a: object, b: object) -> Term:
    """Two records (or terms) are equal leaf by leaf."""
    pairs = zip(leaves(a), leaves(b), strict=True)
    return z3.And([x == y for (_, x), (_, y) in pairs])


def conj(parts: Sequence[tuple[str, Term]]) -> Term:
    """The conjunction of labelled clauses."""
    return z3.And([t for _, t in parts]) if parts else z3.BoolVal(True)
