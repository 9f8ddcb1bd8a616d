"""Tiles hold the RFC 9162 subtree hashes, whatever the batching; the frontier rebuilds."""

from __future__ import annotations

import random

import pytest
import reference_merkle as ref

from sop_verified.errors import IntegrityError
from sop_verified.tools.merkle import leaf_hash, root_hash
from sop_verified.tools.tlog_tiles import (
    TILE_BYTES,
    TreeState,
    extend,
    frontier_ranges,
    locate,
    rebuild,
    tile_complete,
    tile_id,
    tile_key,
)


def _subtree(data: list[bytes], level: int, index: int) -> bytes:
    return ref.mth(data[index << level : (index + 1) << level])


def _grow(data: list[bytes], sizes: list[int]) -> tuple[TreeState, dict[int, bytes]]:
    state, tiles, at = TreeState(0, {}), {}, 0
    for n in sizes:
        state, new = extend(state, [leaf_hash(d) for d in data[at : at + n]])
        assert [k for k, _ in new] == sorted(k for k, _ in new)
        assert not tiles.keys() & dict(new).keys()  # a tile is written once
        tiles.update(new)
        at += n
    return state, tiles


def _batches(rng: random.Random, total: int) -> list[int]:
    sizes = []
    while total:
        n = min(total, rng.choice([1, 1, 2, 3, 7, 15, 16, 17, 64, 255, 300]))
        sizes.append(n)
        total -= n
    return sizes


@pytest.mark.parametrize("seed", range(12))
def test_tiles_hold_the_reference_subtree_hashes(seed: int) -> None:
    rng = random.Random(seed)
    n = rng.randrange(0, 900)
    data = [b"entry-%d" % i for i in range(n)]
    state, tiles = _grow(data, _batches(rng, n))
    assert state.size == n
    assert state.root() == root_hash(data)
    for key, tile in tiles.items():
        stratum, t = tile_id(key)
        assert tile_key(stratum, t) == key
        assert tile_complete(stratum, t, n)
        assert len(tile) == TILE_BYTES
        for k in range(4):
            for j in range(t << (4 - k), (t + 1) << (4 - k)):
                s, tt, pos = locate(4 * stratum + k, j)
                assert (s, tt) == (stratum, t)
                assert tile[32 * pos : 32 * pos + 32] == _subtree(data, 4 * stratum + k, j)


@pytest.mark.parametrize("n", [0, 1, 15, 16, 17, 255, 256, 257, 4095, 4096, 4097, 5000])
def test_every_complete_tile_is_stored_once(n: int) -> None:
    data = [b"%d" % i for i in range(n)]
    _, tiles = _grow(data, [n] if n else [])
    expected = sum(n >> (4 * (s + 1)) for s in range(8))
    assert len(tiles) == expected


def test_tiles_do_not_depend_on_batching() -> None:
    data = [b"x%d" % i for i in range(700)]
    one, tiles_one = _grow(data, [700])
    many, tiles_many = _grow(data, [1] * 700)
    assert tiles_one == tiles_many
    assert dict(one.frontier) == dict(many.frontier)


@pytest.mark.parametrize("seed", range(8))
def test_frontier_rebuilds_from_the_tail_only(seed: int) -> None:
    rng = random.Random(100 + seed)
    n = rng.randrange(1, 5000)
    data = [b"e%d" % i for i in range(n)]
    leaves = [leaf_hash(d) for d in data]
    state, tiles = _grow(data, _batches(rng, n))
    reads: list[int] = []

    def read_tiles(keys: list[int]) -> dict[int, bytes]:
        reads.extend(keys)
        return {k: tiles[k] for k in keys if k in tiles}

    def read_leaves(a: int, b: int) -> list[bytes]:
        reads.extend(range(a, b))
        return leaves[a:b]

    rebuilt = rebuild(n, read_leaves, read_tiles)
    assert dict(rebuilt.frontier) == dict(state.frontier)
    assert rebuilt.root() == root_hash(data)
    assert len(reads) <= 30 * (n.bit_length() // 4 + 1)  # O(log n), not O(n)


def test_frontier_is_the_complete_nodes_of_incomplete_tiles() -> None:
    n = 1000
    data = [b"%d" % i for i in range(n)]
    state, _ = _grow(data, [n])
    for level, first, end in frontier_ranges(n):
        for j in range(first, end):
            assert state.frontier[(level, j)] == _subtree(data, level, j)
            assert not tile_complete(*locate(level, j)[:2], n)
    assert len(state.frontier) <= 30 * 3


def test_rebuild_with_a_missing_tile_is_an_integrity_error() -> None:
    data = [b"%d" % i for i in range(600)]
    _, tiles = _grow(data, [600])
    leaves = [leaf_hash(d) for d in data]
    victim = max(k for k in tiles if k & 63 == 0)
    del tiles[victim]
    with pytest.raises(IntegrityError, match="missing or malformed"):
        rebuild(600, lambda a, b: leaves[a:b], lambda ks: {k: tiles[k] for k in ks if k in tiles})


def test_rebuild_with_missing_leaves_is_an_integrity_error() -> None:
    with pytest.raises(IntegrityError, match="missing or malformed"):
        rebuild(5, lambda a, b: [], lambda ks: {})
