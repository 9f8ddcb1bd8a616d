"""What the read plane serves the log from: the latest checkpoint, node hashes, entries.

:class:`LogTileSource` is the read plane's port; :class:`StoredLogTiles`
implements it over a :class:`~sop_verified.tools.tlog.TransparencyLog` and
its :class:`~sop_verified.tools.tlog_store.LogStore`, reading only what the
log stores: C2SP tiles need the nodes at every eighth Merkle level, and SOP's
storage tiles (:mod:`sop_verified.tools.tlog_tiles`) keep every fourth level
as the bottom row of a stratum. A node of Merkle level ``4s`` is read from
the stored tile of stratum ``s`` that holds it once that tile is complete;
at the right edge, where it is not, the node is the root of the complete
tile of stratum ``s - 1`` below it (level 0: the stored leaf hash).

Thread safety: the log publishes a checkpoint note only after its batch
(entries, tiles and the checkpoint) committed, in one attribute write, and a
complete node never changes; so reading the note once, then reading nodes of
that tree from the store (which serializes its own reads and writes) sees
one consistent tree, however many appends run meanwhile.
"""

from __future__ import annotations

import hashlib
import logging
import threading
import time
from collections.abc import Callable, Sequence
from typing import Protocol

from sop_verified.errors import IntegrityError, SOPError
from sop_verified.tools.checkpoint import Checkpoint
from sop_verified.tools.merkle import HASH_SIZE
from sop_verified.tools.tlog import TransparencyLog
from sop_verified.tools.tlog_store import LogStore
from sop_verified.tools.tlog_tiles import TILE_BYTES, TILE_HEIGHT, tile_key

__all__ = ["LogTileSource", "SignedSize", "StoredLogTiles", "TailRefresh"]

SignedSize = tuple[int, str]
"""``(tree size, signed checkpoint note)`` of the checkpoint being served."""

_STRATUM = TILE_HEIGHT  # Merkle levels per storage stratum (4), not the C2SP tile height (8)
_ROW = 1 << _STRATUM  # nodes in the bottom row of a storage tile
_sha256 = hashlib.sha256


class LogTileSource(Protocol):
    """The reads the log's read plane makes; each may block (it is run in a thread)."""

    def latest(self) -> SignedSize | None:
        """Return the latest signed checkpoint's size and note, or None if there is none."""

    def read_nodes(self, size: int, level: int, start: int, end: int) -> Sequence[bytes]:
        """Return the hashes of the nodes ``start .. end - 1`` at Merkle ``level``.

        Every node is complete in the tree of ``size`` leaves, a size of a
        checkpoint :meth:`latest` returned; ``level`` is a multiple of 8.
        """

    def read_entries(self, start: int, end: int) -> Sequence[bytes]:
        """Return the entries ``start .. end - 1``, all below a checkpointed size."""


_log = logging.getLogger(__name__)


class TailRefresh:
    """Has a log take what other replicas of a shared store appended, at most so often.

    A replica that decides nothing learns of the others' entries only when
    it next writes; its read plane would serve an old checkpoint and 404
    their receipts. The read plane calls this before it answers: one read of
    the store's head when nothing changed, at most once per ``every``
    seconds (``force`` for a receipt past the log's end), so a client cannot
    make it read the store more often than that.
    """

    def __init__(self, log: Callable[[], TransparencyLog], every: float = 1.0) -> None:
        """Refresh the log ``log()`` returns (it may raise SOPError before boot finished)."""
        self._log = log
        self._every = every
        self._mutex = threading.Lock()
        self._last = -every
        self._failing = False

    def due(self) -> bool:
        """Whether a call now would read the store (more than ``every`` seconds since)."""
        return time.monotonic() - self._last >= self._every

    def __call__(self, *, force: bool = False) -> None:
        """Refresh now unless that was done less than ``every`` seconds ago (``force``: 1/10).

        A store that does not answer, or a tail that does not extend the tree,
        leaves the log as it was (what it serves is still signed and checked);
        one warning is logged per spell of failures.
        """
        now = time.monotonic()
        with self._mutex:
            if now - self._last < (self._every / 10 if force else self._every):
                return
            self._last = now
        try:
            self._log().refresh()
        except SOPError as exc:
            if not self._failing:
                _log.warning("the read plane could not re-read the shared log's tail: %s", exc)
            self._failing = True
            return
        self._failing = False


class StoredLogTiles:
    """A :class:`LogTileSource` over a log and its store (``sop.log``, ``sop.store.log_store``)."""

    def __init__(self, log: TransparencyLog, store: LogStore) -> None:
        """Serve ``log``, reading nodes and entries from ``store``, the store it appends to.

        Args:
            log: The log (its latest checkpoint note is served).
            store: The log's store.
        """
        self._log = log
        self._store = store

    def latest(self) -> SignedSize | None:
        """Return the latest checkpoint's size and signed note (one read of the log's note).

        Returns:
            ``(size, note)``, or None for a log without a checkpoint.

        Raises:
            InputError: the note's body is not a checkpoint (never, for a log's own note).
        """
        note = self._log.checkpoint_note  # one read: the size comes from this note's own body
        if note is None:
            return None
        return Checkpoint.from_note(note).size, note

    def read_nodes(self, size: int, level: int, start: int, end: int) -> list[bytes]:
        """Return the hashes of complete nodes ``start .. end - 1`` at Merkle ``level``.

        Args:
            size: A checkpointed tree size that holds every node asked for.
            level: A Merkle level, a multiple of 4 (C2SP tiles ask for multiples of 8).
            start: The first node's index.
            end: One past the last node's index.

        Returns:
            The hashes, left to right.

        Raises:
            IntegrityError: a stored tile or leaf is missing or malformed.
            StorageError: the backend failed.
            ValueError: ``level`` is not a multiple of 4, or a node is not
                complete at ``size``.
        """
        if level % _STRATUM or not 0 <= start <= end or end << level > size:
            raise ValueError(
                f"nodes `[{start}, {end})` of level `{level}` are not in tree `{size}`"
            )
        stratum = level // _STRATUM
        # nodes below `edge` lie in complete tiles of this stratum; the rest at the right edge
        edge = min(end, max(start, (size >> (_STRATUM * (stratum + 1))) * _ROW))
        rows = range(start // _ROW, (edge - 1) // _ROW + 1) if edge > start else range(0)
        keys = [tile_key(stratum, j) for j in rows]
        if stratum:
            keys += [tile_key(stratum - 1, i) for i in range(edge, end)]
        tiles = self._store.read_tiles(keys) if keys else {}
        out = [_node_in_row(tiles, stratum, i) for i in range(start, edge)]
        if stratum:
            out += [_root_of(tiles, stratum - 1, i) for i in range(edge, end)]
        else:
            out += [leaf for leaf, _ in self._rows(edge, end)]
        return out

    def read_entries(self, start: int, end: int) -> list[bytes]:
        """Return the payloads of entries ``start .. end - 1``.

        Args:
            start: The first entry's index.
            end: One past the last entry's index.

        Returns:
            The payloads, in order.

        Raises:
            IntegrityError: a stored entry is missing.
            StorageError: the backend failed.
        """
        return [payload for _, payload in self._rows(start, end)]

    def _rows(self, start: int, end: int) -> list[tuple[bytes, bytes]]:
        if start == end:
            return []
        rows = self._store.read_entries(start, end)
        if [r[0] for r in rows] != list(range(start, end)):
            raise IntegrityError(f"stored entries `[{start}, {end})` are missing")
        return [(leaf, payload) for _, leaf, payload in rows]


def _stored(tiles: dict[int, bytes], stratum: int, index: int) -> bytes:
    tile = tiles.get(tile_key(stratum, index))
    if tile is None or len(tile) != TILE_BYTES:
        raise IntegrityError(f"stored tile `{(stratum, index)}` is missing or malformed")
    return tile


def _node_in_row(tiles: dict[int, bytes], stratum: int, index: int) -> bytes:
    """Node ``index`` of Merkle level ``4 * stratum``: the tile's bottom row holds it."""
    at = (index % _ROW) * HASH_SIZE
    return _stored(tiles, stratum, index // _ROW)[at : at + HASH_SIZE]


def _root_of(tiles: dict[int, bytes], stratum: int, index: int) -> bytes:
    """Node ``index`` of Merkle level ``4 * (stratum + 1)``: root of tile ``(stratum, index)``."""
    tile = _stored(tiles, stratum, index)
    return _sha256(b"\x01" + tile[-2 * HASH_SIZE :]).digest()
