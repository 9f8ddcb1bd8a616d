"""RFC 9162 proofs served from stored tiles and the in-memory frontier.

A complete node is either in the frontier of the tree's
:class:`~sop_verified.tools.tlog_tiles.TreeState` (memory) or in a complete
tile (storage). :class:`TileReader` answers a proof plan
(:mod:`sop_verified.tools.merkle_nodes`) with one storage read for all the
tiles it needs, and caches the tiles of the upper strata, which are few and
never change. An inclusion proof at a million entries reads two tile rows.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable, Mapping, Sequence

from sop_verified.errors import IntegrityError
from sop_verified.tools.merkle_nodes import NodeId, consistency_plan, inclusion_plan
from sop_verified.tools.tlog_tiles import TILE_BYTES, TreeState, tile_id

__all__ = ["CACHE_STRATUM", "TileReader"]

CACHE_STRATUM = 2
"""Tiles of this stratum (tree levels 8 and up) and above are cached once read."""

_CACHE_MAX = 1 << 13
_OFFSETS = (0, 16, 24, 28)  # where each level of a tile starts (tlog_tiles)
_sha256 = hashlib.sha256


def _fold(hashes: list[bytes]) -> bytes:
    """MTH of adjacent complete subtrees, largest first: fold from the right."""
    acc = hashes[-1]
    for h in reversed(hashes[:-1]):
        acc = _sha256(b"\x01" + h + acc).digest()
    return acc


def _spot(level: int, index: int) -> tuple[int, int]:
    """Tile key and byte offset of a node (tlog_tiles.locate and tile_key, inlined)."""
    k, stratum = level & 3, level >> 2
    key = (((((index >> (4 - k)) + 1) << (4 * stratum + 4)) - 1) << 6) | stratum
    return key, 32 * (_OFFSETS[k] + (index & (15 >> k)))


class TileReader:
    """Reads complete nodes and builds proofs; caches the upper strata's tiles."""

    def __init__(self, read_tiles: Callable[[Sequence[int]], Mapping[int, bytes]]) -> None:
        """Read tiles through ``read_tiles`` (a ``LogStore.read_tiles``)."""
        self._read = read_tiles
        self._cache: dict[int, bytes] = {}

    def tiles(
        self, keys: Iterable[int], pending: Mapping[int, bytes] | None = None
    ) -> dict[int, bytes]:
        """Return tiles by key: cached, then ``pending`` (not yet stored), then one read.

        Args:
            keys: The tile keys.
            pending: Tiles of a batch being written.

        Returns:
            Every requested tile.

        Raises:
            IntegrityError: a tile is missing or malformed.
            StorageError: the backend failed.
        """
        cache = self._cache
        out: dict[int, bytes] = {}
        missing: list[int] = []
        for k in keys:
            tile = cache.get(k) or (pending.get(k) if pending else None)
            if tile is None:
                missing.append(k)
            else:
                out[k] = tile
        if missing:
            read = self._read(missing)
            if len(cache) > _CACHE_MAX:
                cache.clear()
            for key in missing:
                tile = read.get(key)
                if tile is None or len(tile) != TILE_BYTES:
                    raise IntegrityError(f"stored tile `{tile_id(key)}` is missing or malformed")
                if key & 63 >= CACHE_STRATUM:
                    cache[key] = tile
                out[key] = tile
        return out

    def nodes(
        self,
        ids: Iterable[NodeId],
        state: TreeState,
        pending: Mapping[int, bytes] | None = None,
    ) -> dict[NodeId, bytes]:
        """Return complete nodes of the tree ``state``: frontier first, then tiles.

        Args:
            ids: Complete nodes of the tree.
            state: The tree.
            pending: Tiles of a batch being written.

        Returns:
            The hash of every requested node.

        Raises:
            IntegrityError: a tile is missing or malformed.
            StorageError: the backend failed.
        """
        frontier = state.frontier
        got: dict[NodeId, bytes] = {}
        wanted: dict[NodeId, tuple[int, int]] = {}
        for node in ids:
            value = frontier.get(node)
            if value is None:
                wanted[node] = _spot(*node)
            else:
                got[node] = value
        if wanted:
            tiles = self.tiles({key for key, _ in wanted.values()}, pending)
            for node, (key, at) in wanted.items():
                got[node] = tiles[key][at : at + 32]
        return got

    def inclusion_proof(self, state: TreeState, index: int, size: int) -> list[bytes]:
        """Return the inclusion proof of ``index`` at ``size <= state.size`` (hot path).

        Args:
            state: The current tree.
            index: The leaf, ``0 <= index < size``.
            size: The tree size to prove against.

        Returns:
            The audit path.

        Raises:
            InputError: ``index`` or ``size`` is out of range.
            IntegrityError: a tile is missing or malformed.
            StorageError: the backend failed.
        """
        frontier = state.frontier
        proof: list[bytes] = []
        spots: dict[int, list[tuple[int, int]]] = {}
        for element in inclusion_plan(size, index):
            if len(element) > 1:  # the ragged right edge: at most one element
                got = self.nodes(element, state)
                proof.append(_fold([got[n] for n in element]))
                continue
            value = frontier.get(element[0])
            if value is None:
                key, offset = _spot(*element[0])
                spots.setdefault(key, []).append((len(proof), offset))
                value = b""
            proof.append(value)
        if spots:
            tiles = self.tiles(spots)
            for key, places in spots.items():
                tile = tiles[key]
                for at, offset in places:
                    proof[at] = tile[offset : offset + 32]
        return proof

    def consistency_proof(
        self,
        state: TreeState,
        size1: int,
        size2: int,
        pending: Mapping[int, bytes] | None = None,
    ) -> list[bytes]:
        """Return the consistency proof from ``size1`` to ``size2 <= state.size``.

        Args:
            state: The current tree.
            size1: The earlier size, ``0 < size1 <= size2``.
            size2: The later size.
            pending: Tiles of a batch being written.

        Returns:
            The proof.

        Raises:
            InputError: a size is out of range.
            IntegrityError: a tile is missing or malformed.
            StorageError: the backend failed.
        """
        plan = consistency_plan(size1, size2)
        got = self.nodes((n for element in plan for n in element), state, pending)
        return [got[e[0]] if len(e) == 1 else _fold([got[n] for n in e]) for e in plan]
