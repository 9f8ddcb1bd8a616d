"""The Persistence_Controller: the only code that turns an ALLOW into stored bytes.

:meth:`PersistenceController.execute` takes the kernel's decision, the request
it decided and the bytes, and writes only when the decision is an ALLOW that
is durably in the log and still awaits its effect (INV-9): the index holds a
*pending* row for every logged ALLOW persist decision, so a decision that was
never logged, was made for another request, or already had its effect is
refused. The target must lie in a declared scope that the request's principal
owns (INV-4), within the scope's size limit, and the bytes must have the
digest and size the decision bound. The write goes through the scope's
content port (:class:`~.ports.ScopeContent`: with SQLite the files under the
scope root's directory descriptor, ``storage/blobs.py``; with PostgreSQL rows
every replica reads, ``storage/postgres_content.py``, ADR 0015), durable and
whole when it returns; then a ``persist.effect`` entry
is appended to the log, and the index records the object in that entry's own
transaction. A refusal is logged the same way (outcome ``refused``) and
answered with a DENY carrying the reason.

:meth:`PersistenceController.read` needs a logged ALLOW of a read action and a
scope the principal may read, and verifies the stored digest on every read.
:meth:`PersistenceController.recover` is boot repair and
:meth:`PersistenceController.apply_retention` is retention.

The controller composes three collaborators, each given only what it needs,
and delegates to them: a :class:`~.writes.Writer` (both write paths), a
:class:`~.reads.Reader` and a :class:`~.maintenance.Maintenance` (boot repair
and retention). They share the scopes' locks (:class:`~.guards.ScopeLocks`);
the writer alone holds the decisions in use (:class:`~.guards.Claims`).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence

from sop_verified.core.contracts import ensure, invariant, require
from sop_verified.core.health import Health
from sop_verified.core.persistence.guards import Claims, ScopeLocks
from sop_verified.core.persistence.maintenance import Maintenance, RecoveryReport
from sop_verified.core.persistence.outcomes import ReadResult
from sop_verified.core.persistence.ports import Alarm, EffectLog, PersistIndex, ScopeContent
from sop_verified.core.persistence.reads import Reader
from sop_verified.core.persistence.scopes import ScopeMode, ScopeTable
from sop_verified.core.persistence.writes import LinkedWrite, SubmitBatch, WritePlan, Writer
from sop_verified.core.ports import Clock
from sop_verified.core.request import Decision, Request
from sop_verified.storage.persist_index import ObjectRecord
from sop_verified.tools.tlog_store import Receipt

__all__ = ["PersistenceController"]

_log = logging.getLogger(__name__)


@invariant(lambda self: set(self._content) == self._locks.names, "one root and one lock per scope")
class PersistenceController:
    """Performs the effects of logged ALLOW decisions inside their scopes; nothing else writes."""

    def __init__(
        self,
        *,
        scopes: ScopeTable,
        content: Mapping[str, ScopeContent],
        index: PersistIndex,
        log: EffectLog,
        health: Callable[[], Health],
        now: Clock,
        on_alarm: Alarm | None = None,
    ) -> None:
        """Wire the controller and its writer, reader and maintenance.

        Args:
            scopes: the declared scopes.
            content: each scope's stored bytes (files or database rows), opened once, by
                scope name.
            index: the persistence index (derived from the log).
            log: the tamper-evident log.
            health: SOP's health; effects and reads happen only while READY.
            now: the clock.
            on_alarm: called with the reason whenever the integrity alarm is raised
                (stored state the log does not vouch for; nexus makes SOP DEGRADED).

        Raises:
            ValueError: a scope has no root, or a root no scope.
        """
        if set(content) != {s.name for s in scopes}:
            raise ValueError("every declared scope needs exactly one opened root")
        self._scopes = scopes
        self._content = dict(content)
        self._index = index
        self._locks = ScopeLocks(s.name for s in scopes)
        self._claims = Claims(index)
        self._on_alarm = on_alarm
        self.alarms: list[str] = []
        """Every integrity alarm raised, in order (diagnostics and tests)."""
        roots, locks, alarm = self._content, self._locks, self._raise_alarm
        self._writer = Writer(
            scopes=scopes,
            content=roots,
            index=index,
            log=log,
            health=health,
            now=now,
            locks=locks,
            claims=self._claims,
            alarm=alarm,
        )
        self._reader = Reader(
            scopes=scopes, content=roots, index=index, log=log, health=health, now=now, alarm=alarm
        )
        self._maintenance = Maintenance(
            scopes=scopes, content=roots, index=index, log=log, now=now, locks=locks, alarm=alarm
        )

    def _raise_alarm(self, reason: str) -> None:
        """The integrity alarm: recorded, logged, and handed to ``on_alarm`` (never raises)."""
        self.alarms.append(reason)
        _log.error("persistence integrity alarm: %s", reason)
        if self._on_alarm is not None:
            try:
                self._on_alarm(reason)
            except Exception:  # the refusal stands whatever the callback does
                _log.exception("integrity alarm callback failed")

    @property
    def scopes(self) -> ScopeTable:
        """The declared scopes."""
        return self._scopes

    @ensure(lambda decision, result: decision.allowed or result is decision, "DENY stays DENY")
    @ensure(
        lambda decision, result: not result.allowed or result.log_index == decision.log_index,
        "INV-9: an ALLOW answer is the logged decision",
    )
    def execute(self, decision: Decision, request: Request, data: bytes) -> Decision:
        """Carry out a persist decision: write ``data`` if, and only if, every rule holds.

        Args:
            decision: the kernel's decision for ``request`` (``OpsKernel.submit``).
            request: the parsed request that decision was made for.
            data: the bytes to store.

        Returns:
            ``decision`` itself when it is a DENY; the ALLOW with
            ``write`` (outcome, scope, name, stored path, digest, size,
            version, effect index and receipt) once the bytes are durably
            stored and the effect logged; otherwise a DENY with a
            ``persistence`` reason, logged as a refused effect (its
            ``log_index``/``receipt`` are the refusal's;
            ``decision_index`` is the refused ALLOW). Never raises for
            bad input or storage failures.
        """
        if not decision.allowed:
            return decision
        return self._writer.execute(decision, request, bytes(data))

    @ensure(
        lambda result: result is None or result.scope.mode is ScopeMode.CONTENT_ADDRESSED,
        "only content-addressed writes are linked",
    )
    @ensure(lambda data, result: result is None or result.size == len(data), "the data's size")
    def linked_plan(
        self, request: Request, data: bytes, digest_hex: str | None = None
    ) -> WritePlan | None:
        """The plan of a write that can commit with its decision, or None (two steps).

        Only a small write into a content-addressed scope that every rule
        already admits qualifies; anything else (including every refusal,
        which the two-step path logs with its reason) returns None and records
        nothing.

        Args:
            request: the parsed persist request (content bound).
            data: the bytes.
            digest_hex: the hex SHA-256 of ``data`` if the caller computed it.
        """
        return self._writer.linked_plan(request, data, digest_hex)

    @require(lambda writes: len(writes) > 0, "at least one write")
    @ensure(lambda writes, result: len(result) == len(writes), "one answer per write")
    @ensure(
        lambda writes, result: all(
            d.request_id == w[0].request_id for w, (d, _) in zip(writes, result, strict=True)
        ),
        "each answer is its own write's",
    )
    @ensure(
        lambda result: all(r is None or (d.allowed and d.log_index is not None) for d, r in result),
        "INV-9: an effect only with its logged ALLOW",
    )
    def execute_linked_batch(
        self,
        submit_batch: SubmitBatch,
        writes: Sequence[LinkedWrite],
    ) -> list[tuple[Decision, Receipt | None]]:
        """Decide planned writes through the kernel and store each allowed one with its
        decision: the ALLOW, its ``persist.effect`` entry and the bytes in one durable
        transaction (INV-9), for the whole batch at once.

        Args:
            submit_batch: the kernel's ``submit_batch``.
            writes: what :meth:`linked_plan` admitted, one per caller.

        Returns:
            Per write: the decision and the effect entry's receipt (None for a
            DENY, or a log that cannot link); :meth:`finish_linked` turns it
            into the caller's answer. Never raises for a refusal.
        """
        return self._writer.execute_linked_batch(submit_batch, writes)

    @ensure(
        lambda decision, write, result: result.request_id == write[0].request_id,
        "the write's own answer",
    )
    @ensure(
        lambda result: not result.allowed or result.write is not None,
        "INV-9: an ALLOW answer carries its recorded effect",
    )
    def finish_linked(
        self, decision: Decision, receipt: Receipt | None, write: LinkedWrite
    ) -> Decision:
        """The answer to one write of :meth:`execute_linked_batch`.

        A DENY is answered as it is; an ALLOW recorded with its effect gets the
        effect's details; an ALLOW whose log could not link (no receipt) is
        carried out now in two steps, as :meth:`execute` would.
        """
        return self._writer.finish_linked(decision, receipt, write)

    @ensure(lambda decision, result: decision.allowed or result.decision is decision)
    def read(
        self, decision: Decision, request: Request, *, resource: str | None = None
    ) -> ReadResult:
        """Read what a logged ALLOW of a read action covers, verifying its digest.

        Args:
            decision: the kernel's decision for ``request``.
            request: the parsed request (``artifact.read`` or ``snapshot.resume``).
            resource: for ``snapshot.resume`` only: an object the snapshot needs
                (e.g. ``snapshots/csp/blobs/sha256/<hex>``); default ``request.resource``.

        Returns:
            The result; ``data`` is None when refused (the reason is in its
            decision, and the refusal is logged). Never raises for bad input.
        """
        if not decision.allowed:
            return ReadResult(decision)
        return self._reader.read(decision, request, resource)

    @require(lambda version: version is None or version >= 1)
    @ensure(lambda scope, result: result is None or result.scope == scope)
    def lookup(self, scope: str, name: str, version: int | None = None) -> ObjectRecord | None:
        """The live object ``name`` (its latest, or ``version``) in the scope called ``scope``."""
        if version is None:
            return self._index.latest(scope, name)
        return self._index.version(scope, name, version)

    @ensure(lambda scope, result: all(o.scope == scope for o in result))
    def objects(self, scope: str, name: str | None = None) -> list[ObjectRecord]:
        """Live objects of ``scope`` (of one name if given), by name, newest first."""
        return self._index.objects(scope, name)

    @ensure(
        lambda self, result: all(
            p.decision_index >= result.through for p in self._index.repairable()
        ),
        "every pending decision logged before the repair, and no live replica's, is closed",
    )
    def recover(self) -> RecoveryReport:
        """Boot repair: redo or abort pending decisions, purge, apply retention.

        Only a pending row that the log backs (an ALLOW persist decision of the
        same request, proved included under the signed checkpoint) is redone or
        aborted; any other raises the integrity alarm and fails boot. On a log
        other replicas share, the decisions they log while this one repairs are
        left to them (``through``).

        Raises:
            IntegrityError: a pending row the log does not back (SOP is not READY).
            StorageError: the log or index failed (boot fails; SOP is not READY).
        """
        return self._maintenance.recover()

    @require(lambda now: now >= 0)
    @ensure(lambda result: all(i >= 0 for i in result))
    def apply_retention(self, now: int) -> list[int]:
        """Tombstone (in the log, first) and remove what the retention rules expire.

        Args:
            now: the clock reading ages are measured from.

        Returns:
            The log indexes of the tombstones.

        Raises:
            IntegrityError: a purge row the log does not back (the alarm is raised).
            StorageError: the log or index failed.
        """
        return self._maintenance.apply_retention(now)[0]

    @require(lambda self: self._claims.idle, "no effect is in flight")
    def close(self) -> None:
        """Release every scope root."""
        for stored in self._content.values():
            stored.close()
