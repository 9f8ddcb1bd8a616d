"""The read plane serves SOP's signed log as C2SP tlog-tiles an outside client can check alone.

``tiles_client`` is written from the specs, without SOP's code: it recomputes
the checkpoint's root from the served tiles and every entry's leaf hash.
"""

from __future__ import annotations

import threading
import warnings
from collections.abc import Iterator, Sequence

import pytest
from starlette.exceptions import StarletteDeprecationWarning
from tiles_client import TilesClient, tile_path, verify_log

from sop_verified.errors import SOPError, StorageError
from sop_verified.nexus.sop import SOP
from sop_verified.server.app import plane
from sop_verified.server.log_source import LogTileSource, SignedSize, StoredLogTiles
from sop_verified.server.read_plane import (
    FULL_TILE_CACHE,
    PARTIAL_TILE_CACHE,
    TileCache,
    log_routes,
    sop_source,
)
from sop_verified.storage.memory_backend import MemoryBackend
from sop_verified.tools.c2sp_tiles import MAX_ENTRY_BYTES, TileRef
from sop_verified.tools.signed_note import Signer, generate
from sop_verified.tools.tlog import TransparencyLog

with warnings.catch_warnings():  # starlette asks for httpx2; httpx is what is installed
    warnings.simplefilter("ignore", StarletteDeprecationWarning)
    from starlette.testclient import TestClient

ORIGIN = "example.test/log"
NOW = 1_800_000_000


def _serve(source: LogTileSource, cache: TileCache | None = None) -> TestClient:
    # the plane as `sop serve` builds it: problem+json for every error, 500s included
    return TestClient(plane(list(log_routes(source, cache=cache))), raise_server_exceptions=False)


def _memory_log() -> tuple[TransparencyLog, StoredLogTiles, str]:
    store = MemoryBackend().log_store
    skey, vkey = generate(ORIGIN)
    log = TransparencyLog(store, origin=ORIGIN, signer=Signer.from_string(skey))
    return log, StoredLogTiles(log, store), vkey


def _deny(i: int) -> dict[str, str]:  # no capability covers it: a logged DENY
    return {"request_id": f"r-{i}", "principal": "drac", "action": "artifact.read", "resource": "a"}


@pytest.fixture(scope="module")
def booted(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[SOP, str]]:
    data = tmp_path_factory.mktemp("tiles") / "data"
    SOP.init(data)
    sop = SOP.boot(data, now=lambda: NOW)
    for i in range(600):
        sop.submit(_deny(i))
    vkey = (data / "keys" / "checkpoint.vkey").read_text().strip()
    yield sop, vkey
    sop.close()


def test_sop_log_checks_out_from_its_tiles_alone(booted: tuple[SOP, str]) -> None:
    sop, vkey = booted
    with _serve(sop_source(sop)) as http:
        client = TilesClient(http)
        cp = verify_log(client, vkey)
    assert cp.origin == sop.log.origin and cp.size == sop.log.size >= 600
    assert cp.root == sop.log.root()
    full, width = divmod(cp.size, 256)  # >= 600 entries: full tiles, partials at two levels
    edge = [f"tile/0/{full:03d}.p/{width}", f"tile/entries/{full:03d}.p/{width}"] if width else []
    want = {"tile/0/000", "tile/0/001", "tile/entries/000", f"tile/1/000.p/{full}", *edge}
    assert want <= set(client.fetched)


def test_a_client_sees_its_checkpoints_tree_after_the_log_grew(booted: tuple[SOP, str]) -> None:
    # the log grows between the client's checkpoint and its tiles: the tree it fetched must
    # still check out (its partial tiles stay served; nothing beyond its size is needed)
    sop, vkey = booted

    class GrowAfterCheckpoint:
        def __init__(self, http: TestClient) -> None:
            self.http = http

        def get(self, url: str) -> object:
            got = self.http.get(url)
            if url.endswith("/checkpoint"):
                for i in range(37):
                    sop.submit(_deny(20_000 + sop.log.size + i))
            return got

    with _serve(sop_source(sop)) as http:
        cp = verify_log(TilesClient(GrowAfterCheckpoint(http)), vkey)
    assert sop.log.size >= cp.size + 37


def test_tiles_stay_consistent_while_sop_appends_in_another_thread(
    booted: tuple[SOP, str],
) -> None:
    sop, vkey = booted
    start = sop.log.size
    stop = threading.Event()

    def append() -> None:
        i = 10_000
        while True:
            sop.submit(_deny(i))
            i += 1
            if stop.is_set():
                return

    writer = threading.Thread(target=append)
    writer.start()
    try:
        with _serve(sop_source(sop)) as http:
            for _ in range(3):
                verify_log(TilesClient(http), vkey)
    finally:
        stop.set()
        writer.join()
    assert sop.log.size > start
    with _serve(sop_source(sop)) as http:
        assert verify_log(TilesClient(http), vkey).size == sop.log.size


def test_memory_log_checks_out_at_the_tile_boundaries() -> None:
    log, source, vkey = _memory_log()
    with _serve(source) as http:
        for size in (1, 255, 256, 257, 65_535, 65_536, 65_537, 70_000):
            log.append_many([b"entry %d" % i for i in range(log.size, size)])
            cp = verify_log(TilesClient(http), vkey)
            assert (cp.size, cp.root) == (size, log.root())


def test_checkpoint_is_the_latest_signed_note_never_cached() -> None:
    log, source, _ = _memory_log()
    log.append(b"one")
    with _serve(source) as http:
        got = http.get("/log/checkpoint")
    assert got.status_code == 200 and got.text == log.checkpoint_note
    assert got.headers["content-type"] == "text/plain; charset=utf-8"
    assert got.headers["cache-control"] == "no-cache"


def test_full_tiles_are_immutable_and_partials_short_lived() -> None:
    log, source, _ = _memory_log()
    log.append_many([b"%d" % i for i in range(300)])
    with _serve(source) as http:
        for path in ("tile/0/000", "tile/entries/000"):
            assert http.get(f"/log/{path}").headers["cache-control"] == FULL_TILE_CACHE
        for path in ("tile/0/001.p/44", "tile/1/000.p/1", "tile/entries/001.p/44"):
            got = http.get(f"/log/{path}")
            assert got.status_code == 200
            assert got.headers["cache-control"] == PARTIAL_TILE_CACHE
            assert got.headers["content-type"] == "application/octet-stream"


@pytest.mark.parametrize(
    "path",
    [
        "tile/0/001",  # full tile not complete yet
        "tile/0/001.p/45",  # wider than the right edge
        "tile/0/002.p/1",  # beyond the tree
        "tile/1/000",
        "tile/1/000.p/2",
        "tile/2/000.p/1",
        "tile/8/000.p/1",  # a level no tree of 2**64 leaves reaches
        "tile/entries/001",
        "tile/entries/001.p/45",
    ],
)
def test_a_tile_the_signed_tree_does_not_hold_is_404(path: str) -> None:
    log, source, _ = _memory_log()
    log.append_many([b"%d" % i for i in range(300)])
    with _serve(source) as http:
        got = http.get(f"/log/{path}")
    assert got.status_code == 404
    assert got.headers["content-type"] == "application/problem+json"
    assert got.json()["status"] == 404


def test_tiles_follow_the_served_checkpoint_not_the_store() -> None:
    # entries durable in the store but not yet under the served checkpoint are not served
    log, store_source, _ = _memory_log()
    log.append_many([b"%d" % i for i in range(256)])

    class Behind:  # serves an older checkpoint than the store holds
        def __init__(self, latest: SignedSize) -> None:
            self._latest = latest

        def latest(self) -> SignedSize:
            return self._latest

        def read_nodes(self, size: int, level: int, start: int, end: int) -> Sequence[bytes]:
            return store_source.read_nodes(size, level, start, end)

        def read_entries(self, start: int, end: int) -> Sequence[bytes]:
            return store_source.read_entries(start, end)

    log.append(b"first")
    held = store_source.latest()
    assert held is not None and held[0] == 257
    log.append_many([b"more"] * 300)
    with _serve(Behind(held)) as http:
        assert http.get("/log/tile/0/001.p/1").status_code == 200
        assert http.get("/log/tile/0/001.p/2").status_code == 404
        assert http.get("/log/tile/0/001").status_code == 404
        assert http.get("/log/checkpoint").text == held[1]


def test_an_earlier_checkpoints_partial_tile_is_a_prefix_of_the_later_one() -> None:
    log, source, _ = _memory_log()
    log.append_many([b"%d" % i for i in range(300)])
    with _serve(source) as http:
        early = http.get("/log/tile/0/001.p/44").content
        early_bundle = http.get("/log/tile/entries/001.p/44").content
        log.append_many([b"%d" % i for i in range(300, 700)])
        assert http.get("/log/tile/0/001.p/44").content == early
        assert http.get("/log/tile/0/001").content[: len(early)] == early
        assert http.get("/log/tile/entries/001").content.startswith(early_bundle)


@pytest.mark.parametrize(
    "path", ["tile/00/000", "tile/0/5", "tile/0/x000/005", "tile/0/000.p/256", "tile/0/000.p/0"]
)
def test_a_malformed_path_is_400_problem_json(path: str) -> None:
    _, source, _ = _memory_log()
    with _serve(source) as http:
        got = http.get(f"/log/{path}")
    assert got.status_code == 400
    assert got.headers["content-type"] == "application/problem+json"
    body = got.json()
    assert {"type", "title", "status", "detail"} <= set(body)
    assert body["status"] == 400 and body["code"] == "bad_tile_path"
    assert "tile path is malformed" in body["detail"]


def test_an_entry_too_long_for_a_bundle_is_refused_never_truncated() -> None:
    log, source, vkey = _memory_log()
    log.append_many([b"small", b"x" * (MAX_ENTRY_BYTES + 1), b"after"])
    with _serve(source) as http:
        got = http.get("/log/tile/entries/000.p/3")
        assert got.status_code == 501
        assert "entry `1` is `65536` bytes" in got.json()["detail"]
        assert http.get("/log/tile/entries/000.p/1").status_code == 200  # before it: fine
        client = TilesClient(http)
        cp = client.checkpoint(vkey)
        assert len(client.hashes(0, 0, cp.size)) == 3  # the tree itself is still served


def test_no_checkpoint_is_404() -> None:
    _, source, _ = _memory_log()
    with _serve(source) as http:
        assert http.get("/log/checkpoint").status_code == 404
        assert http.get("/log/tile/0/000.p/1").status_code == 404


def test_before_boot_finished_there_is_no_checkpoint() -> None:
    class Unbooted:  # SOP whose boot stopped: its services raise
        @property
        def log(self) -> TransparencyLog:
            raise SOPError("SOP is `FAILED`; boot did not finish")

    with _serve(sop_source(Unbooted())) as http:  # type: ignore[arg-type]  # a stand-in SOP
        got = http.get("/log/checkpoint")
        assert got.status_code == 404 and got.json()["code"] == "no_checkpoint"
        assert http.get("/log/tile/0/000.p/1").status_code == 404


def test_a_storage_failure_is_500_problem_json() -> None:
    log, source, _ = _memory_log()
    log.append(b"one")

    class Failing(StoredLogTiles):
        def read_nodes(self, size: int, level: int, start: int, end: int) -> list[bytes]:
            raise StorageError("disk on fire")

    failing = Failing.__new__(Failing)
    failing.__dict__.update(source.__dict__)
    with _serve(failing) as http:
        got = http.get("/log/tile/0/000.p/1")
    assert got.status_code == 500 and got.json()["status"] == 500
    assert got.headers["content-type"] == "application/problem+json"
    assert "disk on fire" not in got.text  # internals stay in the server's log


def test_full_tiles_are_cached_partials_are_not() -> None:
    log, source, _ = _memory_log()
    log.append_many([b"%d" % i for i in range(300)])
    reads: list[tuple[int, int, int]] = []

    class Counting(StoredLogTiles):
        def read_nodes(self, size: int, level: int, start: int, end: int) -> list[bytes]:
            reads.append((level, start, end))
            return super().read_nodes(size, level, start, end)

    counting = Counting.__new__(Counting)
    counting.__dict__.update(source.__dict__)
    cache = TileCache()
    with _serve(counting, cache) as http:
        first = [http.get("/log/tile/0/000").content for _ in range(3)]
        partial = [http.get("/log/tile/0/001.p/44").content for _ in range(2)]
    assert first[0] == first[1] == first[2] and partial[0] == partial[1]
    assert reads == [(0, 0, 256), (0, 256, 300), (0, 256, 300)]
    assert len(cache) == 1


def test_tile_cache_stays_within_its_budget() -> None:
    cache = TileCache(max_bytes=3 * 8192)
    for n in range(10):
        cache.put(TileRef(0, n), bytes(8192))
    assert len(cache) == 3
    assert cache.get(TileRef(0, 0)) is None and cache.get(TileRef(0, 9)) is not None
    with pytest.raises(ValueError, match="partial"):
        cache.put(TileRef(0, 0, 5), bytes(160))


def test_client_paths_are_the_servers_paths() -> None:
    # the client's own encoder agrees with the spec's example and with the server's parser
    assert tile_path(0, 1234067, 256) == "tile/0/x001/x234/067"
    assert tile_path("entries", 1234, 5) == "tile/entries/x001/234.p/5"
