"""C2SP tlog-tiles paths, tile lists and bytes: the spec's examples, and malformed paths refused."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import pytest

from sop_verified.errors import EntryTooLargeError, InputError, IntegrityError
from sop_verified.tools.c2sp_tiles import (
    MAX_ENTRY_BYTES,
    TileRef,
    bundle_bytes,
    encode_entry_bundle,
    encode_index,
    parse_tile_path,
    tile_available,
    tile_bytes,
    tiles_for_size,
)

VECTORS = json.loads(
    (Path(__file__).parents[1] / "vectors" / "c2sp-tlog-tiles" / "paths.json").read_text()
)


def _desc(case: dict[str, Any]) -> str:
    return str(case["desc"])


@pytest.mark.parametrize("case", VECTORS["valid"], ids=_desc)
def test_valid_path_parses_and_round_trips(case: dict[str, Any]) -> None:
    ref = parse_tile_path(case["path"])
    assert ref == TileRef(case["level"], case["index"], case["width"], case["entries"])
    assert ref.path == case["path"]


@pytest.mark.parametrize("case", VECTORS["malformed"], ids=_desc)
def test_malformed_path_is_refused(case: dict[str, Any]) -> None:
    with pytest.raises(InputError, match="tile path is malformed"):
        parse_tile_path(case["path"])


def test_spec_index_encoding_example() -> None:
    assert encode_index(1234067) == "x001/x234/067"  # c2sp.org/tlog-tiles, "Merkle Tree"
    assert [encode_index(n) for n in (0, 7, 999, 1000)] == ["000", "007", "999", "x001/000"]


def test_every_index_round_trips_through_its_path() -> None:
    for n in [*range(2100), 10**6 - 1, 10**6, 2**56, 2**64 - 1]:
        for ref in (TileRef(3, n), TileRef(0, n, 9, is_entries=True)):
            assert parse_tile_path(ref.path) == ref


def test_spec_tiles_of_size_70000() -> None:
    # c2sp.org/tlog-tiles, "Partial Tiles": 273 full level 0 tiles, a partial of width 112,
    # one full level 1 tile, a partial level 1 tile of width 17, a partial level 2 tile of width 1
    want = [TileRef(0, n) for n in range(273)] + [TileRef(0, 273, 112)]
    want += [TileRef(1, 0), TileRef(1, 1, 17), TileRef(2, 0, 1)]
    assert list(tiles_for_size(70000)) == want


def test_spec_tiles_of_size_256() -> None:
    # "a tree of size 256 will be represented by a full level 0 tile and a partial level 1
    # tile of width 1"
    assert list(tiles_for_size(256)) == [TileRef(0, 0), TileRef(1, 0, 1)]


def test_tiles_of_small_sizes() -> None:
    assert list(tiles_for_size(0)) == []
    assert list(tiles_for_size(1)) == [TileRef(0, 0, 1)]
    assert list(tiles_for_size(255)) == [TileRef(0, 0, 255)]
    assert list(tiles_for_size(257)) == [TileRef(0, 0), TileRef(0, 1, 1), TileRef(1, 0, 1)]
    assert list(tiles_for_size(3, entries=True)) == [TileRef(0, 0, 3), TileRef(0, 0, 3, True)]


def test_availability_follows_the_right_edge() -> None:
    size = 70000
    for ref in tiles_for_size(size, entries=True):
        assert tile_available(ref, size)
    assert not tile_available(TileRef(0, 273), size)  # full tile not complete yet
    assert not tile_available(TileRef(0, 273, 113), size)  # wider than the edge
    assert not tile_available(TileRef(1, 1), size)
    assert not tile_available(TileRef(1, 1, 18), size)
    assert not tile_available(TileRef(2, 0, 2), size)
    assert not tile_available(TileRef(3, 0, 1), size)
    assert not tile_available(TileRef(0, 274, 1), size)
    # a partial tile of an earlier checkpoint's edge is a prefix of the tree: still served
    assert tile_available(TileRef(0, 273, 5), size)
    assert tile_available(TileRef(1, 0, 1), size)


def _leaf(i: int) -> bytes:
    return hashlib.sha256(b"\x00" + b"%d" % i).digest()


def test_tile_bytes_reads_the_tile_nodes_at_its_merkle_level() -> None:
    calls: list[tuple[int, int, int]] = []

    def read(level: int, start: int, end: int) -> list[bytes]:
        calls.append((level, start, end))
        return [_leaf(i) for i in range(start, end)]

    assert tile_bytes(TileRef(0, 1, 3), 300, read) == _leaf(256) + _leaf(257) + _leaf(258)
    assert len(tile_bytes(TileRef(1, 2, 4), 3 << 16, read)) == 4 * 32
    assert calls == [(0, 256, 259), (8, 512, 516)]


def test_tile_bytes_refuses_a_tile_the_tree_does_not_hold() -> None:
    with pytest.raises(ValueError, match="not in a tree of size `255`"):
        tile_bytes(TileRef(0, 0), 255, lambda lv, a, b: [_leaf(i) for i in range(a, b)])
    with pytest.raises(ValueError, match="entry bundle"):
        tile_bytes(TileRef(0, 0, 1, True), 255, lambda lv, a, b: [])


@pytest.mark.parametrize(
    "answer",
    [[b"\x00" * 32], [b"\x00" * 32] * 3, [b"\x00" * 31, b"\x00" * 32]],
    ids=["too-few", "too-many", "short-hash"],
)
def test_tile_bytes_refuses_a_wrong_read(answer: list[bytes]) -> None:
    with pytest.raises(IntegrityError):
        tile_bytes(TileRef(0, 0, 2), 2, lambda lv, a, b: answer)


def test_entry_bundle_is_uint16_length_prefixed() -> None:
    assert encode_entry_bundle([b"", b"ab", b"\x00" * 300]) == (
        b"\x00\x00" + b"\x00\x02ab" + b"\x01\x2c" + b"\x00" * 300
    )
    assert encode_entry_bundle([b"x" * MAX_ENTRY_BYTES])[:2] == b"\xff\xff"


def test_entry_over_65535_bytes_is_refused_not_truncated() -> None:
    with pytest.raises(EntryTooLargeError, match="entry `257` is `65536` bytes") as err:
        encode_entry_bundle([b"a", b"b" * (MAX_ENTRY_BYTES + 1)], first=256)
    assert (err.value.index, err.value.size) == (257, MAX_ENTRY_BYTES + 1)


def test_bundle_bytes_reads_the_bundle_entries() -> None:
    entries = [b"%d" % i for i in range(600)]
    data = bundle_bytes(TileRef(0, 2, 3, True), 515, lambda a, b: entries[a:b])
    assert data == b"\x00\x03512\x00\x03513\x00\x03514"
    with pytest.raises(ValueError, match="not in a tree"):
        bundle_bytes(TileRef(0, 2, 4, True), 515, lambda a, b: entries[a:b])
    with pytest.raises(IntegrityError, match="expected `3` entries"):
        bundle_bytes(TileRef(0, 2, 3, True), 515, lambda a, b: entries[a : b - 1])


def test_tile_ref_refuses_out_of_range_fields() -> None:
    for bad in ((64, 0, 256), (0, -1, 256), (0, 2**64, 256), (0, 0, 0), (0, 0, 257)):
        with pytest.raises(InputError):
            TileRef(*bad)
    with pytest.raises(InputError):
        TileRef(1, 0, 256, is_entries=True)
    with pytest.raises(TypeError):
        TileRef(True, 0)  # a bool is not a level
