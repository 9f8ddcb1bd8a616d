"""StoredLogTiles reads every node of every fourth level as a naive RFC 6962 tree computes it."""

from __future__ import annotations

import hashlib

import pytest

from sop_verified.errors import IntegrityError
from sop_verified.server.log_source import StoredLogTiles
from sop_verified.storage.memory_backend import MemoryBackend
from sop_verified.tools.signed_note import Signer, generate
from sop_verified.tools.tlog import TransparencyLog

ORIGIN = "example.test/log"


def _levels(payloads: list[bytes]) -> list[list[bytes]]:
    """Every complete node, level by level, straight from RFC 6962 2.1."""
    row = [hashlib.sha256(b"\x00" + p).digest() for p in payloads]
    levels = [row]
    while len(row) > 1:
        row = [
            hashlib.sha256(b"\x01" + row[i] + row[i + 1]).digest()
            for i in range(0, len(row) - 1, 2)
        ]
        levels.append(row)
    return levels


def _log() -> tuple[TransparencyLog, StoredLogTiles]:
    store = MemoryBackend().log_store
    log = TransparencyLog(store, origin=ORIGIN, signer=Signer.from_string(generate(ORIGIN)[0]))
    return log, StoredLogTiles(log, store)


def test_nodes_match_a_naive_tree_at_every_size_and_edge() -> None:
    log, source = _log()
    payloads: list[bytes] = []
    for batch in (1, 14, 1, 240, 1, 3000, 61_000, 1, 4275):  # edges inside and on tile bounds
        payloads += [b"entry %d" % (len(payloads) + i) for i in range(batch)]
        log.append_many(payloads[-batch:])
        size = len(payloads)
        levels = _levels(payloads)
        assert source.latest() == (size, log.checkpoint_note)
        for level in (0, 4, 8, 12, 16):
            if level >= len(levels):
                break
            row = levels[level]
            assert source.read_nodes(size, level, 0, len(row)) == row, (size, level)
            for start in {0, len(row) // 2, max(len(row) - 17, 0), len(row) - 1}:
                got = source.read_nodes(size, level, start, len(row))
                assert got == row[start:], (size, level, start)
        assert source.read_entries(max(size - 3, 0), size) == payloads[-3:]


def test_nodes_outside_the_tree_are_refused() -> None:
    log, source = _log()
    log.append_many([b"%d" % i for i in range(300)])
    with pytest.raises(ValueError, match="not in tree"):
        source.read_nodes(300, 0, 0, 301)
    with pytest.raises(ValueError, match="not in tree"):
        source.read_nodes(300, 8, 0, 2)  # the second level-8 node is not complete
    with pytest.raises(ValueError, match="not in tree"):
        source.read_nodes(300, 3, 0, 1)  # not a level the store keeps


def test_a_missing_stored_tile_is_an_integrity_error() -> None:
    store = MemoryBackend().log_store
    log = TransparencyLog(store, origin=ORIGIN, signer=Signer.from_string(generate(ORIGIN)[0]))
    log.append_many([b"%d" % i for i in range(512)])

    class Holed:
        def read_tiles(self, keys: list[int]) -> dict[int, bytes]:
            return dict(list(store.read_tiles(keys).items())[1:])

        def read_entries(self, start: int, end: int) -> list[tuple[int, bytes, bytes]]:
            return store.read_entries(start, end)

    source = StoredLogTiles(log, Holed())  # type: ignore[arg-type]  # only the reads are used
    with pytest.raises(IntegrityError, match="stored tile"):
        source.read_nodes(512, 0, 0, 256)


def test_an_empty_log_has_no_checkpoint() -> None:
    _, source = _log()
    assert source.latest() is None
