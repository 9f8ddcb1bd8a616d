"""Boot repair and retention: the controller's work that no request asks for.

:class:`Maintenance` does both, for the controller.

**Repair** (at boot, before SOP is READY): every ALLOW persist decision still
pending in the index was cut short by a crash between its decision and its
effect entry. The pending-effects journal is a database table, which the
attacker SOP defends against can write, so a row is only a pointer: the
decision entry it names is read from the log and proved included under the
signed checkpoint (:func:`~.logged.authenticated_entry`), and it must be an
ALLOW of a persist action whose request is byte for byte the row's. A row the
log does not back gets nothing done for it (no effect, no abort entry): the
integrity alarm is raised naming the log index and what was expected and
found, the other rows are repaired, and boot fails (SOP is not READY). For
each backed row, the leftover temporary files of that decision are
removed; then, if the file the decision would have produced is there with the
digest the decision bound, the effect is recorded (``written``, or
``unchanged`` for a write-once name that already held those bytes): redoing
it is idempotent. Otherwise an ``aborted`` effect is logged with the reason.
Either way the pending decision is closed, and nothing half-written is ever
visible: files get their final name only after they are complete and synced,
and a database row exists only once its transaction committed (the scope's
content port, ADR 0015, answers the same questions for both).

**Retention** deletes superseded versions only (never the latest of a name,
never anything in a write-once scope), each announced by a
``persist.tombstone`` entry in the log *before* the file is removed; a file
whose tombstone is logged but which still exists (a crash in between) is
removed at the next boot; a purge row is acted on only if the log holds that
tombstone (proved included, same scope and stored path). A content-addressed
blob is removed only when no live object uses it any more.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import orjson

from sop_verified.core.contracts import ensure, invariant, require
from sop_verified.core.persistence.entries import (
    TOMBSTONE_TYPE,
    EffectOutcome,
    effect_entry,
    request_key,
    tombstone_entry,
)
from sop_verified.core.persistence.guards import ScopeLocks
from sop_verified.core.persistence.layout import check_name, stored_path
from sop_verified.core.persistence.logged import authenticated_entry
from sop_verified.core.persistence.outcomes import reason
from sop_verified.core.persistence.ports import Alarm, EffectLog, PersistIndex, ScopeContent
from sop_verified.core.persistence.scopes import Scope, ScopeMode, ScopeTable
from sop_verified.core.persistence.writes import locate_writable
from sop_verified.core.ports import Clock
from sop_verified.core.request import PERSIST_ACTIONS, Permission, Request, parse_request
from sop_verified.errors import InputError, IntegrityError, PersistenceError
from sop_verified.storage.persist_index import PendingDecision, PurgeRecord

_REPAIR_BATCH = 512
"""Boot repair appends the entries that close pending decisions this many at a time."""

__all__ = ["Maintenance", "RecoveryReport"]


@dataclass(frozen=True, slots=True)
class RecoveryReport:
    """What boot repair did.

    ``through`` is the log size when repair read the pending decisions: it closed every
    one below it; a pending decision at or past it was logged meanwhile by another
    replica of a shared log, and is that replica's.
    """

    redone: int = 0
    aborted: int = 0
    temps_removed: int = 0
    purged: int = 0
    tombstones: int = 0
    through: int = 0

    @ensure(lambda result: all(v >= 0 for v in result.values()))
    def to_dict(self) -> dict[str, int]:
        """JSON-ready form."""
        return {
            "redone": self.redone,
            "aborted": self.aborted,
            "temps_removed": self.temps_removed,
            "purged": self.purged,
            "tombstones": self.tombstones,
        }


class _AbortError(Exception):
    """Boot repair cannot redo a pending decision: it is aborted with this code."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


@dataclass(frozen=True, slots=True)
class _Redo:
    outcome: EffectOutcome
    swept: int
    scope: Scope
    name: str
    digest_hex: str
    stored: str


def _request(p: PendingDecision) -> Request:
    try:
        return parse_request(orjson.loads(p.request))
    except (InputError, orjson.JSONDecodeError) as exc:
        message = f"the logged request does not parse: {exc}"
        raise _AbortError("unreadable_request", message) from None


def _describe(request: bytes) -> str:
    """A request for messages: its id (if it has one) and the SHA-256 of its key bytes."""
    try:
        parsed: Any = orjson.loads(request)
    except orjson.JSONDecodeError:
        parsed = None
    rid = parsed.get("request_id") if isinstance(parsed, dict) else None
    return f"{rid!s:.80}` sha256 `{hashlib.sha256(request).hexdigest()}"


@invariant(
    lambda self: set(self._content) == self._locks.names, "one root per locked scope", helper=True
)
class Maintenance:
    """Closes pending decisions at boot, and tombstones and removes what retention expires."""

    def __init__(
        self,
        *,
        scopes: ScopeTable,
        content: Mapping[str, ScopeContent],
        index: PersistIndex,
        log: EffectLog,
        now: Clock,
        locks: ScopeLocks,
        alarm: Alarm,
    ) -> None:
        """Wire the upkeep.

        Args:
            scopes: the declared scopes (their retention rules).
            content: each scope's stored bytes, by scope name.
            index: the persistence index (pending decisions, objects, purges).
            log: where repaired effects, aborts and tombstones are appended.
            now: the clock.
            locks: the scopes' locks: retention holds a scope alone.
            alarm: raises the integrity alarm (a journal row the log does not back).
        """
        self._scopes = scopes
        self._content = content
        self._index = index
        self._log = log
        self._now = now
        self._locks = locks
        self._alarm = alarm

    @ensure(lambda result: result.redone >= 0 and result.aborted >= 0)
    def recover(self) -> RecoveryReport:
        """Close every pending decision (redo or abort), purge, then apply retention.

        Raises:
            IntegrityError: a pending row is not backed by a logged ALLOW persist
                decision of its request; nothing was done for it (boot fails).
            StorageError: the log or the index failed (boot fails: SOP is not READY).
        """
        return self._recover()

    @require(lambda now: now >= 0)
    @ensure(lambda result: result[1] >= 0)
    def apply_retention(self, now: int) -> tuple[list[int], int]:
        """Tombstone and remove the superseded versions each scope's rule expires.

        Args:
            now: the clock reading ages are measured from.

        Returns:
            The tombstones' log indexes, and how many files were removed.

        Raises:
            IntegrityError: a purge row the log does not back (the alarm is raised).
            StorageError: the log or the index failed.
        """
        return self._apply_retention(now)

    # ---- boot repair ---------------------------------------------------------------------
    def _recover(self) -> RecoveryReport:
        redone = aborted = temps = 0
        unbacked: list[str] = []
        closing: list[bytes] = []  # the closing entries, appended in batches (one fsync each)
        through = self._log.opened.size  # every pending row below it is read next
        rows = self._index.repairable()  # on a shared log: not those a live replica carries out
        # past ``through`` but in the store: logged since by another replica of a shared log,
        # its own to carry out; past the store's head: in no log at all (refused below)
        late = [r for r in rows if r.decision_index >= through]
        stored = self._log.opened.stored_size() if late else through
        for row in rows:
            if through <= row.decision_index < stored:
                continue
            try:
                p = self._logged_allow(row)
            except IntegrityError as exc:  # spec: INV-9 — never an effect on a journal row's word
                self._alarm(f"boot repair: {exc}")
                unbacked.append(str(exc))
                continue
            ok, swept, entry = self._repair_one(p)
            closing.append(entry)
            if len(closing) >= _REPAIR_BATCH:
                self._log.opened.append_many(closing)
                closing = []
            redone, aborted, temps = redone + ok, aborted + (not ok), temps + swept
        if closing:
            self._log.opened.append_many(closing)
        if unbacked:  # fail closed: SOP does not become READY over a forged journal
            more = f" (and {len(unbacked) - 1} more)" if len(unbacked) > 1 else ""
            raise IntegrityError(f"boot repair refused a pending-effects row: {unbacked[0]}{more}")
        purged = self._purge()
        tombstones = self._apply_retention(self._now())
        return RecoveryReport(
            redone, aborted, temps, purged + tombstones[1], len(tombstones[0]), through
        )

    def _logged_allow(self, row: PendingDecision) -> PendingDecision:
        """The pending decision as the log has it, if the log backs the journal ``row``.

        Raises:
            IntegrityError: the entry at the row's index is not in the signed log,
                is not an ALLOW of a persist action, or is for another request.
        """
        at = row.decision_index
        what = "the decision a pending-effects row names"
        entry = authenticated_entry(self._log, at, what=what)  # spec: INV-5 — the log decides
        request = entry.get("request")
        action = request.get("action") if isinstance(request, dict) else None
        found = (entry.get("type"), entry.get("effect"), action)
        if (
            found[:2] != ("decision", str(Permission.ALLOW))
            or action not in PERSIST_ACTIONS
            or not isinstance(request, dict)
        ):
            raise IntegrityError(
                f"the pending-effects row names log index `{at}`, expected an `ALLOW` decision"
                f" of a persist action, found type `{found[0]}`, effect `{found[1]}`,"
                f" action `{found[2]!s:.80}`"
            )
        logged = request_key(request)
        if logged != row.request:  # spec: INV-9 — the same request, byte for byte
            raise IntegrityError(
                f"the pending-effects row for log index `{at}` carries request"
                f" `{_describe(row.request)}`, the log's ALLOW is for request"
                f" `{_describe(logged)}`"
            )
        return PendingDecision(at, logged)

    def _target(self, p: PendingDecision, request: Request) -> tuple[Scope, str, str]:
        """The scope, name and digest of the effect ``p`` would have had."""
        digest = request.content_digest
        if digest is None:
            raise _AbortError(
                "no_content", "the decision bound no content digest (it was not made by persist)"
            )
        try:
            scope, rel = locate_writable(self._scopes, request.resource, request.principal)
            check_name(scope, rel, writing=True)
        except PersistenceError as exc:
            raise _AbortError(exc.code, str(exc)) from None
        return scope, rel, digest.removeprefix("sha256:")

    def _redo(self, p: PendingDecision, request: Request) -> _Redo:
        """Whether the decision's file is complete on disk (its temporary files are swept)."""
        scope, rel, hexd = self._target(p, request)
        content = self._content[scope.name]
        stored = stored_path(scope, rel, hexd, p.decision_index)
        try:
            swept = content.sweep_temps(stored.rpartition("/")[0], tag=str(p.decision_index))
            current = self._index.latest(scope.name, rel)
            if scope.mode is ScopeMode.WRITE_ONCE and current is not None:
                if current.digest != "sha256:" + hexd:
                    held = f"`{rel}` already holds `{current.digest}`"
                    raise _AbortError("write_once_violation", held)
                return _Redo(EffectOutcome.UNCHANGED, swept, scope, rel, hexd, stored)
            found = content.digest(stored, max_bytes=scope.max_blob_bytes)
        except PersistenceError as exc:  # a planted symlink or hard link on the way
            raise _AbortError(exc.code, str(exc)) from None
        if found != hexd:
            raise _AbortError("effect_incomplete", "the crash came before the file was complete")
        return _Redo(EffectOutcome.WRITTEN, swept, scope, rel, hexd, stored)

    def _repair_one(self, p: PendingDecision) -> tuple[bool, int, bytes]:
        """The entry that closes pending decision ``p``: its effect, or its abort.

        Returns:
            Whether the effect was redone, how many temporary files were swept, and the
            closing entry (the caller appends it: boot repair logs them in batches).
        """
        request: Request | None = None
        try:
            request = _request(p)
            redo = self._redo(p, request)
        except _AbortError as abort:
            entry = effect_entry(
                op="write",
                outcome=EffectOutcome.ABORTED,
                time=self._now(),
                decision_index=p.decision_index,
                request_id=None if request is None else request.request_id,
                reasons=(reason(abort.code, f"boot repair: {abort}"),),
                repaired=True,
            )
            return False, 0, entry
        size = request.context.get("size_bytes", 0)
        entry = effect_entry(
            op="write",
            outcome=redo.outcome,
            time=self._now(),
            decision_index=p.decision_index,
            request_id=request.request_id,
            scope=redo.scope.name,
            name=redo.name,
            stored=redo.stored,
            digest="sha256:" + redo.digest_hex,
            size=size if type(size) is int else 0,
            repaired=True,
        )
        return True, redo.swept, entry

    # ---- retention -----------------------------------------------------------------------
    def _purge(self) -> int:
        """Remove files whose tombstones are logged, unless a live object still uses them.

        A purge row is a database row too: the file goes only if the entry at its
        tombstone index is, in the signed log, a tombstone of that scope and stored
        path. Any other row is left in the queue, raises the alarm, and fails the purge.

        Raises:
            IntegrityError: a purge row the log does not back (nothing was removed for it).
        """
        removed = 0
        unbacked: list[str] = []
        for rec in self._index.purges():
            try:
                self._logged_tombstone(rec)
            except IntegrityError as exc:  # spec: INV-5 — never delete on a row's word
                self._alarm(f"purge: {exc}")
                unbacked.append(str(exc))
                continue
            scope = self._scopes.get(rec.scope)
            if scope is not None and scope.mode is not ScopeMode.WRITE_ONCE:  # never write-once
                # the database copy (small blobs) goes in one statement that checks it is unused
                dropped = self._index.drop_blob(rec.scope, rec.stored)
                in_use = self._index.by_stored(rec.scope, rec.stored) is not None
                unlinked = not in_use and self._content[scope.name].unlink(rec.stored)
                removed += dropped or unlinked
            self._index.purged(rec.tombstone_index)
        if unbacked:
            more = f" (and {len(unbacked) - 1} more)" if len(unbacked) > 1 else ""
            raise IntegrityError(f"refused a purge row: {unbacked[0]}{more}")
        return removed

    def _logged_tombstone(self, rec: PurgeRecord) -> None:
        """Return if the log's entry at ``rec.tombstone_index`` is the tombstone ``rec`` says.

        Raises:
            IntegrityError: it is not in the signed log, not a tombstone, or of
                another scope or stored path.
        """
        at = rec.tombstone_index
        entry = authenticated_entry(self._log, at, what="the tombstone a purge row names")
        found = tuple(entry.get(k) for k in ("type", "scope", "stored"))
        want = (TOMBSTONE_TYPE, rec.scope, rec.stored)
        if found != want:
            raise IntegrityError(
                f"the purge row names log index `{at}` as the tombstone of `{rec.stored}` in"
                f" scope `{rec.scope}`; the log holds type `{found[0]}`, scope `{found[1]}`,"
                f" stored `{found[2]!s:.200}`"
            )

    def _apply_retention(self, now: int) -> tuple[list[int], int]:
        tombstones: list[int] = []
        removed = 0
        for scope in self._scopes:
            rule = scope.retention
            if rule is None or scope.mode is ScopeMode.WRITE_ONCE:  # write-once is never deleted
                continue
            with self._locks.exclusive(scope.name):
                rank: dict[str, int] = {}
                for obj in self._index.objects(scope.name):
                    r = rank[obj.name] = rank.get(obj.name, -1) + 1
                    if rule.expired(r, now - obj.created_at):
                        why = "keep" if rule.keep is not None and r >= rule.keep else "max_age"
                        entry = tombstone_entry(obj, rule=why, time=now)
                        tombstones.append(self._log.append_receipt(entry).index)  # logged first
                removed += self._purge()
        return tombstones, removed
