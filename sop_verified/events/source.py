"""The events of a log, read through its authenticated path: proved first, then projected.

:class:`LogEventSource` is the :class:`~sop_verified.events.model.EventSource`
of an opened log. Its events are one per entry and one per checkpoint the log
signed, in log order: the checkpoint of size ``s`` stands right after the
event of entry ``s - 1``. Their positions are dense (0, 1, 2, ...): entry
``i`` is at ``i`` plus the number of checkpoints of size at most ``i``, and
the ``k``-th checkpoint (from 0) of size ``s`` is at ``s + k``. Events exist
for what the latest signed checkpoint covers: the entries ``[0, size)`` and
the checkpoints up to ``size``.

Nothing is told before it is proved:

- **Entries** are read a range at a time with
  :func:`~sop_verified.core.persistence.logged.proved_entries`: their leaf
  hashes are computed from the payloads and, with the stored nodes around the
  range, must give the root of the latest signed checkpoint (as an RFC 9162
  inclusion proof per entry would prove).
- **Checkpoints** are read from the store's checkpoint rows, and each must be a
  signed note of this log's origin whose tree is the log's own, or a prefix of
  it (:meth:`~sop_verified.tools.tlog.TransparencyLog.check_extends`: an RFC
  9162 consistency proof up to the tree the latest checkpoint signs). A note
  signed before a key rotation is opened with the key the rotation retired,
  learned from the rotation entries of the log (each proved first).

An entry or checkpoint that does not verify raises
:class:`~sop_verified.errors.IntegrityError` and becomes no event, nor does
anything after it in the same read: the bus cannot say something the signed
log does not. What the source cannot see is a checkpoint row deleted from the
store (the log does not record which sizes were signed): its event is missing,
the others keep their order and ids (``sop log verify`` checks the checkpoint
rows that are there).
"""

from __future__ import annotations

import threading
from bisect import bisect_left, bisect_right
from collections.abc import Callable
from typing import Final

from sop_verified.core.contracts import ensure, require
from sop_verified.core.persistence.logged import proved_entries, proved_rotations
from sop_verified.errors import InputError, IntegrityError, VerificationError
from sop_verified.events.boundary import TelemetryBoundary
from sop_verified.events.model import Event
from sop_verified.events.projection import project_checkpoint, project_entry
from sop_verified.tools.checkpoint import Checkpoint
from sop_verified.tools.signed_note import Verifier
from sop_verified.tools.tlog import TransparencyLog

__all__ = ["LogEventSource"]

SIZES_CHUNK: Final = 10_000
"""Checkpoint sizes read from the store per query while catching up."""

_CHECKPOINT_IDS: Final = "checkpoint"
_MAX_DIGITS: Final = 19


class LogEventSource:
    """The events of an opened, signed log: its entries and its checkpoints (an ``EventSource``).

    Safe to share between threads (the in-process subscribers and a sink read it).
    """

    def __init__(
        self,
        log: Callable[[], TransparencyLog],
        boundary: TelemetryBoundary,
    ) -> None:
        """Read events from the log ``log()`` returns, with ``boundary`` applied.

        Args:
            log: returns the opened log (called per read: a reader may reopen it,
                and SOP's own log object is the one its services append to).
            boundary: what of the request context may leave SOP.
        """
        self._log = log
        self._boundary = boundary
        self._lock = threading.Lock()
        self._sizes: list[int] = []  # the stored checkpoints' sizes seen so far, ascending
        self._retired: list[Verifier] = []  # keys rotations retired, learned from the log
        self._searched = 0  # entries [0, _searched) were searched for rotations

    @property
    def boundary(self) -> TelemetryBoundary:
        """The telemetry boundary applied to every event."""
        return self._boundary

    # ---- positions --------------------------------------------------------------------
    def _sizes_to(self, log: TransparencyLog, signed: int) -> int:
        """How many stored checkpoints have a size of at most ``signed`` (reading new ones).

        Call with the lock held. The sizes are the store's (untrusted): a row that is
        not a checkpoint of this log fails when its event is read.
        """
        sizes = self._sizes
        while not sizes or sizes[-1] < signed:
            after = sizes[-1] if sizes else -1
            more = log.stored_checkpoint_sizes(after, SIZES_CHUNK)
            if any(s <= after for s in more) or more != sorted(set(more)):
                raise IntegrityError(
                    f"the store's checkpoint sizes after `{after}` are not ordered"
                )
            sizes.extend(more)
            if len(more) < SIZES_CHUNK:
                break
        return bisect_right(sizes, signed)

    def _signed(self, log: TransparencyLog) -> int:
        checkpoint = log.checkpoint
        return 0 if checkpoint is None else checkpoint.size

    @ensure(lambda result: result >= 0)
    def size(self) -> int:
        """How many events there are now: the entries a signed checkpoint covers, and the
        checkpoints up to it.

        Raises:
            StorageError: the log is not open, or its checkpoints could not be read.
            IntegrityError: the stored checkpoint sizes are not in order.
        """
        log = self._log()
        signed = self._signed(log)
        with self._lock:
            return signed + self._sizes_to(log, signed)

    def entry_position(self, index: int) -> int:
        """The position of entry ``index``'s event (it may not exist yet).

        Raises:
            StorageError: the checkpoints could not be read.
        """
        log = self._log()
        with self._lock:
            self._sizes_to(log, self._signed(log))
            return index + bisect_right(self._sizes, index)

    def position_of(self, event_id: str) -> int | None:
        """The position of the event ``event_id`` names, or None when it is not this log's.

        Raises:
            StorageError: the checkpoints could not be read.
        """
        log = self._log()
        head, _, tail = event_id.rpartition("/")
        if not (tail.isascii() and tail.isdigit()) or len(tail) > _MAX_DIGITS:
            return None
        number = int(tail)
        if head == log.origin:
            return self.entry_position(number)
        if head != f"{log.origin}/{_CHECKPOINT_IDS}":
            return None
        with self._lock:
            self._sizes_to(log, self._signed(log))
            at = bisect_left(self._sizes, number)
            found = at < len(self._sizes) and self._sizes[at] == number
            return number + at if found else None

    # ---- reading ----------------------------------------------------------------------
    @require(lambda start, end: 0 <= start <= end, "a range of event positions")
    @ensure(lambda start, end, result: [e.position for e in result] == list(range(start, end)))
    def read(self, start: int, end: int) -> list[Event]:
        """The events at positions ``[start, end)``, in order.

        Args:
            start: the first position.
            end: one past the last; at most :meth:`size`.

        Returns:
            One event per position.

        Raises:
            IntegrityError: an entry is not the entry the signed tree holds at its
                index, or a checkpoint row is not a checkpoint this log signed (no event
                is made of it, nor of any event of this read).
            StorageError: the log could not be read.
            ValueError: ``end`` is past :meth:`size` (those events do not exist yet).
        """
        log = self._log()
        signed = self._signed(log)
        with self._lock:
            count = self._sizes_to(log, signed)
            sizes = self._sizes[:count]
        if end > signed + count:
            raise ValueError(
                f"events `[{start}, {end})` reach past the `{signed + count}` there are"
            )
        plan = _plan(sizes, start, end)
        entries = [i for kind, i in plan if kind == _ENTRY]
        low, high = (entries[0], entries[-1] + 1) if entries else (0, 0)
        proved = proved_entries(log, low, high, what="the entry")  # spec: INV-5 — proved,
        checkpoints = self._checkpoints(log, [s for kind, s in plan if kind == _CHECKPOINT])
        origin = log.origin
        out = []  # then told
        for position, (kind, number) in enumerate(plan, start):
            if kind == _ENTRY:
                entry = proved[number - low]
                out.append(project_entry(origin, number, entry, self._boundary, position))
            else:
                body, note = checkpoints[number]
                out.append(project_checkpoint(origin, body, note, position))
        return out

    def _checkpoints(
        self, log: TransparencyLog, sizes: list[int]
    ) -> dict[int, tuple[Checkpoint, str]]:
        """The checkpoints of ``sizes``, each opened and shown to be of this log's tree."""
        if not sizes:
            return {}
        stored = dict(log.stored_checkpoints(sizes[0], sizes[-1]))
        out = {}
        for size in sizes:
            note = stored.get(size)
            if note is None:
                raise IntegrityError(f"the checkpoint of size `{size}` is gone from the store")
            out[size] = (self._open(log, size, note), note)
        return out

    def _open(self, log: TransparencyLog, size: int, note: str) -> Checkpoint:
        """The checkpoint stored at ``size``, verified (INV-5), or IntegrityError."""
        what = f"the checkpoint stored at size `{size}`"
        try:
            body = self._opened(log, note, what)
        except VerificationError as exc:  # perhaps signed by a key a later rotation retired
            if not self._learn_rotations(log):
                raise IntegrityError(f"{what} does not verify: {exc}") from None
            try:
                body = self._opened(log, note, what)
            except VerificationError as again:
                raise IntegrityError(f"{what} does not verify: {again}") from None
        if body.size != size:
            raise IntegrityError(f"{what} says size `{body.size}`")
        return body

    def _opened(self, log: TransparencyLog, note: str, what: str) -> Checkpoint:
        with self._lock:
            keys = [*log.verifiers, *self._retired]
        try:
            return log.check_extends(note, keys)  # spec: INV-5 — this log's tree, signed
        except VerificationError:
            raise  # no key it knows signed it: the caller may learn retired keys
        except (InputError, IntegrityError) as exc:
            raise IntegrityError(f"{what} is not a checkpoint of this log: {exc}") from None

    def _learn_rotations(self, log: TransparencyLog) -> bool:
        """Learn the keys retired by the rotations the signed log announces, each proved.

        A checkpoint signed before a rotation is signed by the key that rotation retires,
        announced in an entry after it: the whole signed log is searched (once; a later
        call searches only what was appended since).

        Returns:
            Whether a key was learned (only then is a failed note worth opening again).
        """
        checkpoint = log.checkpoint
        end = 0 if checkpoint is None else checkpoint.size
        with self._lock:
            start = self._searched
        if start >= end:
            return False
        learned = [r.old for r in proved_rotations(log, start, end)]
        with self._lock:
            self._searched = max(self._searched, end)
            new = [k for k in learned if k not in self._retired]
            self._retired.extend(new)
        return bool(new)


_ENTRY: Final = 0
_CHECKPOINT: Final = 1


def _plan(sizes: list[int], start: int, end: int) -> list[tuple[int, int]]:
    """What stands at each position of ``[start, end)``: ``(_ENTRY, index)`` or
    ``(_CHECKPOINT, size)``, given the checkpoints' ascending ``sizes``.

    The ``k``-th checkpoint stands at ``sizes[k] + k``; every other position is the
    next entry.
    """
    k = bisect_left(range(len(sizes)), start, key=lambda j: sizes[j] + j)  # checkpoints below
    index = start - k  # the entry at start, if start is not a checkpoint's
    out = []
    for position in range(start, end):
        if k < len(sizes) and sizes[k] + k == position:
            out.append((_CHECKPOINT, sizes[k]))
            k += 1
        else:
            out.append((_ENTRY, index))
            index += 1
    return out
