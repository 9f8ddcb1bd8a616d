"""Reading stored bytes: a logged ALLOW of a read action, a readable scope, the log's bytes.

:class:`Reader` is the controller's reading half. Reads resolve paths exactly
as writes do (the scope's content port: component by component under the
scope root, ``O_NOFOLLOW``, no hard links, with files; the same name checks
for database rows: INV-4). The persistence index only says *where to look*: it lives
in the database, which the attacker SOP defends against can rewrite. What the
bytes must be comes from the log: the index row names the ``persist.effect``
entry that wrote the object; that entry is proved included under the signed
checkpoint (:func:`~.logged.authenticated_entry`), must be a ``written``
effect of the same scope, name and stored path (and agree with the row in
every field it carries), and the content's SHA-256 and size must be the ones
it records. Any disagreement is refused as an integrity failure, logged, and
raises the integrity alarm; the bytes are never returned.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Mapping
from typing import Any

import orjson

from sop_verified.core.contracts import ensure, invariant, require
from sop_verified.core.health import Health
from sop_verified.core.persistence.entries import request_key
from sop_verified.core.persistence.layout import read_target
from sop_verified.core.persistence.logged import LoggedObject, logged_object
from sop_verified.core.persistence.outcomes import ReadResult, reason, refusal
from sop_verified.core.persistence.ports import Alarm, EffectLog, PersistIndex, ScopeContent
from sop_verified.core.persistence.scopes import Scope, ScopeTable
from sop_verified.core.ports import Clock
from sop_verified.core.request import Decision, Reason, Request
from sop_verified.errors import InputError, IntegrityError, PersistenceError, SOPError
from sop_verified.storage.persist_index import ObjectRecord
from sop_verified.tools.paths import check_path

__all__ = ["READ_ACTIONS", "Reader"]

READ_ACTIONS = frozenset({"artifact.read", "snapshot.resume"})
"""Decisions that authorise reading stored bytes."""


@invariant(
    lambda self: set(self._content) == {s.name for s in self._scopes},
    "the content of every scope",
    helper=True,
)
class Reader:
    """Returns the verified bytes a logged ALLOW of a read action covers."""

    def __init__(
        self,
        *,
        scopes: ScopeTable,
        content: Mapping[str, ScopeContent],
        index: PersistIndex,
        log: EffectLog,
        health: Callable[[], Health],
        now: Clock,
        alarm: Alarm,
    ) -> None:
        """Wire the reader.

        Args:
            scopes: the declared scopes.
            content: each scope's stored bytes, by scope name.
            index: the persistence index (what is stored where, with which digest).
            log: the log: the decision's request is read back from it, refusals appended.
            health: SOP's health; reads happen only while READY.
            now: the clock.
            alarm: raises the integrity alarm (a read that the log does not vouch for).
        """
        self._scopes = scopes
        self._content = content
        self._index = index
        self._log = log
        self._health = health
        self._now = now
        self._alarm = alarm

    @require(lambda decision: decision.allowed)
    @ensure(lambda result: result.data is None or result.record is not None)
    def read(self, decision: Decision, request: Request, resource: str | None) -> ReadResult:
        """Read what ``decision`` covers (see ``PersistenceController.read``)."""
        return self._read(decision, request, resource)

    def _read(self, decision: Decision, request: Request, resource: str | None) -> ReadResult:
        try:
            target = self._check_decision(decision, request, resource)
            health = self._health()
            if health is not Health.READY:
                raise PersistenceError(f"SOP is `{health}`; reads need `READY`", code="not_ready")
            scope, rel = self._locate_readable(target, request.principal)
            record = self._find(scope, rel)
            logged = self._logged(scope, rel, record)
            data = self._load(scope, record, logged)
        except PersistenceError as exc:
            return self._refused(decision, request, reason(exc.code, str(exc)))
        except IntegrityError as exc:  # the store disagrees with the log: alarm, and refuse
            self._alarm(f"read of `{request.resource}`: {exc}")
            return self._refused(decision, request, reason("integrity", str(exc)))
        except Exception as exc:  # spec: INV-2 — a failing read returns nothing
            detail = str(exc) if isinstance(exc, SOPError | OSError) else f"`{type(exc).__name__}`"
            why = reason("storage_error", f"the read failed: {detail}")
            return self._refused(decision, request, why)
        return ReadResult(decision, data, record)

    def _check_decision(self, decision: Decision, request: Request, resource: str | None) -> str:
        """The resource the logged ALLOW lets ``request.principal`` read."""
        index = decision.log_index
        if type(index) is not int or index < 0:  # an unrecorded decision permits nothing
            raise PersistenceError("the decision was not recorded in the log", code="unrecorded")
        if decision.request_id != request.request_id or request.action not in READ_ACTIONS:
            raise PersistenceError(
                f"decision `{index}` is not a read decision for request `{request.request_id}`",
                code="decision_mismatch",
                accepted=", ".join(f"`{a}`" for a in sorted(READ_ACTIONS)),
            )
        logged = self._logged_request(index)
        if logged is None or request_key(logged) != request_key(request.to_dict()):
            raise PersistenceError(
                f"no logged ALLOW for request `{request.request_id}` at index `{index}`",
                code="decision_mismatch",
            )
        if resource is None or resource == request.resource:
            return request.resource
        if request.action != "snapshot.resume":
            raise PersistenceError(
                f"an `{request.action}` decision covers `{request.resource}` only",
                code="decision_mismatch",
            )
        try:
            return check_path(resource, where="resource")
        except InputError as exc:
            raise PersistenceError(str(exc), code="bad_name") from None

    def _logged_request(self, index: int) -> dict[str, Any] | None:
        """The request of the ALLOW decision logged at ``index``, or None.

        A cross-check of the caller's (in-process) decision, read without an
        inclusion proof: what it finds can only refuse the read, never permit
        more than the decision SOP itself made, so the proof would cost every
        read without guarding anything (the effect entry, which decides what
        the bytes are, is proved in :meth:`_logged`).
        """
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

    def _locate_readable(self, resource: str, principal: str) -> tuple[Scope, str]:
        located = self._scopes.locate(resource)
        if located is None:
            raise PersistenceError(f"no scope serves `{resource}`", code="unknown_scope")
        scope, rel = located
        if not scope.readable_by(principal):  # spec: INV-4 — reads stay in readable scopes too
            raise PersistenceError(
                f"`{principal}` may not read scope `{scope.name}`", code="foreign_scope"
            )
        return scope, rel

    def _find(self, scope: Scope, rel: str) -> ObjectRecord:
        target = read_target(scope, rel)
        if target.digest_hex is not None:
            hexd = target.digest_hex
            stored = f"sha256/{hexd[:2]}/{hexd}"
            record = self._index.by_stored(scope.name, stored)
            if record is not None and record.stored != stored:
                raise IntegrityError(
                    f"the index answered `{stored}` in scope `{scope.name}` with `{record.stored}`"
                )
        else:
            if target.version is not None:
                record = self._index.version(scope.name, str(target.name), target.version)
            else:
                record = self._index.latest(scope.name, str(target.name))
            if record is not None and record.name != target.name:
                raise IntegrityError(
                    f"the index answered `{target.name}` in scope `{scope.name}`"
                    f" with `{record.name}`"
                )
        if record is None:
            raise PersistenceError(
                f"nothing is stored as `{rel}` in scope `{scope.name}`", code="not_found"
            )
        return record

    def _logged(self, scope: Scope, rel: str, record: ObjectRecord) -> LoggedObject:
        """What the log says the object is: the effect entry the index row names, checked."""
        return logged_object(self._log, scope.name, rel, record)  # spec: INV-5 — the log decides

    def _load(self, scope: Scope, record: ObjectRecord, logged: LoggedObject) -> bytes:
        expected, size, at = logged.digest_hex, logged.size, logged.index
        kept = self._index.blob(scope.name, record.stored)  # a small blob lives in the database
        if kept is not None:
            found = hashlib.sha256(kept).hexdigest()
            if len(kept) != size or found != expected:
                raise IntegrityError(  # spec: INV-4 — verified on every read, never returned
                    f"stored object `{record.stored}` has digest `sha256:{found}` and"
                    f" {len(kept)} bytes, expected `sha256:{expected}` and {size} bytes"
                    f" (the effect entry at log index `{at}`)"
                )
            return kept
        try:
            content = self._content[scope.name]
            data = content.read(record.stored, max_bytes=size, expected_hex=expected)
        except IntegrityError as exc:
            raise IntegrityError(f"{exc} (the effect entry at log index `{at}`)") from None
        except PersistenceError as exc:
            if exc.code != "too_large":
                raise
            raise IntegrityError(
                f"stored object `{record.stored}` grew past the {size} bytes"
                f" the effect entry at log index `{at}` records"
            ) from None
        if len(data) != size:
            raise IntegrityError(
                f"stored object `{record.stored}` has {len(data)} bytes,"
                f" expected {size} (the effect entry at log index `{at}`)"
            )
        return data

    def _refused(self, decision: Decision, request: Request, why: Reason) -> ReadResult:
        index = decision.log_index
        denied = refusal(self._log, self._now, decision, request, why, index=index, op="read")
        return ReadResult(denied)
