"""The proof gate: filtered obligations, isolated z3 workers, write-once verdicts.

``check`` never raises: malformed input is REJECTED, any failure on the way
(worker crash, timeout, memory, store error, an exception of our own) is
UNKNOWN with its reason (INV-2), and only an ``unsat`` answer is PROVED
(INV-1). A verdict is recorded once under the obligation digest and returned
from then on (INV-3); a re-check that disagrees with the record raises the
integrity alarm, answers UNKNOWN ``integrity alarm`` and leaves the record
as it was.

The cross-check is chosen by the obligation's class (its id) but verdicts are
kept by content, so a class that needs cvc5 takes a recorded PROVED only if
the record carries cvc5's agreeing PROVED. Otherwise cvc5 runs now and its
confirmation is written once as a record of its own (see
:func:`~sop_verified.core.proofgate.store.cross_checked_key`); the z3 record
is never changed.
"""

from __future__ import annotations

import hashlib
import logging
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from sop_verified.core.contracts import ensure, invariant
from sop_verified.core.obligations import Verdict, VerdictResult
from sop_verified.core.proofgate.outcome import SolverOutcome, from_reply, rejected, unknown
from sop_verified.core.proofgate.pool import SolverPool
from sop_verified.core.proofgate.sexpr import FilterLimits
from sop_verified.core.proofgate.smtlib import CompiledObligation, compile_smt2
from sop_verified.core.proofgate.store import (
    CrossCheck,
    InMemoryVerdictStore,
    VerdictRecord,
    VerdictStore,
    cross_checked_key,
    obligation_digest,
)
from sop_verified.core.proofgate.structured import compile_structured
from sop_verified.core.request import Obligation
from sop_verified.errors import IntegrityError, ObligationError, SOPError
from sop_verified.tools.workerpool import WorkerLimits

__all__ = ["GateConfig", "Z3ProofGate", "obligation_class"]

_log = logging.getLogger(__name__)
_UNREADABLE = "sha256:" + hashlib.sha256(b"sop-unreadable-obligation").hexdigest()


@dataclass(frozen=True, slots=True)
class GateConfig:
    """The gate's settings; everything a verdict depends on besides the obligation.

    Attributes:
        rlimit: z3's resource limit per check (the deterministic budget).
        workers: number of worker processes.
        memory_mb: each worker's address-space cap.
        cpu_seconds: CPU seconds per check (the worker dies past it).
        wall_seconds: wall-clock safety net per check (the worker is killed past it).
        limits: the filter's caps.
        cross_check: obligation classes (id prefix before the first ``:``; ``*`` for all)
            whose PROVED verdicts cvc5 must confirm.
        cvc5_rlimit: cvc5's per-check resource limit.
        memo_size: verdicts kept in process for the fast path.
    """

    rlimit: int = 5_000_000
    workers: int = 2
    memory_mb: int = 1024
    cpu_seconds: int = 10
    wall_seconds: float = 10.0
    limits: FilterLimits = field(default_factory=FilterLimits)
    cross_check: frozenset[str] = frozenset()
    cvc5_rlimit: int = 5_000_000
    memo_size: int = 4096

    def __post_init__(self) -> None:
        if self.rlimit < 1 or self.workers < 1 or self.memo_size < 0 or self.cvc5_rlimit < 1:
            raise ValueError("gate rlimit, workers and cvc5_rlimit must be positive")

    def worker_limits(self) -> WorkerLimits:
        """The pool's caps."""
        return WorkerLimits(self.memory_mb << 20, self.cpu_seconds, self.wall_seconds)


def _compile(fmt: str, source: str, limits: FilterLimits) -> CompiledObligation:
    if fmt == "smt2":
        return compile_smt2(source, limits)
    if fmt == "json":
        return compile_structured(source, limits)
    raise ObligationError(
        f"unknown obligation format `{fmt[:20]}`", code="unsupported", accepted="`smt2`, `json`"
    )


def _memo_key(digest: str, *, needs: bool) -> str:
    """Memo entries of cross-check classes are kept apart: a z3-only PROVED never serves them."""
    return cross_checked_key(digest) if needs else digest  # spec: INV-1


@ensure(
    lambda obligation_id, result: obligation_id.startswith(result) and ":" not in result,
    "the id's first part",
)
def obligation_class(obligation_id: str) -> str:
    """The class of an obligation for cross-checking: its id up to the first ``:``."""
    return obligation_id.split(":", 1)[0]


@invariant(lambda self: len(self._memo) <= max(self.config.memo_size, 0) + 1)
class Z3ProofGate:
    """The :class:`~sop_verified.core.obligations.ProofGate` backed by isolated z3 workers."""

    def __init__(
        self,
        config: GateConfig | None = None,
        *,
        store: VerdictStore | None = None,
        on_alarm: Callable[[str], None] | None = None,
    ) -> None:
        """Create the gate (workers start on first use; see :meth:`warm`).

        Args:
            config: settings (default :class:`GateConfig`).
            store: the write-once verdict store (default: a new in-memory one).
            on_alarm: called with the reason whenever the integrity alarm is raised.
        """
        self.config = config or GateConfig()
        self.store: VerdictStore = store if store is not None else InMemoryVerdictStore()
        self._on_alarm = on_alarm
        self._pool = SolverPool(
            rlimit=self.config.rlimit,
            workers=self.config.workers,
            limits=self.config.worker_limits(),
        )
        self._memo: dict[str, VerdictResult] = {}
        self._memo_lock = threading.Lock()
        self.alarms: list[str] = []

    def __enter__(self) -> Z3ProofGate:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def solver_identity(self) -> dict[str, Any]:
        """What a verdict depends on besides the obligation: z3's version, rlimit, parameters."""
        return self._pool.identity

    @ensure(
        lambda obligation, result: (
            result.verdict is not Verdict.PROVED
            or result.digest == obligation_digest(obligation.format, obligation.source)
        ),
        "a proof names the obligation it proves",
    )
    def check(self, obligation: Obligation) -> VerdictResult:
        """Decide ``obligation``; never raises (INV-2).

        Args:
            obligation: the obligation (SMT-LIB 2 script or structured JSON).

        Returns:
            PROVED only when the solver answered ``unsat`` (or the record says so);
            otherwise REFUTED, UNKNOWN or REJECTED with the reason and evidence.
        """
        return self._check_closed(obligation)

    @ensure(lambda obligations, result: len(result) == len(obligations), "one per obligation")
    def check_many(self, obligations: Sequence[Obligation]) -> list[VerdictResult]:
        """:meth:`check` for each obligation, in order; never raises (INV-2).

        Args:
            obligations: the obligations.

        Returns:
            Per obligation, what :meth:`check` returns for it.
        """
        return [self._check_closed(ob) for ob in obligations]

    def _check_closed(self, obligation: Obligation) -> VerdictResult:
        try:
            digest = obligation_digest(obligation.format, obligation.source)
        except Exception:  # not an Obligation at all: deny  # spec: INV-2
            return VerdictResult(
                Verdict.UNKNOWN, _UNREADABLE, "internal error: unreadable obligation"
            )
        try:
            return self._check(obligation, digest)
        except Exception as exc:  # spec: INV-2
            _log.exception("proof gate failed on %s", digest)
            return VerdictResult(Verdict.UNKNOWN, digest, f"internal error: {type(exc).__name__}")

    def _store_failed(self, digest: str, exc: Exception) -> VerdictResult:
        """UNKNOWN for a store failure; an altered record also raises the integrity alarm."""
        if isinstance(exc, IntegrityError):  # spec: INV-3
            return self._alarm(digest, str(exc))
        detail = str(exc) if isinstance(exc, SOPError) else type(exc).__name__
        return self._result(digest, unknown("verdict store failed", detail))

    def _check(self, obligation: Obligation, digest: str) -> VerdictResult:
        needs = self._wants_cross_check(obligation_class(obligation.id))
        memo = self._memo.get(_memo_key(digest, needs=needs))
        if memo is not None:
            return memo
        try:
            raw = self.store.get(digest)
        except Exception as exc:  # spec: INV-2
            return self._store_failed(digest, exc)
        if raw is not None:
            return self._recorded(digest, raw, needs=needs)
        outcome = self._decide(obligation.format, obligation.source, cross_check=needs)
        if outcome.storable:
            return self._record(obligation, digest, outcome, needs=needs)
        result = self._result(digest, outcome)
        if outcome.memoizable:
            self._remember(_memo_key(digest, needs=needs), result)
        return result

    def _recorded(self, digest: str, raw: bytes, *, needs: bool) -> VerdictResult:
        try:
            record = VerdictRecord.from_bytes(raw, digest=digest)
        except IntegrityError as exc:
            return self._alarm(digest, str(exc))
        return self._accept(digest, record, needs=needs)

    def _accept(self, digest: str, record: VerdictRecord, *, needs: bool) -> VerdictResult:
        """Answer with a recorded verdict, if it is strong enough for the class that asked.

        A class that needs the cross-check takes a PROVED only with cvc5's
        agreeing evidence, whatever id the text was first recorded under;
        without it, cvc5 is asked now (:meth:`_confirm`).
        """
        if needs and record.verdict is Verdict.PROVED and not record.cross_checked:  # spec: INV-1
            return self._confirm(digest, record)
        result = record.result()
        self._remember(_memo_key(digest, needs=needs), result)
        return result

    def _confirm(self, digest: str, record: VerdictRecord) -> VerdictResult:
        """Cross-check a PROVED that z3 alone recorded; keep the confirmation as its own record.

        The z3 record stays as it was (INV-3). The confirmation is written once
        under ``cross_checked_key(digest)``, so later asks read it instead of
        running cvc5 again. cvc5 ``sat`` raises the integrity alarm; anything
        but ``unsat`` denies and records nothing.
        """
        key = cross_checked_key(digest)
        try:
            raw = self.store.get(key)
        except Exception as exc:  # spec: INV-2
            return self._store_failed(digest, exc)
        if raw is not None:
            try:  # from_bytes refuses, under this key, a record without cvc5's agreeing PROVED
                return self._confirmed(digest, VerdictRecord.from_bytes(raw, digest=key))
            except IntegrityError as exc:
                return self._alarm(digest, str(exc))
        try:
            compiled = _compile(record.format, record.source, self.config.limits)
        except ObligationError as exc:
            return self._result(digest, rejected(exc))
        z3 = SolverOutcome(record.verdict, record.reason, record.evidence, storable=True)
        outcome = self._cross_check(compiled, z3)
        if outcome.cross_check is None:  # spec: INV-1 — cvc5 did not confirm: deny
            return self._result(digest, outcome)
        stored = self._put(key, digest, replace(record, cross_check=outcome.cross_check))
        if isinstance(stored, VerdictResult):
            return stored
        return self._confirmed(digest, stored)

    def _confirmed(self, digest: str, record: VerdictRecord) -> VerdictResult:
        if not record.cross_checked:  # spec: INV-1 (from_bytes already refuses it; fail closed)
            return self._alarm(digest, f"the cross-checked record for `{digest}` lacks cvc5")
        result = record.result()
        self._remember(_memo_key(digest, needs=True), result)
        return result

    def _decide(self, fmt: str, source: str, *, cross_check: bool) -> SolverOutcome:
        try:
            compiled = _compile(fmt, source, self.config.limits)
        except ObligationError as exc:
            return rejected(exc)
        outcome = from_reply(self._pool.solve(compiled), self.config.rlimit)
        if outcome.verdict is Verdict.PROVED and cross_check:
            return self._cross_check(compiled, outcome)
        return outcome

    def _wants_cross_check(self, klass: str) -> bool:
        wanted = self.config.cross_check
        return bool(wanted) and ("*" in wanted or klass in wanted)

    def _cross_check(self, compiled: CompiledObligation, outcome: SolverOutcome) -> SolverOutcome:
        """z3's PROVED with cvc5's agreeing evidence, or UNKNOWN (the alarm raised on ``sat``)."""
        reply = self._pool.cross_check(compiled, self.config.cvc5_rlimit)
        status = reply.get("status")
        if status == "unsat":
            solver = reply.get("solver")
            if not isinstance(solver, dict) or solver.get("name") != "cvc5":
                return unknown("cross-check", f"cvc5 answered unsat without its identity: {solver}")
            try:
                evidence = CrossCheck(solver, Verdict.PROVED, agreed=True)
            except ValueError as exc:
                return unknown("cross-check", str(exc))
            return replace(outcome, cross_check=evidence)  # PROVED, confirmed
        if status == "sat":
            reason = "z3 answered unsat but cvc5 answered sat"
            self._raise_alarm(reason)  # spec: INV-3
            return unknown("integrity alarm", reason)
        return unknown(
            "cross-check",
            f"cvc5 did not confirm: {reply.get('code', '')} {reply.get('detail', '')}",
        )

    def _record(
        self, obligation: Obligation, digest: str, outcome: SolverOutcome, *, needs: bool
    ) -> VerdictResult:
        record = VerdictRecord(
            obligation.format,
            obligation.source,
            outcome.verdict,
            outcome.reason,
            outcome.evidence,
            self.solver_identity,
            outcome.cross_check,
        )
        stored = self._put(digest, digest, record)
        if isinstance(stored, VerdictResult):
            return stored
        # another ask may have recorded the same text first, under a class without cvc5
        return self._accept(digest, stored, needs=needs)

    def _put(self, key: str, digest: str, record: VerdictRecord) -> VerdictRecord | VerdictResult:
        """Write ``record`` once under ``key``; the record now stored, or the denial to answer."""
        data = record.to_bytes()
        try:
            stored = self.store.put_once(key, data)  # spec: INV-3
        except Exception as exc:  # spec: INV-2
            return self._store_failed(digest, exc)
        if stored == data:
            return record
        try:
            earlier = VerdictRecord.from_bytes(stored, digest=key)
        except IntegrityError as exc:
            return self._alarm(digest, str(exc))
        if earlier.verdict is not record.verdict:  # spec: INV-3
            return self._alarm(
                digest,
                f"recorded {earlier.verdict} for `{digest}`, a re-check gave {record.verdict}",
            )
        return earlier

    def _alarm(self, digest: str, reason: str) -> VerdictResult:
        self._raise_alarm(reason)
        return self._result(digest, unknown("integrity alarm", reason))

    def _raise_alarm(self, reason: str) -> None:
        self.alarms.append(reason)
        _log.error("proof gate integrity alarm: %s", reason)
        if self._on_alarm is not None:
            try:
                self._on_alarm(reason)
            except Exception:
                _log.exception("integrity alarm callback failed")

    @staticmethod
    def _result(digest: str, outcome: SolverOutcome) -> VerdictResult:
        return VerdictResult(outcome.verdict, digest, outcome.reason, outcome.evidence)

    def _remember(self, key: str, result: VerdictResult) -> None:
        if self.config.memo_size == 0:
            return
        with self._memo_lock:
            if len(self._memo) >= self.config.memo_size:
                self._memo.pop(next(iter(self._memo)))
            self._memo[key] = result

    @ensure(
        lambda fmt, source, result: result.digest == obligation_digest(fmt, source),
        "the verdict names the obligation it is about",
    )
    def recheck(
        self, fmt: str, source: str, klass: str = "", *, cross_check: bool = False
    ) -> VerdictResult:
        """Decide an obligation afresh, bypassing the memo and the store (for replay).

        Args:
            fmt: ``smt2`` or ``json``.
            source: the obligation text.
            klass: the obligation class (for the cross-check setting).
            cross_check: have cvc5 re-check a PROVED whatever the class
                (a record that carries a cross-check is replayed with one).

        Returns:
            The fresh verdict; nothing is recorded.
        """
        digest = obligation_digest(fmt, source)
        needs = cross_check or self._wants_cross_check(klass)
        try:
            return self._result(digest, self._decide(fmt, source, cross_check=needs))
        except Exception as exc:  # spec: INV-2
            return VerdictResult(Verdict.UNKNOWN, digest, f"internal error: {type(exc).__name__}")

    @ensure(lambda self, reason: reason in self.alarms, "the alarm is recorded")
    def raise_alarm(self, reason: str) -> None:
        """Raise the integrity alarm (used by replay)."""
        self._raise_alarm(reason)

    def warm(self) -> None:
        """Start the worker processes now rather than on the first obligation."""
        self._pool.warm()

    def worker_pids(self) -> list[int]:
        """Live worker process ids (diagnostics, tests)."""
        return self._pool.pids()

    @ensure(lambda result: result[0] >= 0 and result[1] >= 0)
    def worker_stats(self) -> tuple[int, int]:
        """Obligations waiting for a solver worker, and workers restarted (metrics).

        Returns:
            ``(waiting, restarts)``: restarts count the workers started beyond the
            pool's size (each replaced a dead, retired or overrunning one).
        """
        stats = self._pool.stats()
        return stats.waiting, max(0, stats.spawned - self.config.workers)

    def close(self) -> None:
        """Stop the workers; later fresh checks answer UNKNOWN ``gate closed``."""
        self._pool.close()
