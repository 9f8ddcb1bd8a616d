"""The tamper-evident log: RFC 9162 tree, group commit, signed checkpoints (INV-5, INV-9).

:class:`TransparencyLog` holds the log's whole in-memory state, the
``O(log n)`` frontier of :mod:`sop_verified.tools.tlog_tiles`, and keeps
everything else in a :class:`~sop_verified.tools.tlog_store.LogStore`:
entries, complete tiles of subtree hashes, and one signed C2SP checkpoint per
batch. Opening a log reads only its tail: the size, a few tiles and leaves,
and the latest checkpoint, which must verify and match them.

Group commit: concurrent :meth:`TransparencyLog.append` calls queue up; one
caller at a time becomes the leader, takes every queued entry, hashes them,
signs the next checkpoint and writes the lot in one durable transaction; each
call returns only after that transaction committed. Before signing, the new
checkpoint is checked against the previous one (same prefix root, and an
RFC 9162 consistency proof from the stored nodes verifies): the log never
signs two inconsistent checkpoints.

Rollback: a store can be cut back, entries, tiles and checkpoints together,
to an earlier checkpoint, and it is then consistent with itself. Only a
checkpoint kept elsewhere shows the cut. The log hands every checkpoint it
signs to an optional ``on_checkpoint`` hook once the batch is durable (the
caller keeps it where it likes; nexus writes it to an anchor file), and
:meth:`TransparencyLog.check_extends` checks the log against such a kept
checkpoint.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from typing import Any

from sop_verified.errors import (
    InputError,
    IntegrityError,
    LogHeadMovedError,
    StateMovedError,
    StorageError,
    VerificationError,
)
from sop_verified.tools.checkpoint import Checkpoint, open_checkpoint, sign_checkpoint
from sop_verified.tools.group_commit import GroupCommit, Ticket
from sop_verified.tools.key_chain import ROTATION_MARK, parse_rotation
from sop_verified.tools.merkle import EMPTY_ROOT, verify_consistency
from sop_verified.tools.merkle_nodes import root_from_range, root_from_range_plan
from sop_verified.tools.signed_note import Signer, Verifier
from sop_verified.tools.tile_proofs import TileReader
from sop_verified.tools.tlog_receipt import ProofBundle
from sop_verified.tools.tlog_store import (
    MAX_STORED_SIZE,
    Attachment,
    Batch,
    LinkedPart,
    LogStore,
    Receipt,
)
from sop_verified.tools.tlog_tiles import TreeState, extend, rebuild

__all__ = [
    "FOLLOW_MAX",
    "HEAD_ATTEMPTS",
    "MAX_BATCH",
    "ForeignEntries",
    "OnCheckpoint",
    "OnForeign",
    "TransparencyLog",
]

MAX_BATCH = 1 << 16
"""Most entries the leader takes into one transaction (a bulk append may exceed it alone)."""

_sha256 = hashlib.sha256

OnCheckpoint = Callable[[int, str], None]
"""Told ``(size, signed note)`` of each checkpoint, after the batch it signs committed."""

ForeignEntries = Sequence[tuple[int, bytes, bytes]]
"""Entries ``(index, leaf hash, payload)`` another writer appended, each payload checked
against its leaf and every leaf against the signed tree."""

OnForeign = Callable[[int, int, ForeignEntries | None], None]
"""Told ``(start, end, entries)``: entries another writer of a shared store appended, with
the entries when the log read them (None: it did not; read them from the store). May
raise :class:`~sop_verified.errors.StateMovedError`."""

FOLLOW_MAX = 4096
"""Most entries of other writers the log reads to extend its tree in place; past it, it
rebuilds its tree from the stored tiles instead (a replica long idle)."""

HEAD_ATTEMPTS = 16
"""How many times a batch is built again on a shared log's moved head before it fails."""

SETTLE_SECONDS = 20.0
"""How long a batch whose write failed, maybe after ``COMMIT``, waits for the store to say
whether it was stored before its callers are told the outcome is unknown (Rekor asks its
clients for a 20 s timeout)."""


class TransparencyLog:
    """An append-only RFC 9162 log over a :class:`LogStore`, signing a checkpoint per batch."""

    def __init__(
        self,
        store: LogStore,
        *,
        origin: str,
        signer: Signer | None,
        trusted: Iterable[Verifier] = (),
        on_checkpoint: OnCheckpoint | None = None,
        on_foreign: OnForeign | None = None,
    ) -> None:
        """Open the log: read its tail and check it against the latest checkpoint.

        Args:
            store: The backend.
            origin: The checkpoint origin line of this log.
            signer: The checkpoint key; None opens the log unsigned (tests),
                which refuses to append to a log that has checkpoints.
            trusted: Further keys the latest checkpoint may be signed by.
            on_checkpoint: Called with ``(size, note)`` of every checkpoint
                this log signs, after its batch committed (never before: a
                copy kept through it is never ahead of the store). If it
                raises, the batch stays acknowledged (it is durable) and the
                log takes no further entry: the caller's copy would lag.
            on_foreign: For a store several writers share: told ``(start, end)``
                when a batch found entries ``[start, end)`` appended by another
                writer since this log last wrote (the tail was re-read, nothing
                of the batch written). It may raise :class:`StateMovedError` to
                give the batch back to its callers; otherwise the batch is built
                again on the new head and written.

        Raises:
            IntegrityError: the stored tail does not match the latest checkpoint.
            VerificationError: the latest checkpoint does not verify.
            StorageError: the backend failed.
        """
        self._store = store
        self._origin = origin
        self._signers: list[Signer] = [] if signer is None else [signer]
        self._trusted = [*(s.verifier() for s in self._signers), *trusted]
        self._reader = TileReader(store.read_tiles)
        self._queue: GroupCommit[list[Receipt]] = GroupCommit(self._commit, _take)
        self._broken: str | None = None  # why the log takes no more entries, for good
        self._stale: str | None = None  # why the tail must be re-read before the next batch
        self._in_doubt: _Plan | None = None  # a batch whose write failed, maybe after COMMIT
        self._on_checkpoint = on_checkpoint
        self._on_foreign = on_foreign
        self._serial = threading.Lock()  # one batch or one refresh at a time
        self._state, self._checkpoint, self._note = self._read_tail()

    # ---- state ---------------------------------------------------------------------
    @property
    def origin(self) -> str:
        """The checkpoint origin line."""
        return self._origin

    @property
    def size(self) -> int:
        """Number of durable entries."""
        return self._state.size

    def root(self) -> bytes:
        """Return the root hash of the durable tree."""
        return self._state.root()

    @property
    def checkpoint_note(self) -> str | None:
        """The latest signed checkpoint note, or None."""
        return self._note

    @property
    def checkpoint(self) -> Checkpoint | None:
        """The latest checkpoint body, or None."""
        return self._checkpoint

    @property
    def verifiers(self) -> tuple[Verifier, ...]:
        """The keys checkpoints of this log are checked with."""
        return tuple(self._trusted)

    def stored_size(self) -> int:
        """Return the number of entries the store holds now (one read of its tail).

        The same as :attr:`size` for a store only this log writes; a store other
        writers share may be ahead of what this log has read.

        Raises:
            StorageError: the backend failed.
        """
        return self._store.log_tail()[0]

    def _read_tail(self) -> tuple[TreeState, Checkpoint | None, str | None]:
        size, note = self._store.log_tail()
        if not 0 <= size <= MAX_STORED_SIZE:
            raise IntegrityError(f"stored log size `{size}` is out of range")
        state = rebuild(size, self._leaves, self._store.read_tiles)
        if note is None:
            if size and self._signers:  # spec: INV-5 — entries nobody signed for
                raise IntegrityError(f"the log holds `{size}` entries but no signed checkpoint")
            return state, None, None
        try:
            checkpoint = self._open(note)
        except VerificationError as exc:
            try:
                found = self._store.read_entries_containing(0, size, [ROTATION_MARK])
            except StorageError:
                raise exc from None  # the refusal stands; only its explanation is missing
            raise self._rotated_away(exc, found) from None
        root = state.root()
        if (checkpoint.size, checkpoint.root_hash) != (size, root):  # spec: INV-5
            raise IntegrityError(
                f"latest checkpoint (size `{checkpoint.size}`, root"
                f" `{checkpoint.root_hash.hex()}`) does not match the stored log"
                f" (size `{size}`, root `{root.hex()}`)"
            )
        return state, checkpoint, note

    def _leaves(self, start: int, end: int) -> list[bytes]:
        rows = self._store.read_entries(start, end)
        if [r[0] for r in rows] != list(range(start, end)):
            raise IntegrityError(f"stored entries `[{start}, {end})` are missing")
        return [r[1] for r in rows]

    def _rotated_away(
        self, exc: VerificationError, rows: Sequence[tuple[int, bytes, bytes]]
    ) -> VerificationError:
        """``exc``, saying so when the stored entries announce a rotation to a key not held.

        Another writer of a shared store that rotated the checkpoint key signs with the
        new key from then on; this writer, holding only the retired one, must refuse the
        new checkpoints (the announcement is not proved: it only explains the refusal).
        """
        for index, _, payload in reversed(rows):  # stored rows: (index, leaf hash, payload)
            try:
                rotation = parse_rotation(index, payload) if ROTATION_MARK in payload else None
            except InputError:
                continue
            if rotation is not None and rotation.new not in self._trusted:
                return VerificationError(
                    f"{exc}: the log's entry `{index}` announces a rotation of its checkpoint"
                    f" key to `{rotation.new.vkey}`, which this writer does not hold, so it takes"
                    " no more entries; open it again with that key (a SOP replica: copy"
                    " `keys/checkpoint.key` and `keys/checkpoint.vkey` from the replica that"
                    " rotated it, then start this one again)"
                )
        return exc

    def _open(self, note: str) -> Checkpoint:
        if not self._trusted:
            return Checkpoint.from_note(note)
        return open_checkpoint(note, self._trusted, origin=self._origin)

    def follow_foreign(self, hook: OnForeign) -> None:
        """Tell ``hook`` of other writers' entries from now on (see ``on_foreign``)."""
        self._on_foreign = hook

    def _tell_foreign(self, start: int, end: int, entries: ForeignEntries | None) -> None:
        """Tell the hook of entries ``[start, end)`` another writer appended."""
        if self._on_foreign is not None:
            self._on_foreign(start, end, entries)

    def _follow(self) -> tuple[TreeState, Checkpoint | None, str | None, ForeignEntries | None]:
        """The stored tail, as an extension of this log's tree (INV-5), and what was added.

        Reads the head and the entries other writers added (two reads), extends
        the tree in memory and checks the result against the stored signed
        checkpoint; so the rebuild under a shared log's head lock costs two
        round trips, not four (tail, tiles, leaves, and the hook's own read of
        the entries). More than :data:`FOLLOW_MAX` new entries, or a store
        that went back: the tree is rebuilt from the stored tiles instead, and
        checked to extend this one.

        Raises:
            IntegrityError: the tail does not match its checkpoint, or does not
                extend this log's tree; a payload does not match its leaf.
            StorageError: the store failed.
        """
        held = self._state
        size, note = self._store.log_tail()
        if not held.size <= size <= held.size + FOLLOW_MAX:
            state, checkpoint, note = self._read_tail()
            self._check_follows(state)
            return state, checkpoint, note, None
        rows = self._store.read_entries(held.size, size)
        if [r[0] for r in rows] != list(range(held.size, size)):
            raise IntegrityError(f"stored entries `[{held.size}, {size})` are missing")
        for index, leaf, payload in rows:  # spec: INV-5 — what the hook reads is what was signed
            if _sha256(b"\x00" + payload).digest() != leaf:
                raise IntegrityError(f"stored entry `{index}` does not match its leaf hash")
        state, _ = extend(held, [r[1] for r in rows])
        if note is None:
            if size and self._signers:  # spec: INV-5 — entries nobody signed for
                raise IntegrityError(f"the log holds `{size}` entries but no signed checkpoint")
            return state, None, None, rows
        try:
            checkpoint = self._open(note)
        except VerificationError as exc:
            raise self._rotated_away(exc, rows) from None
        if (checkpoint.size, checkpoint.root_hash) != (size, state.root()):  # spec: INV-5
            raise IntegrityError(
                f"latest checkpoint (size `{checkpoint.size}`, root"
                f" `{checkpoint.root_hash.hex()}`) is not this log's tree"
                f" (size `{held.size}`) extended by the stored entries"
                f" (root `{state.root().hex()}`)"
            )
        return state, checkpoint, note, rows

    # ---- appending -----------------------------------------------------------------
    def append(self, payload: bytes) -> Receipt:
        """Append one entry; return once it is durable, with its receipt.

        Args:
            payload: The entry's bytes (SOP appends canonical JSON).

        Returns:
            The receipt: index, leaf hash and the signed checkpoint covering it.

        Raises:
            StorageError: the backend failed; nothing was acknowledged.
            IntegrityError: the next checkpoint would be inconsistent (refused).
            TypeError: ``payload`` is not bytes.
        """
        return self._queue.submit(Ticket(_check_payloads([payload])))[0]

    def append_many(self, payloads: Sequence[bytes]) -> list[Receipt]:
        """Append entries in one batch (bulk); return once durable.

        Args:
            payloads: The entries, in order; they get consecutive indices.

        Returns:
            One receipt per entry.

        Raises:
            StorageError: the backend failed; nothing was acknowledged.
            IntegrityError: the next checkpoint would be inconsistent (refused).
            TypeError: a payload is not bytes.
        """
        if not payloads:
            return []
        return self._queue.submit(Ticket(_check_payloads(payloads)))

    def append_parts(
        self, parts: Sequence[LinkedPart]
    ) -> list[tuple[Receipt, Receipt | None] | Exception]:
        """Append several parts (an entry, maybe the entry linked to it) in one durable batch.

        Each part's entries are consecutive and commit in the same transaction
        as every part's attachments. A part whose builder raises (or returns
        something other than bytes) is left out whole, and its error is
        returned in its place; the other parts are appended as if it had
        never been queued.

        Args:
            parts: The parts, in order.

        Returns:
            Per part: its receipts (the second is None for a part without a
            builder), or the error that left it out.

        Raises:
            StorageError: the backend failed; nothing was acknowledged.
            TypeError: a part's first entry is not bytes.
        """
        if not parts:
            return []
        _check_payloads([part.first for part in parts])
        tag = _Linked(tuple(parts))
        got = self._queue.submit(Ticket(list(parts), tag))
        out: list[tuple[Receipt, Receipt | None] | Exception] = []
        at = 0
        for part, error in zip(parts, tag.errors, strict=True):
            if error is not None:
                out.append(error)
            elif part.then is None:
                out.append((got[at], None))
                at += 1
            else:
                out.append((got[at], got[at + 1]))
                at += 2
        return out

    def rotate(self, new_signer: Signer, announcement: bytes) -> Receipt:
        """Log ``announcement`` in a batch of its own, co-signed by old and new key, then switch.

        Args:
            new_signer: The next checkpoint key.
            announcement: The entry announcing the new key.

        Returns:
            The announcement's receipt; its checkpoint carries both signatures.

        Raises:
            StorageError: the backend failed; the key did not change.
            ValueError: the log is unsigned, or the key is the current one.
        """
        if not self._signers:
            raise ValueError("an unsigned log has no key to rotate")
        if new_signer.verifier() in (s.verifier() for s in self._signers):
            raise ValueError("the new checkpoint key is the current one")
        return self._queue.submit(Ticket(_check_payloads([announcement]), new_signer))[0]

    def refresh(self) -> int:
        """Take what other writers of a shared store appended since this log last read it.

        An idle replica's log otherwise learns of them only at its next batch,
        so its read plane would not serve them. The stored tail must extend the
        tree this log holds (INV-5); ``on_foreign`` is told of the new entries
        (state they changed is reloaded; there is no batch to give back). A
        store only this log writes is one read of its head, and no change.

        Returns:
            The log's size now.

        Raises:
            StorageError: the store did not answer (nothing changed).
            IntegrityError: the stored tail does not extend this log's tree.
        """
        with self._serial:
            start = self._state.size
            if self._broken is not None or self._stale is not None:
                return start  # the next batch re-reads the tail (or the log is broken)
            if self._store.log_tail()[0] == start:
                return start
            state, checkpoint, note, added = self._follow()  # spec: INV-5 — an extension only
            self._state, self._checkpoint, self._note = state, checkpoint, note
            if state.size > start:
                # the state they changed is reloaded; no batch of this log's was decided on it
                with contextlib.suppress(StateMovedError):
                    self._tell_foreign(start, state.size, added)
            return self._state.size

    def _commit(self, batch: list[Ticket[list[Receipt]]]) -> None:
        with self._serial:
            self._commit_serially(batch)

    def _commit_serially(self, batch: list[Ticket[list[Receipt]]]) -> None:
        for _ in range(HEAD_ATTEMPTS):
            try:
                if self._broken is not None:
                    raise StorageError(
                        f"the log is unavailable after a failed write: {self._broken}"
                    )
                if self._stale is not None:
                    self._recover()
                self._write(batch)
                return
            except LogHeadMovedError as exc:  # another writer of a shared store went first
                start = self._state.size
                self._resync(exc, check=False)
                if self._broken is not None or self._stale is not None:
                    raise
                if self._state.size > start:
                    self._tell_foreign(start, self._state.size, None)  # may give the batch back
            except StateMovedError:
                raise
            except Exception as exc:
                doubt, self._in_doubt = self._in_doubt, None
                healthy = self._broken is None and self._stale is None
                if doubt is not None and healthy and self._settle(doubt, exc):
                    return  # it had committed: the receipts are its callers'
                if self._broken is None and self._stale is None:
                    self._resync(exc, check=True)
                raise
        raise StorageError(  # spec: INV-2 — nothing of the batch was written
            f"the shared log's head moved under `{HEAD_ATTEMPTS}` attempts in a row"
        )

    def _write(self, tickets: list[Ticket[list[Receipt]]]) -> None:
        if self._note is not None and not self._signers:
            raise StorageError("this log is signed; open it with its checkpoint key to append")
        plan = self._plan(tickets)
        if plan is None:
            return
        plans = [plan]

        def rebuild(head: int) -> Batch | None:
            """Under the store's head lock: the tickets, and those queued since, on ``head``.

            Another writer moved the head while this batch waited for the lock:
            the batch is built again anyway, so the entries queued meanwhile join
            it (one commit on the head instead of two, ADR 0017).
            """
            start = self._state.size
            self._queue.take_more(tickets)
            state, checkpoint, note, added = self._follow()  # spec: INV-5 — verified, extending
            if state.size > head:  # appended past the head this batch locked: the lock went with
                raise LogHeadMovedError(  # its session (a database restart, a cut); nothing taken
                    f"the log's tail is `{state.size}`, past the head `{head}` this batch"
                    " locked: its database session was lost and another writer appended"
                )
            self._state, self._checkpoint, self._note = state, checkpoint, note
            if self._state.size != head:  # spec: INV-5 — the head is held: the tail must be it
                raise IntegrityError(f"the log's tail is `{self._state.size}`, its head `{head}`")
            if head > start:
                self._tell_foreign(start, head, added)  # may give the batch back (StateMovedError)
            again = self._plan(tickets)
            if again is None:
                return None
            plans.append(again)
            return again.batch

        try:
            self._store.write_batch(dataclasses.replace(plan.batch, rebuild=rebuild))
        except StorageError as exc:
            if not isinstance(exc, LogHeadMovedError):  # the store's answer to COMMIT may be
                self._in_doubt = plans[-1]  # what was lost: see _settle
            raise
        self._apply(plans[-1])

    def _settle(self, plan: _Plan, cause: BaseException) -> bool:
        """Whether ``plan``'s batch, whose write failed, was stored all the same.

        A connection lost during ``COMMIT`` leaves it unknown whether the batch
        committed. Nobody is answered until the store says: its entries are read
        back once it answers again (for up to :data:`SETTLE_SECONDS`). Stored,
        the batch is its callers' (state, checkpoint and receipts, as if the
        write had returned); not stored, nothing of it was written.

        Raises:
            StorageError: the store did not answer in time: the outcome is
                unknown, and the next batch re-reads the tail first.
        """
        deadline = time.monotonic() + SETTLE_SECONDS
        pause = 0.05
        while True:
            try:
                rows = self._store.read_entries(plan.start, plan.start + len(plan.leaves))
                break
            except StorageError as exc:
                if time.monotonic() + pause > deadline:
                    self._stale = f"{cause}; whether the batch was stored is unknown: {exc}"
                    raise StorageError(  # spec: INV-2 — never an ALLOW on an unknown write
                        f"the log's write failed and whether it was stored is unknown ({cause});"
                        f" the store is not answering: {exc}"
                    ) from None
                time.sleep(pause)
                pause = min(1.0, 2 * pause)
        if [r[1] for r in rows] != plan.leaves or len(plan.notes) != (plan.unsigned is not None):
            return False  # not stored (or another writer's entries are there)
        self._apply(plan)  # spec: INV-9 — durable after all: the same receipts as a clean write
        return True

    def _plan(self, tickets: list[Ticket[list[Receipt]]]) -> _Plan | None:
        """The batch of ``tickets`` on the current head: entries, tiles, the checkpoint to sign."""
        old = self._state
        tickets = _build_linked(tickets, old.size)
        if not tickets:
            return None
        payloads = [p for t in tickets for p in t.items]
        if old.size + len(payloads) > MAX_STORED_SIZE:
            raise StorageError(f"the log is full (`{MAX_STORED_SIZE}` entries)")
        leaves = [_sha256(b"\x00" + p).digest() for p in payloads]
        new, tiles = extend(old, leaves)
        rotate_to = tickets[0].tag if isinstance(tickets[0].tag, Signer) else None
        entries = list(zip(range(old.size, new.size), leaves, payloads, strict=True))
        attached = [a for t in tickets if isinstance(t.tag, _Linked) for a in t.tag.attachments]
        plan = _Plan(tickets, old.size, new, leaves, rotate_to)
        if not self._signers:
            plan.batch = Batch(old.size, entries, tiles, None, attached)
            return plan
        # spec: INV-5 — shown to extend the last checkpoint now; signed by the store's
        # callback, with the head held at old.size
        plan.unsigned = unsigned = self._prepare(new, dict(tiles))
        signers = self._signers if rotate_to is None else [*self._signers, rotate_to]

        def sign() -> str:
            plan.notes.append(sign_checkpoint(unsigned, *signers))
            return plan.notes[-1]

        plan.batch = Batch(old.size, entries, tiles, None, attached, sign)
        return plan

    def _apply(self, plan: _Plan) -> None:
        """The plan's batch is durable: move the state, fill the receipts, announce."""
        signed = None
        if plan.unsigned is not None:
            if len(plan.notes) != 1:  # spec: INV-5 — never a batch stored without its checkpoint
                raise IntegrityError(
                    f"the store signed the batch's checkpoint {len(plan.notes)} times"
                )
            signed = (plan.unsigned, plan.notes[0])
        new = plan.new
        self._state = new
        if signed is not None:
            self._checkpoint, self._note = signed
        if plan.rotate_to is not None:
            self._signers = [plan.rotate_to]
            self._trusted = [plan.rotate_to.verifier()]
        at = plan.start
        for t in plan.tickets:
            t.result = [
                Receipt(i, plan.leaves[i - plan.start], new.size, self._note)
                for i in range(at, at + len(t.items))
            ]
            at += len(t.items)
        if signed is not None:
            self._announce(new.size, signed[1])

    def _announce(self, size: int, note: str) -> None:
        """Hand the durable checkpoint to ``on_checkpoint``; if that fails, take no more entries."""
        if self._on_checkpoint is None:
            return
        try:
            self._on_checkpoint(size, note)
        except Exception as exc:  # spec: INV-2 — the batch is durable; what follows is refused
            self._broken = f"checkpoint `{size}` is durable but `on_checkpoint` failed: {exc}"

    def _resync(self, cause: BaseException, *, check: bool) -> None:
        """Re-read the tail after a failed batch (``check``: it must extend the tree held).

        A store that does not answer leaves the log stale: the next batch re-reads the
        tail first (:meth:`_recover`), so the log takes entries again once the store is
        back. A tail that does not verify, or does not extend the tree this log held,
        leaves it broken: it takes no more entries.
        """
        try:
            tail = self._read_tail()
            if check:
                self._check_follows(tail[0])
        except StorageError as exc:  # spec: INV-2 — nothing more until the tail is re-read
            self._stale = f"{cause}; re-reading the tail failed: {exc}"
            return
        except Exception as exc:  # spec: INV-2, INV-5 — a tail we cannot trust takes no more
            self._broken = f"{cause}; re-reading the tail failed: {exc}"
            return
        self._state, self._checkpoint, self._note = tail

    def _recover(self) -> None:
        """Re-read the tail of a stale log before its next batch (the store failed before).

        Raises:
            StorageError: the store still does not answer (the log stays stale).
            IntegrityError: the tail does not extend the tree this log held (the
                log is broken: it takes no more entries).
        """
        try:
            tail = self._read_tail()
            self._check_follows(tail[0])
        except StorageError as exc:
            raise StorageError(
                f"the log's store is not answering: {exc} (since a failed write: {self._stale})"
            ) from None
        except Exception as exc:  # spec: INV-2, INV-5 — a tail we cannot trust takes no more
            self._broken = f"re-reading the tail after a failed write failed: {exc}"
            raise
        self._state, self._checkpoint, self._note = tail
        self._stale = None

    def _check_follows(self, state: TreeState) -> None:
        """The re-read tree ``state`` is the tree this log held, or extends it (INV-5).

        Raises:
            IntegrityError: the store went back, or holds another tree (a fork).
            StorageError: the store failed.
        """
        held = self._state
        self._check_prefix(
            held.size, held.root(), state, f"size `{held.size}`, root `{held.root().hex()}`"
        )

    # ---- checkpoints (INV-5) ---------------------------------------------------------
    def _prepare(self, new: TreeState, tiles: dict[int, bytes]) -> Checkpoint:
        """The next checkpoint, unsigned, once it is shown to extend the last one (INV-5)."""
        checkpoint = Checkpoint(self._origin, new.size, new.root())
        self._check_consistent(checkpoint, new, tiles)
        return checkpoint

    def _check_consistent(self, new: Checkpoint, state: TreeState, tiles: dict[int, bytes]) -> None:
        """Refuse to sign ``new`` unless it extends the previous checkpoint (INV-5)."""
        prev, old = self._checkpoint, self._state
        if prev is None:
            if old.size:  # spec: INV-5 — entries nobody signed for
                raise IntegrityError(f"refusing to sign: `{old.size}` entries have no checkpoint")
            return
        if (prev.size, prev.root_hash) != (old.size, old.root()):  # spec: INV-5
            raise IntegrityError(
                f"refusing to sign: the previous checkpoint (size `{prev.size}`) is not the"
                f" tree being extended (size `{old.size}`)"
            )
        if 0 < prev.size < new.size:
            proof = self._reader.consistency_proof(state, prev.size, new.size, tiles)
            try:  # spec: INV-5 — never sign a checkpoint inconsistent with the last one
                verify_consistency(prev.size, new.size, proof, prev.root_hash, new.root_hash)
            except VerificationError as exc:
                raise IntegrityError(f"refusing to sign an inconsistent checkpoint: {exc}") from exc

    def check_extends(self, note: str, keys: Iterable[Verifier] | None = None) -> Checkpoint:
        """Check that the durable tree is the tree of the signed checkpoint ``note``, or extends it.

        A checkpoint kept outside the store (an anchor, a receipt, a witness's
        cosigned view, one of the log's own earlier checkpoints) catches a store cut
        back to an earlier checkpoint, or replaced by a fork: the log may have grown
        since, never shrunk or diverged.

        Args:
            note: The kept checkpoint, a signed note (untrusted).
            keys: The keys ``note`` may be signed by (default: the log's trusted keys;
                a checkpoint signed before a key rotation needs the retired key).

        Returns:
            The kept checkpoint, verified.

        Raises:
            InputError: ``note`` is not a signed checkpoint.
            VerificationError: no trusted key signed ``note``, or its origin
                is another log's.
            IntegrityError: the log is smaller than ``note``, or is not
                consistent with it (``expected`` and ``found`` in the message).
            StorageError: the backend failed.
        """
        kept = open_checkpoint(note, self._trusted if keys is None else keys, origin=self._origin)
        kept_at = f"size `{kept.size}`, root `{kept.root_hash.hex()}`"
        self._check_prefix(kept.size, kept.root_hash, self._state, kept_at)
        return kept

    def _check_prefix(self, size: int, root_hash: bytes, state: TreeState, kept_at: str) -> None:
        """The tree of ``size`` leaves and root ``root_hash`` is ``state``'s tree or a prefix.

        Raises:
            IntegrityError: ``state`` is smaller, or not consistent with it.
            StorageError: the backend failed.
        """
        found = f"found size `{state.size}`, root `{state.root().hex()}`"
        if size > state.size:  # spec: INV-5 — entries were removed
            raise IntegrityError(
                f"the log is smaller than the kept checkpoint: expected at least {kept_at}, {found}"
            )
        if size in (state.size, 0):
            want = state.root() if size == state.size else EMPTY_ROOT
            if root_hash != want:  # spec: INV-5 — a fork: same size, another tree
                raise IntegrityError(
                    f"the log is not the kept checkpoint (a fork): expected {kept_at}, {found}"
                )
            return
        proof = self._reader.consistency_proof(state, size, state.size)
        try:  # spec: INV-5 — the kept checkpoint is a prefix of the log
            verify_consistency(size, state.size, proof, root_hash, state.root())
        except VerificationError as exc:
            raise IntegrityError(
                f"the log is not consistent with the kept checkpoint: expected a log extending"
                f" {kept_at}, {found} ({exc})"
            ) from exc

    # ---- proofs and reads ------------------------------------------------------------
    def _committed(self, size: int | None, state: TreeState) -> int:
        current = state.size
        if size is None:
            return current
        if type(size) is not int or not 0 < size <= current:
            raise VerificationError(
                f"tree size `{size!r}` is not a size of this log",
                expected=f"an integer in `[1, {current}]`",
                calculated=size,
            )
        return size

    def inclusion_proof(self, index: int, size: int | None = None) -> list[bytes]:
        """Return the RFC 9162 inclusion proof of entry ``index`` in the tree of ``size``.

        Args:
            index: The entry, ``0 <= index < size``.
            size: A tree size of this log; default the current size.

        Returns:
            The audit path, lowest level first.

        Raises:
            InputError: ``index`` is out of range.
            VerificationError: ``size`` is not a size of this log.
            IntegrityError: a stored tile is missing.
            StorageError: the backend failed.
        """
        state = self._state
        return self._reader.inclusion_proof(state, index, self._committed(size, state))

    def consistency_proof(self, size1: int, size2: int | None = None) -> list[bytes]:
        """Return the RFC 9162 consistency proof from ``size1`` to ``size2``.

        Args:
            size1: The earlier size, ``0 < size1 <= size2``.
            size2: The later size; default the current size.

        Returns:
            The proof.

        Raises:
            InputError: ``size1`` is out of range.
            VerificationError: ``size2`` is not a size of this log.
            IntegrityError: a stored tile is missing.
            StorageError: the backend failed.
        """
        state = self._state
        return self._reader.consistency_proof(state, size1, self._committed(size2, state))

    def entry(self, index: int) -> bytes:
        """Return the payload of entry ``index``.

        Args:
            index: A durable entry's index.

        Returns:
            The payload bytes.

        Raises:
            InputError: ``index`` is not an entry of the log.
            StorageError: the backend failed, or the row is missing.
        """
        size = self._state.size
        if type(index) is not int or not 0 <= index < size:
            raise InputError(
                f"entry index `{index!r}` is not in the log",
                accepted=f"an integer in `[0, {size})`",
            )
        rows = self._store.read_entries(index, index + 1)
        if len(rows) != 1 or rows[0][0] != index:
            raise StorageError(f"log entry `{index}` is missing from storage")
        return rows[0][2]

    def entries(self, start: int, end: int) -> list[bytes]:
        """Return the payloads of entries ``[start, end)``, read in one query.

        Args:
            start: The first durable entry.
            end: One past the last, ``start <= end <= size``.

        Returns:
            The payload bytes, in index order.

        Raises:
            InputError: the range is not within the log.
            StorageError: the backend failed, or a row is missing.
        """
        size = self._state.size
        if type(start) is not int or type(end) is not int or not 0 <= start <= end <= size:
            raise InputError(
                f"entries `[{start!r}, {end!r})` are not in the log",
                accepted=f"integers with `0 <= start <= end <= {size}`",
            )
        rows = self._store.read_entries(start, end)
        if [row[0] for row in rows] != list(range(start, end)):
            raise StorageError(f"log entries `[{start}, {end})` are missing from storage")
        return [row[2] for row in rows]

    def stored_checkpoint_sizes(self, after: int, limit: int) -> list[int]:
        """The sizes of the checkpoints the store holds past ``after``, ascending (untrusted:
        open each with :meth:`check_extends`).

        Args:
            after: Sizes larger than this one.
            limit: At most this many.

        Raises:
            StorageError: the backend failed.
        """
        return self._store.checkpoint_sizes(after, limit)

    def stored_checkpoints(self, low: int, high: int) -> list[tuple[int, str]]:
        """The checkpoints the store holds of sizes in ``[low, high]``, as ``(size, note)``,
        ascending (untrusted: open each with :meth:`check_extends`).

        Raises:
            StorageError: the backend failed.
        """
        return self._store.read_checkpoints(low, high)

    def entries_containing(
        self, start: int, end: int, needles: Sequence[bytes]
    ) -> list[tuple[int, bytes]]:
        """The entries of ``[start, end)`` whose payload holds one of ``needles``, as
        ``(index, payload)`` (untrusted: prove each before use).

        Raises:
            StorageError: the backend failed.
        """
        return [(i, p) for i, _, p in self._store.read_entries_containing(start, end, needles)]

    def root_from_range(self, start: int, leaf_hashes: Sequence[bytes], size: int) -> bytes:
        """MTH of this log's tree of ``size``, from the given leaf hashes of entries
        ``[start, start + len(leaf_hashes))`` and the stored nodes around them.

        Compared with a signed root of ``size``, it checks a whole range of entries at
        once (:func:`~sop_verified.tools.merkle_nodes.root_from_range`).

        Args:
            start: The index of the first leaf hash.
            leaf_hashes: Leaf hashes computed by the caller (not read from storage).
            size: A tree size of this log, ``start + len(leaf_hashes) <= size``.

        Returns:
            The root those leaves give.

        Raises:
            InputError: the range is out of range.
            VerificationError: ``size`` is not a size of this log.
            IntegrityError: a stored tile is missing or malformed.
            StorageError: the backend failed.
        """
        state = self._state
        size = self._committed(size, state)
        plan = root_from_range_plan(size, start, start + len(leaf_hashes))
        nodes = self._reader.nodes(plan, state) if plan else {}
        return root_from_range(size, start, leaf_hashes, nodes)

    def prove(self, index: int) -> ProofBundle:
        """Return the offline receipt of entry ``index`` against the latest checkpoint.

        Args:
            index: A durable entry's index.

        Returns:
            A C2SP tlog-proof bundle carrying the entry as its extra data.

        Raises:
            InputError: ``index`` is not covered by the latest checkpoint, or
                the log has no checkpoint (unsigned).
            StorageError: the backend failed.
        """
        checkpoint, note = self._checkpoint, self._note
        if checkpoint is None or note is None:
            raise InputError("the log has no signed checkpoint to prove against")
        if type(index) is not int or not 0 <= index < checkpoint.size:
            raise InputError(
                f"entry index `{index!r}` is not covered by the latest checkpoint",
                accepted=f"an integer in `[0, {checkpoint.size})`",
            )
        proof = self.inclusion_proof(index, checkpoint.size)
        return ProofBundle(index, tuple(proof), note, self.entry(index))

    def verify_tail(self) -> None:
        """Re-check the tail: the last entry's leaf hash and the latest checkpoint.

        Raises:
            IntegrityError: the last entry's payload does not hash to its leaf
                hash, or the stored tail no longer matches the checkpoint.
            VerificationError: the latest checkpoint does not verify.
            StorageError: the backend failed.
        """
        state, _, _ = self._read_tail()
        size = state.size
        if size:
            ((index, leaf, payload),) = self._store.read_entries(size - 1, size)
            if _sha256(b"\x00" + payload).digest() != leaf:
                raise IntegrityError(f"log entry `{index}`: its payload does not hash to its leaf")


class _Plan:
    """One attempt at a batch: what it writes, and what the log becomes once it is durable."""

    __slots__ = ("batch", "leaves", "new", "notes", "rotate_to", "start", "tickets", "unsigned")

    def __init__(
        self,
        tickets: list[Ticket[list[Receipt]]],
        start: int,
        new: TreeState,
        leaves: list[bytes],
        rotate_to: Signer | None,
    ) -> None:
        self.tickets, self.start, self.new = tickets, start, new
        self.leaves, self.rotate_to = leaves, rotate_to
        self.batch: Batch = Batch(start, (), (), None)
        self.unsigned: Checkpoint | None = None
        self.notes: list[str] = []


class _Linked:
    """The tag of an :meth:`TransparencyLog.append_parts` ticket: its parts' fate and content."""

    __slots__ = ("attachments", "errors", "parts")

    def __init__(self, parts: tuple[LinkedPart, ...]) -> None:
        self.parts = parts
        self.errors: list[Exception | None] = [None] * len(parts)
        self.attachments: list[Attachment] = []


def _build_linked(batch: list[Ticket[list[Receipt]]], start: int) -> list[Ticket[list[Receipt]]]:
    """Turn each linked ticket's parts into bytes; a part whose builder fails is left out.

    A left-out part gets its error in the ticket's tag (a ticket left with no
    part at all is left out, with an empty result); the others are appended
    as if it had never been queued.
    """
    kept: list[Ticket[list[Receipt]]] = []
    at = start
    for t in batch:
        if isinstance(t.tag, _Linked):
            t.items = _build_parts(t.tag, at)
            if not t.items:  # every part failed: nothing to append, the errors say why
                t.result = []
                continue
        kept.append(t)
        at += len(t.items)
    return kept


def _build_parts(tag: _Linked, at: int) -> list[bytes]:
    # Built again from scratch when a shared log's head moved: fresh errors and attachments.
    tag.errors = [None] * len(tag.parts)
    tag.attachments = []
    items: list[bytes] = []
    for k, part in enumerate(tag.parts):
        if part.then is None:
            items.append(part.first)
            at += 1
            continue
        try:
            built = part.then(at)
            if type(built) is not bytes:
                raise TypeError(f"a linked entry must be bytes, not `{type(built).__name__}`")
        except Exception as exc:  # spec: INV-2 — this part fails alone, nothing of it is kept
            tag.errors[k] = exc
            continue
        items += (part.first, built)
        tag.attachments.extend(part.attachments)
        at += 2
    return items


def _take(queue: list[Ticket[Any]]) -> int:
    """A rotation goes alone; otherwise whole tickets up to :data:`MAX_BATCH` entries."""
    if isinstance(queue[0].tag, Signer):
        return 1
    count, n = 0, 0
    for t in queue:
        size = _linked_size(t.tag) if isinstance(t.tag, _Linked) else len(t.items)
        if isinstance(t.tag, Signer) or (n and count + size > MAX_BATCH):
            break
        count += size
        n += 1
    return n


def _linked_size(tag: _Linked) -> int:
    return sum(1 if part.then is None else 2 for part in tag.parts)


def _check_payloads(payloads: Sequence[bytes]) -> Sequence[bytes]:
    for p in payloads:
        if type(p) is not bytes:
            raise TypeError(f"log payloads must be bytes, not `{type(p).__name__}`")
    return payloads
