"""Reading stored bytes: a logged ALLOW of a read action, a readable scope, a verified digest.

:class:`Reader` is the controller's reading half. Reads resolve paths exactly
as writes do (component by component under the scope root, ``O_NOFOLLOW``, no
hard links: INV-4), and every read compares the content's SHA-256 with the
digest the index recorded when it was written: a mismatch (or a file that
grew) is refused as an integrity failure and logged, and the bytes are never
returned.
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
from sop_verified.core.persistence.outcomes import ReadResult, reason, refusal
from sop_verified.core.persistence.ports import EffectLog, PersistIndex, ScopeFiles
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
    lambda self: set(self._files) == {s.name for s in self._scopes}, "a root per scope", helper=True
)
class Reader:
    """Returns the verified bytes a logged ALLOW of a read action covers."""

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
        """Wire the reader.

        Args:
            scopes: the declared scopes.
            files: each scope's root, by scope name.
            index: the persistence index (what is stored where, with which digest).
            log: the log: the decision's request is read back from it, refusals appended.
            health: SOP's health; reads happen only while READY.
            now: the clock.
        """
        self._scopes = scopes
        self._files = files
        self._index = index
        self._log = log
        self._health = health
        self._now = now

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
            data = self._load(scope, record)
        except (PersistenceError, IntegrityError) as exc:
            code = exc.code if isinstance(exc, PersistenceError) else "integrity"
            return self._refused(decision, request, reason(code, str(exc)))
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
            record = self._index.by_stored(scope.name, f"sha256/{hexd[:2]}/{hexd}")
        elif target.version is not None:
            record = self._index.version(scope.name, str(target.name), target.version)
        else:
            record = self._index.latest(scope.name, str(target.name))
        if record is None:
            raise PersistenceError(
                f"nothing is stored as `{rel}` in scope `{scope.name}`", code="not_found"
            )
        return record

    def _load(self, scope: Scope, record: ObjectRecord) -> bytes:
        expected = record.digest.removeprefix("sha256:")
        kept = self._index.blob(scope.name, record.stored)  # a small blob lives in the database
        if kept is not None:
            if len(kept) != record.size or hashlib.sha256(kept).hexdigest() != expected:
                raise IntegrityError(  # spec: INV-4 — verified on every read, never returned
                    f"stored object `{record.stored}` does not have its recorded digest and size"
                )
            return kept
        try:
            files = self._files[scope.name]
            data = files.read(record.stored, max_bytes=record.size, expected_hex=expected)
        except PersistenceError as exc:
            if exc.code != "too_large":
                raise
            raise IntegrityError(
                f"stored object `{record.stored}` grew past its recorded {record.size} bytes"
            ) from None
        if len(data) != record.size:
            raise IntegrityError(
                f"stored object `{record.stored}` has {len(data)} bytes, recorded {record.size}"
            )
        return data

    def _refused(self, decision: Decision, request: Request, why: Reason) -> ReadResult:
        index = decision.log_index
        denied = refusal(self._log, self._now, decision, request, why, index=index, op="read")
        return ReadResult(denied)
