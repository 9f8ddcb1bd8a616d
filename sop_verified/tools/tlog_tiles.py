"""Tiles: how a stored log keeps its complete subtrees, 30 hashes to a row.

The tree's levels are cut into strata of :data:`TILE_HEIGHT` = 4 levels.
Tile ``(s, t)`` holds the nodes of levels ``4s .. 4s+3`` under one node of
level ``4s + 4``: 16 + 8 + 4 + 2 = 30 hashes, level by level, left to right
(960 bytes). A tile is stored once it is complete (its last leaf appended)
and never changes. Everything else a log needs, the complete nodes inside
the incomplete tiles at the right edge, is the *frontier*: at most 30 hashes
per stratum, ``O(log n)``, kept in memory and rebuilt at boot from the last
few tiles and leaves. So an inclusion proof at a million entries reads at
most five tile rows (three, once the upper strata are cached), and a bulk
append writes one tile row per 16 entries besides the entries themselves.

Which tiles exist is a function of the entries alone, not of how they were
batched, so an audit recomputes them and compares byte for byte.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass

from sop_verified.errors import IntegrityError
from sop_verified.tools.merkle import EMPTY_ROOT, HASH_SIZE
from sop_verified.tools.merkle_nodes import NodeId, range_nodes

__all__ = [
    "TILE_BYTES",
    "TILE_HASHES",
    "TILE_HEIGHT",
    "TreeState",
    "extend",
    "frontier_ranges",
    "locate",
    "rebuild",
    "tile_complete",
    "tile_id",
    "tile_key",
]

TILE_HEIGHT = 4
"""Levels per stratum."""

TILE_HASHES = 30
"""Hashes in a tile: 16 + 8 + 4 + 2."""

TILE_BYTES = TILE_HASHES * HASH_SIZE
"""Bytes in a stored tile."""

_OFFSETS = (0, 16, 24, 28)
_sha256 = hashlib.sha256


def tile_key(stratum: int, tile: int) -> int:
    """Return the storage key of tile ``(stratum, tile)``: ``(last leaf << 6) | stratum``.

    Keys sort in the order tiles complete, so a backend appends them in key order.

    Args:
        stratum: The tile's stratum (levels ``4 * stratum`` to ``4 * stratum + 3``).
        tile: The tile's index within its stratum.

    Returns:
        The key.
    """
    return ((((tile + 1) << (TILE_HEIGHT * (stratum + 1))) - 1) << 6) | stratum


def tile_id(key: int) -> tuple[int, int]:
    """Return the ``(stratum, tile)`` of a key from :func:`tile_key`.

    Args:
        key: A tile key.

    Returns:
        The stratum and the tile index.
    """
    stratum = key & 63
    return stratum, (((key >> 6) + 1) >> (TILE_HEIGHT * (stratum + 1))) - 1


def locate(level: int, index: int) -> tuple[int, int, int]:
    """Return the tile holding node ``(level, index)``, and the node's position in it.

    Args:
        level: The node's level.
        index: The node's index at that level.

    Returns:
        ``(stratum, tile, position)`` with ``0 <= position < 30``.
    """
    k = level & 3
    width = 16 >> k
    return level >> 2, index >> (TILE_HEIGHT - k), _OFFSETS[k] + (index & (width - 1))


def tile_complete(stratum: int, tile: int, size: int) -> bool:
    """Return whether tile ``(stratum, tile)`` is complete in a tree of ``size`` leaves.

    Args:
        stratum: The tile's stratum.
        tile: The tile's index.
        size: The tree size.

    Returns:
        True once the tile's last leaf is in the tree.
    """
    return (tile + 1) << (TILE_HEIGHT * (stratum + 1)) <= size


def frontier_ranges(size: int) -> Iterator[tuple[int, int, int]]:
    """Yield ``(level, first, end)``: the complete nodes of the incomplete tiles at ``size``.

    Args:
        size: The tree size.

    Yields:
        For each level with such nodes, the index range ``[first, end)``.
    """
    stratum = 0
    while size >> (TILE_HEIGHT * stratum):
        tile = size >> (TILE_HEIGHT * (stratum + 1))
        for k in range(TILE_HEIGHT):
            level = TILE_HEIGHT * stratum + k
            first, end = tile << (TILE_HEIGHT - k), size >> level
            if end > first:
                yield level, first, end
        stratum += 1


@dataclass(frozen=True, slots=True)
class TreeState:
    """A tree's in-memory state: its size and its frontier (never mutated once built)."""

    size: int
    frontier: Mapping[NodeId, bytes]

    def root(self) -> bytes:
        """Return MTH of the tree: the fold of its compact range, all in the frontier.

        Returns:
            The 32-byte root hash.
        """
        ids = range_nodes(0, self.size)
        if not ids:
            return EMPTY_ROOT
        acc = self.frontier[ids[-1]]
        for node in reversed(ids[:-1]):
            acc = _sha256(b"\x01" + self.frontier[node] + acc).digest()
        return acc


class _Levels:
    """The nodes one batch completes, level by level, over the previous frontier."""

    __slots__ = ("first", "frontier", "rows")

    def __init__(self, frontier: Mapping[NodeId, bytes], start: int, leaves: list[bytes]):
        self.frontier = frontier
        self.first: list[int] = []
        self.rows: list[list[bytes]] = []
        level, first, row = 0, start, leaves
        while row:
            self.first.append(first)
            self.rows.append(row)
            if first & 1:  # a right child: its left sibling is in the frontier
                row = [frontier[(level, first - 1)], *row]
                first -= 1
            row = [
                _sha256(b"\x01" + row[i] + row[i + 1]).digest() for i in range(0, len(row) - 1, 2)
            ]
            level, first = level + 1, first >> 1

    def get(self, level: int, index: int) -> bytes:
        if level < len(self.first) and index >= self.first[level]:
            return self.rows[level][index - self.first[level]]
        return self.frontier[(level, index)]

    def span(self, level: int, first: int, end: int) -> list[bytes]:
        at = self.first[level] if level < len(self.first) else end
        if first >= at:
            return self.rows[level][first - at : end - at]
        return [self.get(level, i) for i in range(first, end)]


def extend(state: TreeState, leaves: list[bytes]) -> tuple[TreeState, list[tuple[int, bytes]]]:
    """Append leaf hashes: return the new state and the tiles they complete, in key order.

    Args:
        state: The tree before the batch.
        leaves: The new leaves' hashes, in order.

    Returns:
        The tree after the batch, and ``(tile key, 960-byte tile)`` for each
        tile the batch completes.
    """
    start, end = state.size, state.size + len(leaves)
    levels = _Levels(state.frontier, start, leaves)
    tiles: list[tuple[int, bytes]] = []
    for stratum in range((len(levels.first) + TILE_HEIGHT - 1) // TILE_HEIGHT):
        shift = TILE_HEIGHT * (stratum + 1)
        for tile in range(start >> shift, end >> shift):
            parts: list[bytes] = []
            for k in range(TILE_HEIGHT):
                w = TILE_HEIGHT - k
                parts += levels.span(TILE_HEIGHT * stratum + k, tile << w, (tile + 1) << w)
            tiles.append((tile_key(stratum, tile), b"".join(parts)))
    tiles.sort()
    frontier = {
        (level, i): levels.get(level, i)
        for level, first, stop in frontier_ranges(end)
        for i in range(first, stop)
    }
    return TreeState(end, frontier), tiles


def rebuild(
    size: int,
    read_leaves: Callable[[int, int], Sequence[bytes]],
    read_tiles: Callable[[Sequence[int]], Mapping[int, bytes]],
) -> TreeState:
    """Rebuild the frontier of a stored tree of ``size`` leaves from its tail (boot).

    Reads at most 15 leaves and 15 tiles per stratum: the bottom row of each
    incomplete tile is leaves (stratum 0) or roots of complete tiles below.

    Args:
        size: The stored tree size.
        read_leaves: Returns the leaf hashes of ``[start, end)``.
        read_tiles: Returns stored tiles by key (missing keys left out).

    Returns:
        The tree state.

    Raises:
        IntegrityError: a leaf or a tile is missing or malformed.
    """
    ranges = list(frontier_ranges(size))
    bottoms = [(lv, a, b) for lv, a, b in ranges if lv % TILE_HEIGHT == 0]
    keys = [tile_key(lv // TILE_HEIGHT - 1, j) for lv, a, b in bottoms if lv for j in range(a, b)]
    tiles = read_tiles(keys) if keys else {}
    frontier: dict[NodeId, bytes] = {}
    for level, first, end in ranges:
        if level == 0:
            leaves = read_leaves(first, end)
            if len(leaves) != end - first or any(len(h) != HASH_SIZE for h in leaves):
                raise IntegrityError(f"stored leaves `[{first}, {end})` are missing or malformed")
            frontier.update(zip(((0, j) for j in range(first, end)), leaves, strict=True))
            continue
        for j in range(first, end):
            if level % TILE_HEIGHT:
                left, right = frontier[(level - 1, 2 * j)], frontier[(level - 1, 2 * j + 1)]
            else:  # the root of the complete tile below
                tile = _tile(tiles, tile_key(level // TILE_HEIGHT - 1, j))
                left, right = tile[28 * HASH_SIZE : 29 * HASH_SIZE], tile[29 * HASH_SIZE :]
            frontier[(level, j)] = _sha256(b"\x01" + left + right).digest()
    return TreeState(size, frontier)


def _tile(tiles: Mapping[int, bytes], key: int) -> bytes:
    tile = tiles.get(key)
    if tile is None or len(tile) != TILE_BYTES:
        raise IntegrityError(f"stored tile `{tile_id(key)}` is missing or malformed")
    return tile
