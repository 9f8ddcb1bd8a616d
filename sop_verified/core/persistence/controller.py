"""The Persistence_Controller: the only code that turns an ALLOW into bytes on disk.

:meth:`PersistenceController.execute` takes the kernel's decision, the request
it decided and the bytes, and writes only when the decision is an ALLOW that
is durably in the log and still awaits its effect (INV-9): the index holds a
*pending* row for every logged ALLOW persist decision, so a decision that was
never logged, was made for another request, or already had its effect is
refused. The target must lie in a declared scope that the request's principal
owns (INV-4), within the scope's size limit, and the bytes must have the
digest and size the decision bound. The write is confined to the scope root's
directory descriptor (``storage/blobs.py``); then a ``persist.effect`` entry
is appended to the log, and the index records the object in that entry's own
transaction. A refusal is logged the same way (outcome ``refused``) and
answered with a DENY carrying the reason (see :mod:`.writes`).

:meth:`PersistenceController.read` needs a logged ALLOW of a read action and a
scope the principal may read, and verifies the stored digest on every read
(:mod:`.reads`). :meth:`PersistenceController.recover` is boot repair and
:meth:`PersistenceController.apply_retention` is retention (:mod:`.maintenance`).
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any

import orjson

from sop_verified.core.contracts import ensure, invariant, require
from sop_verified.core.health import Health
from sop_verified.core.persistence.maintenance import RecoveryReport, apply_retention, recover
from sop_verified.core.persistence.outcomes import ReadResult
from sop_verified.core.persistence.ports import EffectLog, PersistIndex, ScopeFiles
from sop_verified.core.persistence.reads import read_object
from sop_verified.core.persistence.scopes import ScopeTable
from sop_verified.core.persistence.writes import (
    LinkedWrite,
    SubmitBatch,
    execute_linked_batch,
    execute_write,
)
from sop_verified.core.ports import Clock
from sop_verified.core.request import Decision, Request
from sop_verified.errors import PersistenceError
from sop_verified.storage.persist_index import ObjectRecord
from sop_verified.tools.tlog_store import Receipt

__all__ = ["PersistenceController"]


class _ScopeLock:
    """Writes share a scope; retention holds it alone (a blob is never purged mid-write)."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._shared = 0
        self._alone = False

    @contextmanager
    def shared(self) -> Iterator[None]:
        with self._cond:
            self._cond.wait_for(lambda: not self._alone)
            self._shared += 1
        try:
            yield
        finally:
            with self._cond:
                self._shared -= 1
                self._cond.notify_all()

    @contextmanager
    def exclusive(self) -> Iterator[None]:
        with self._cond:
            self._cond.wait_for(lambda: not self._alone and not self._shared)
            self._alone = True
        try:
            yield
        finally:
            with self._cond:
                self._alone = False
                self._cond.notify_all()


@invariant(lambda self: set(self._files) == set(self._locks), "one root and one lock per scope")
class PersistenceController:
    """Performs the effects of logged ALLOW decisions inside their scopes; nothing else writes."""

    def __init__(
        self,
        *,
        scopes: ScopeTable,
        files: Mapping[str, ScopeFiles],
        index: PersistIndex,
        log: EffectLog,
        health: Callable[[], Health],
        now: Clock,
    ) -> None:
        """Wire the controller.

        Args:
            scopes: the declared scopes.
            files: each scope's root, opened once, by scope name.
            index: the persistence index (derived from the log).
            log: the tamper-evident log.
            health: SOP's health; effects and reads happen only while READY.
            now: the clock.

        Raises:
            ValueError: a scope has no root, or a root no scope.
        """
        if set(files) != {s.name for s in scopes}:
            raise ValueError("every declared scope needs exactly one opened root")
        self._scopes = scopes
        self._files = dict(files)
        self._index = index
        self._log = log
        self._health = health
        self._now = now
        self._locks = {s.name: _ScopeLock() for s in scopes}
        self._mutex = threading.Lock()
        self._inflight: set[int] = set()
        self._spent: set[int] = set()

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
            ``extra["effect"]`` (outcome, scope, name, stored path, digest, size,
            version, effect index and receipt) once the bytes are durably
            stored and the effect logged; otherwise a DENY with a
            ``persistence`` reason, logged as a refused effect (its
            ``log_index``/``receipt`` are the refusal's;
            ``extra["decision_index"]`` is the refused ALLOW). Never raises for
            bad input or storage failures.
        """
        if not decision.allowed:
            return decision
        return execute_write(self, decision, request, bytes(data))

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
            writes: what :func:`~sop_verified.core.persistence.writes.linked_plan`
                admitted, one per caller.

        Returns:
            Per write: the decision and the effect entry's receipt (None for a
            DENY, or a log that cannot link);
            :func:`~sop_verified.core.persistence.writes.finish_linked` turns
            it into the caller's answer. Never raises for a refusal.
        """
        return execute_linked_batch(self, submit_batch, writes)

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
        return read_object(self, decision, request, resource)

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

    @ensure(lambda self, result: not self._index.pending(), "every pending decision is closed")
    def recover(self) -> RecoveryReport:
        """Boot repair: redo or abort pending decisions, purge, apply retention.

        Raises:
            StorageError: the log or index failed (boot fails; SOP is not READY).
        """
        return recover(self)

    @require(lambda now: now >= 0)
    @ensure(lambda result: all(i >= 0 for i in result))
    def apply_retention(self, now: int) -> list[int]:
        """Tombstone (in the log, first) and remove what the retention rules expire.

        Args:
            now: the clock reading ages are measured from.

        Returns:
            The log indexes of the tombstones.

        Raises:
            StorageError: the log or index failed.
        """
        return apply_retention(self, now)[0]

    @require(lambda self: not self._inflight, "no effect is in flight")
    def close(self) -> None:
        """Release every scope root."""
        for files in self._files.values():
            files.close()

    # ---- package-internal ----------------------------------------------------------------
    def _claim(self, index: int) -> None:
        with self._mutex:
            if index in self._inflight or index in self._spent:
                raise PersistenceError(
                    f"decision `{index}` is already being carried out", code="decision_in_use"
                )
            self._inflight.add(index)

    def _release(self, index: int) -> None:
        # spec: INV-9 — one ALLOW, one effect: a logged effect (or refusal) closed the pending
        # row, which refuses any retry; only a decision still pending must be remembered here,
        # so the set holds the rare failures until boot repair closes them, not every write
        try:
            still_pending = self._index.pending_decision(index) is not None
        except Exception:  # spec: INV-2 — unsure: remember it
            still_pending = True
        with self._mutex:
            self._inflight.discard(index)
            if still_pending:
                self._spent.add(index)

    def _logged_request(self, index: int) -> dict[str, Any] | None:
        """The request of the ALLOW decision logged at ``index``, or None."""
        rows = self._log.log_entries(index, index + 1)
        if len(rows) != 1:
            return None
        try:
            entry = orjson.loads(rows[0][2])
        except orjson.JSONDecodeError:
            return None
        if not isinstance(entry, dict) or entry.get("type") != "decision":
            return None
        request = entry.get("request")
        return request if entry.get("effect") == "ALLOW" and isinstance(request, dict) else None
