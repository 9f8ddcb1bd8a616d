"""Carrying out persist decisions: check each, plan the write, store, log the effect.

:class:`Writer` is the controller's writing half. The order is the spec's: the
ALLOW is already in the log (INV-9, checked against the index's pending row),
then the scope rules (INV-4), then the confined durable write, then the
``persist.effect`` entry, whose transaction also records the object in the
index. A refusal at any step is logged as a ``refused`` effect that closes the
pending decision; nothing is half-written (the file layer removes its
temporary file on any failure, and boot sweeps what a crash leaves; a
database row exists only once its transaction committed).
"""

from __future__ import annotations

import contextlib
import hashlib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

from sop_verified.core.contracts import ensure, invariant, require
from sop_verified.core.decision_fields import WriteResult
from sop_verified.core.health import Health
from sop_verified.core.kernel import LinkedEffect
from sop_verified.core.persistence.entries import EffectOutcome, effect_entry, request_key
from sop_verified.core.persistence.guards import Claims, ScopeLocks
from sop_verified.core.persistence.layout import check_name, stored_path
from sop_verified.core.persistence.logged import logged_object
from sop_verified.core.persistence.outcomes import reason, refusal
from sop_verified.core.persistence.ports import Alarm, EffectLog, PersistIndex, ScopeContent
from sop_verified.core.persistence.scopes import Scope, ScopeMode, ScopeTable
from sop_verified.core.ports import Clock
from sop_verified.core.request import PERSIST_ACTIONS, Decision, Request, Stage
from sop_verified.errors import IntegrityError, PersistenceError, SOPError
from sop_verified.storage.persist_index import ObjectRecord
from sop_verified.tools.tlog_store import Receipt

__all__ = [
    "INLINE_MAX_BYTES",
    "LinkedWrite",
    "SubmitBatch",
    "WritePlan",
    "Writer",
    "locate_writable",
]


@dataclass(frozen=True, slots=True)
class WritePlan:
    """Where a write goes once every scope rule admitted it: its scope, name and stored path."""

    scope: Scope
    name: str
    digest_hex: str
    stored: str
    size: int


class _UnrecordedError(Exception):
    """The effect entry could not be appended; boot reconciles the pending decision."""


def _detail(exc: BaseException) -> str:
    return str(exc) if isinstance(exc, SOPError | OSError) else f"`{type(exc).__name__}`"


INLINE_MAX_BYTES = 64 * 1024
"""Content-addressed blobs up to this size are kept in the database, in the transaction that
logs their decision and effect (ADR 0007); larger ones go through the scope's content in
two steps (files: temp, fsync, rename; PostgreSQL: a row in its own transaction, ADR 0015)."""

SubmitBatch = Callable[
    [Sequence[tuple[Request, LinkedEffect | None]]], list[tuple[Decision, Receipt | None]]
]
"""The kernel's ``submit_batch``: decide requests, log each with its linked effect."""

LinkedWrite = tuple[Request, bytes, WritePlan]
"""A write :meth:`Writer.linked_plan` admitted: the request, its bytes and their plan."""


@ensure(
    lambda principal, result: result[0].writable_by(principal),
    "INV-4: owned scope only",
    helper=True,
)
def locate_writable(scopes: ScopeTable, resource: str, principal: str) -> tuple[Scope, str]:
    """The scope of ``resource`` and the path below its prefix, if ``principal`` owns it.

    Args:
        scopes: the declared scopes.
        resource: the resource a request names.
        principal: the request's principal.

    Raises:
        PersistenceError: no scope serves it (``unknown_scope``) or another
            protocol owns it (``foreign_scope``).
    """
    located = scopes.locate(resource)
    if located is None:  # spec: INV-4 — only declared scopes
        raise PersistenceError(
            f"no scope serves `{resource}`",
            code="unknown_scope",
            accepted=", ".join(f"`{s.prefix}/**`" for s in scopes) or "no scope is declared",
        )
    scope, rel = located
    if not scope.writable_by(principal):  # spec: INV-4 — never another protocol's scope
        raise PersistenceError(
            f"scope `{scope.name}` belongs to `{', '.join(sorted(scope.owners))}`, "
            f"not `{principal}`",
            code="foreign_scope",
        )
    return scope, rel


@invariant(
    lambda self: set(self._content) == self._locks.names, "one root per locked scope", helper=True
)
class Writer:
    """Stores the bytes of logged ALLOW persist decisions, and logs each effect or refusal."""

    def __init__(
        self,
        *,
        scopes: ScopeTable,
        content: Mapping[str, ScopeContent],
        index: PersistIndex,
        log: EffectLog,
        health: Callable[[], Health],
        now: Clock,
        locks: ScopeLocks,
        claims: Claims,
        alarm: Alarm,
    ) -> None:
        """Wire the writer.

        Args:
            scopes: the declared scopes.
            content: each scope's stored bytes, by scope name.
            index: the persistence index (pending decisions, objects, versions).
            log: where effects and refusals are appended.
            health: SOP's health; effects happen only while READY.
            now: the clock.
            locks: the scopes' locks, shared with retention.
            claims: the decisions being carried out.
            alarm: raises the integrity alarm (a scope directory moved under a write).
        """
        self._scopes = scopes
        self._content = content
        self._index = index
        self._log = log
        self._health = health
        self._now = now
        self._locks = locks
        self._claims = claims
        self._alarm = alarm

    @require(lambda decision: decision.allowed)
    @ensure(lambda decision, result: not result.allowed or result.log_index == decision.log_index)
    def execute(self, decision: Decision, request: Request, data: bytes) -> Decision:
        """Carry out an ALLOW persist decision (see ``PersistenceController.execute``)."""
        return self._execute(decision, request, data)

    @ensure(
        lambda result: result is None or result.scope.mode is ScopeMode.CONTENT_ADDRESSED,
        "only content-addressed writes are linked",
        helper=True,
    )
    @ensure(lambda data, result: result is None or result.size == len(data), helper=True)
    def linked_plan(
        self, request: Request, data: bytes, digest_hex: str | None = None
    ) -> WritePlan | None:
        """The plan of a write that can commit with its decision, or None (take the two-step path).

        Only a small write into a content-addressed scope that every rule already
        admits qualifies; anything else (including every refusal, which the
        two-step path logs with its reason) returns None and records nothing.
        """
        return self._linked_plan(request, data, digest_hex)

    @ensure(lambda writes, result: len(result) == len(writes), "one answer per write", helper=True)
    def execute_linked_batch(
        self, submit_batch: SubmitBatch, writes: Sequence[LinkedWrite]
    ) -> list[tuple[Decision, Receipt | None]]:
        """Decide planned writes and store each allowed one with its decision, in one batch.

        The kernel decides each request; every ALLOW is appended with its
        ``persist.effect`` entry and its bytes in the batch's one durable
        transaction (ADR 0007), so no decision is durable without its effect, nor
        an effect without its decision (INV-9). A DENY is logged alone.

        Returns:
            Per write: the decision and its effect entry's receipt (None for a
            DENY, or a log that cannot link); :meth:`finish_linked` makes the answer.
        """
        return self._execute_linked_batch(submit_batch, writes)

    @ensure(lambda result: not result.allowed or result.write is not None, helper=True)
    def finish_linked(
        self, decision: Decision, receipt: Receipt | None, write: LinkedWrite
    ) -> Decision:
        """The answer to one write of :meth:`execute_linked_batch`.

        A DENY is answered as it is; an ALLOW recorded with its effect gets the
        effect's details; an ALLOW whose log could not link (no receipt) is
        carried out now in two steps (:meth:`execute`).
        """
        return self._finish_linked(decision, receipt, write)

    # ---- the two-step path ---------------------------------------------------------------
    def _execute(self, decision: Decision, request: Request, data: bytes) -> Decision:
        try:
            index = self._check_decision(decision, request)
            self._claims.claim(index)
        except PersistenceError as exc:
            why = reason(exc.code, str(exc))
            return refusal(self._log, self._now, decision, request, why, index=None)
        except Exception as exc:  # spec: INV-2 — the index failed: no effect
            why = reason("internal_error", f"checking the decision failed: {_detail(exc)}")
            return refusal(self._log, self._now, decision, request, why, index=None, record=False)
        try:
            return self._perform(index, decision, request, data)
        finally:
            self._claims.release(index)

    def _check_decision(self, decision: Decision, request: Request) -> int:
        """The decision's log index, if it is a pending ALLOW for exactly this request (INV-9)."""
        index = decision.log_index
        if (
            type(index) is not int or index < 0
        ):  # spec: INV-9 — an unrecorded decision permits nothing
            raise PersistenceError("the decision was not recorded in the log", code="unrecorded")
        if decision.request_id != request.request_id or request.action not in PERSIST_ACTIONS:
            raise PersistenceError(
                f"decision `{index}` is not a persist decision for request `{request.request_id}`",
                code="decision_mismatch",
            )
        pending = self._index.pending_decision(index)
        if pending is None:  # spec: INV-9 — only a logged ALLOW that still awaits its effect
            raise PersistenceError(
                f"no logged ALLOW persist decision awaits an effect at index `{index}`",
                code="not_pending",
            )
        if pending.request != request_key(request.to_dict()):  # spec: INV-9 — the same request
            raise PersistenceError(
                f"the decision logged at `{index}` was made for another request",
                code="decision_mismatch",
            )
        return index

    def _perform(self, index: int, decision: Decision, request: Request, data: bytes) -> Decision:
        log, now = self._log, self._now
        try:
            health = self._health()
            if health is not Health.READY:  # spec: INV-1 — effects only while READY
                raise PersistenceError(f"SOP is `{health}`; effects need `READY`", code="not_ready")
            plan = self._plan(index, request, data)
            with self._locks.shared(plan.scope.name):
                outcome = self._store(plan, request, data, index)
                receipt = self._append(self._entry(plan, outcome, index, request))
        except PersistenceError as exc:
            return refusal(log, now, decision, request, reason(exc.code, str(exc)), index=index)
        except IntegrityError as exc:  # the scope's content was tampered with: no effect, alarm
            self._alarm(f"write of `{request.resource}` (decision `{index}`): {exc}")
            why = reason("integrity", str(exc))
            return refusal(log, now, decision, request, why, index=index)
        except _UnrecordedError as exc:
            why = reason("effect_unrecorded", f"the effect could not be logged: {exc}", Stage.LOG)
            return refusal(log, now, decision, request, why, index=index, record=False)
        except Exception as exc:  # spec: INV-2 — storage or internal failure: DENY, recorded
            why = reason("storage_error", f"the write failed: {_detail(exc)}")
            return refusal(log, now, decision, request, why, index=index)
        return self._allowed(decision, plan, outcome, receipt)

    # ---- the linked path -----------------------------------------------------------------
    def _linked_plan(
        self, request: Request, data: bytes, digest_hex: str | None
    ) -> WritePlan | None:
        if request.action not in PERSIST_ACTIONS or len(data) > INLINE_MAX_BYTES:
            return None
        if self._health() is not Health.READY:
            return None
        try:
            plan = self._plan(0, request, data, digest_hex)  # content-addressed: no index needed
        except SOPError:
            return None
        return plan if plan.scope.mode is ScopeMode.CONTENT_ADDRESSED else None

    def _execute_linked_batch(
        self, submit_batch: SubmitBatch, writes: Sequence[LinkedWrite]
    ) -> list[tuple[Decision, Receipt | None]]:
        items: list[tuple[Request, LinkedEffect | None]] = []
        for request, data, plan in writes:
            blob = (plan.scope.name, plan.stored, data)
            items.append((request, LinkedEffect(self._effect_builder(plan, request), (blob,))))
        scopes = sorted({plan.scope.name for _, _, plan in writes})
        with contextlib.ExitStack() as held:
            for name in scopes:  # retention never purges a blob mid-write
                held.enter_context(self._locks.shared(name))
            return submit_batch(items)

    def _effect_builder(self, plan: WritePlan, request: Request) -> Callable[[int], bytes]:
        def effect(decision_index: int) -> bytes:
            return self._entry(plan, EffectOutcome.WRITTEN, decision_index, request)

        return effect

    def _finish_linked(
        self, decision: Decision, receipt: Receipt | None, write: LinkedWrite
    ) -> Decision:
        request, data, plan = write
        if receipt is None:  # a DENY (logged alone), or a log that cannot link: two steps
            return decision if not decision.allowed else self._execute(decision, request, data)
        return self._allowed(decision, plan, EffectOutcome.WRITTEN, receipt)

    # ---- the steps -----------------------------------------------------------------------
    def _plan(
        self, index: int, request: Request, data: bytes, digest_hex: str | None = None
    ) -> WritePlan:
        scope, rel = locate_writable(self._scopes, request.resource, request.principal)
        if len(data) > scope.max_blob_bytes:
            raise PersistenceError(
                f"{len(data)} bytes exceed scope `{scope.name}`'s limit",
                code="too_large",
                accepted=f"at most {scope.max_blob_bytes} bytes",
            )
        claimed = request.context.get("size_bytes")
        if claimed != len(data):
            raise PersistenceError(
                f"the decision was for `context.size_bytes` = `{claimed}`, "
                f"the data has {len(data)}",
                code="size_mismatch",
            )
        if digest_hex is None:
            digest_hex = hashlib.sha256(data).hexdigest()
        if request.content_digest != "sha256:" + digest_hex:
            raise PersistenceError(
                f"the data has digest `sha256:{digest_hex}`, "
                f"the decision bound `{request.content_digest}`",
                code="digest_mismatch",
            )
        parts = check_name(scope, rel, writing=True)
        cas = scope.mode is ScopeMode.CONTENT_ADDRESSED
        if cas and parts[0] == "sha256" and parts[1] != digest_hex:
            raise PersistenceError(
                f"`{rel}` names another digest than the data's `sha256:{digest_hex}`",
                code="digest_mismatch",
            )
        stored = stored_path(scope, rel, digest_hex, index)
        return WritePlan(scope, rel, digest_hex, stored, len(data))

    def _store(self, plan: WritePlan, request: Request, data: bytes, index: int) -> EffectOutcome:
        content, scope = self._content[plan.scope.name], plan.scope
        if scope.mode is ScopeMode.CONTENT_ADDRESSED:
            if content.digest(plan.stored, max_bytes=scope.max_blob_bytes) != plan.digest_hex:
                content.write(plan.stored, data, tag=str(index), exclusive=False)  # new, or corrupt
            return EffectOutcome.WRITTEN  # a new name -> digest record; the blob may be shared
        if scope.mode is ScopeMode.WRITE_ONCE:
            current = self._index.latest(scope.name, plan.name)
            if current is not None:  # spec: INV-11 — answered from the log, not the row
                logged_object(self._log, scope.name, plan.name, current)
                return _unchanged_or_refuse(current, plan, request)
        try:
            content.write(plan.stored, data, tag=str(index), exclusive=True)  # never overwrites
        except PersistenceError as exc:
            if exc.code != "exists":
                raise
            content.digest(plan.stored, max_bytes=scope.max_blob_bytes)  # a planted link raises
            current = self._index.latest(scope.name, plan.name)
            if current is None:
                raise PersistenceError(
                    f"`{request.resource}` exists on disk without a record",
                    code="write_once_violation",
                ) from None
            logged_object(self._log, scope.name, plan.name, current)  # spec: INV-11
            return _unchanged_or_refuse(current, plan, request)
        return EffectOutcome.WRITTEN

    def _entry(
        self, plan: WritePlan, outcome: EffectOutcome, index: int, request: Request
    ) -> bytes:
        return effect_entry(
            op="write",
            outcome=outcome,
            time=self._now(),
            decision_index=index,
            request_id=request.request_id,
            scope=plan.scope.name,
            name=plan.name,
            stored=plan.stored,
            digest="sha256:" + plan.digest_hex,
            size=plan.size,
        )

    def _append(self, payload: bytes) -> Receipt:
        try:
            return self._log.append_receipt(payload)  # the index records the object in this tx
        except Exception as exc:  # spec: INV-2 — unrecorded: DENY; boot reconciles the decision
            raise _UnrecordedError(_detail(exc)) from exc

    def _allowed(
        self, decision: Decision, plan: WritePlan, outcome: EffectOutcome, receipt: Receipt
    ) -> Decision:
        version = self._index.written_version(receipt.index)
        written = WriteResult(
            outcome=str(outcome),
            index=receipt.index,
            scope=plan.scope.name,
            name=plan.name,
            stored=plan.stored,
            digest="sha256:" + plan.digest_hex,
            size=plan.size,
            version=version,
            receipt=receipt,
        )
        return decision.with_write(written)


def _unchanged_or_refuse(current: ObjectRecord, plan: WritePlan, request: Request) -> EffectOutcome:
    if current.digest == "sha256:" + plan.digest_hex:
        return EffectOutcome.UNCHANGED
    raise PersistenceError(
        f"`{request.resource}` is write-once and holds `{current.digest}`",
        code="write_once_violation",
    )
