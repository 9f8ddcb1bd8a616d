"""The log's read plane: the signed checkpoint and C2SP tlog-tiles over HTTP.

``GET /log/checkpoint`` serves the latest signed checkpoint note (with witnesses
configured, the latest one they cosigned, with its cosignatures: never a newer
one they have not; :mod:`sop_verified.nexus.witness_publisher`);
``GET /log/tile/<L>/<N>[.p/<W>]`` and ``GET /log/tile/entries/<N>[.p/<W>]``
serve Merkle tiles and entry bundles (c2sp.org/tlog-tiles) of the tree that
checkpoint signs, so a client that fetches the checkpoint, then its tiles,
sees one tree. A tile the served tree does not hold is 404 (a full tile not
yet complete, a partial one wider than the right edge); a partial tile of an
earlier checkpoint's edge stays served, since its hashes never change (spec:
"Logs MUST serve partial tiles corresponding to tree sizes for which a
checkpoint was produced"). A malformed path is 400.

Full tiles and bundles never change: they are cached in memory (bounded) and
served as immutable. Everything else reads storage in a worker thread.
Nothing here decides anything: it reads what the log signed. Errors are the
planes' RFC 9457 problems (:mod:`.problems`); a failed read raises through to
the plane's handler (500, logged, no internals in the body).
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from typing import TYPE_CHECKING

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from sop_verified.errors import EntryTooLargeError, InputError, SOPError
from sop_verified.nexus.witness_publisher import published_checkpoint
from sop_verified.server.log_source import (
    LogTileSource,
    SignedSize,
    StoredLogTiles,
    TailRefresh,
)
from sop_verified.server.problems import problem
from sop_verified.tools.c2sp_tiles import (
    TileRef,
    bundle_bytes,
    parse_tile_path,
    tile_available,
    tile_bytes,
)

if TYPE_CHECKING:
    from sop_verified.nexus.sop import SOP

__all__ = [
    "CHECKPOINT_CACHE",
    "FULL_TILE_CACHE",
    "PARTIAL_TILE_CACHE",
    "TileCache",
    "log_routes",
    "sop_source",
]

CHECKPOINT_CACHE = "no-cache"
"""The checkpoint changes with every batch (spec: no caching beyond a few seconds)."""

FULL_TILE_CACHE = "public, max-age=31536000, immutable"
"""A full tile or bundle never changes."""

PARTIAL_TILE_CACHE = "public, max-age=60"
"""A partial tile does not change either, but is replaced by the full one: kept briefly."""

DEFAULT_CACHE_BYTES = 32 << 20
"""Memory for cached full tiles and bundles (4,096 hash tiles of 8 KiB)."""

_OCTETS = "application/octet-stream"


class TileCache:
    """Full tiles and bundles by tile, least recently used first out, within a byte budget."""

    def __init__(self, max_bytes: int = DEFAULT_CACHE_BYTES) -> None:
        """Keep at most ``max_bytes`` of tiles.

        Args:
            max_bytes: The budget; 0 caches nothing.
        """
        self._max = max_bytes
        self._used = 0
        self._tiles: OrderedDict[TileRef, bytes] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, ref: TileRef) -> bytes | None:
        """Return the cached tile, or None."""
        with self._lock:
            data = self._tiles.get(ref)
            if data is not None:
                self._tiles.move_to_end(ref)
            return data

    def put(self, ref: TileRef, data: bytes) -> None:
        """Cache a full tile or bundle (a partial one is refused: it is replaced later).

        Raises:
            ValueError: ``ref`` is partial.
        """
        if ref.is_partial:
            raise ValueError(f"partial tile `{ref.path}` is not cached")
        if len(data) > self._max:
            return
        with self._lock:
            old = self._tiles.pop(ref, None)
            self._used += len(data) - (len(old) if old is not None else 0)
            self._tiles[ref] = data
            while self._used > self._max:
                _, dropped = self._tiles.popitem(last=False)
                self._used -= len(dropped)

    def __len__(self) -> int:
        """The number of cached tiles."""
        return len(self._tiles)


class _Absent(Exception):  # noqa: N818 - a control-flow signal inside this module, never raised out
    """The served tree does not hold the tile (404)."""


def log_routes(source: LogTileSource, *, cache: TileCache | None = None) -> list[Route]:
    """Return the read plane's routes, to mount under the server's app.

    Args:
        source: Where the checkpoint, node hashes and entries come from.
        cache: The cache of full tiles (default: :data:`DEFAULT_CACHE_BYTES`).

    Returns:
        ``GET /log/checkpoint`` and ``GET /log/tile/{path}`` (HEAD too).
    """
    plane = _ReadPlane(source, TileCache() if cache is None else cache)
    return [
        Route("/log/checkpoint", plane.checkpoint, methods=["GET"], name="log_checkpoint"),
        Route("/log/tile/{path:path}", plane.tile, methods=["GET"], name="log_tile"),
    ]


def sop_source(sop: SOP) -> LogTileSource:
    """Return the tile source of SOP: its log and the log's store, once boot finished.

    Until SOP's boot finished (or if it stopped) the source has no checkpoint,
    so the read plane answers 404 while health and metrics still answer.

    Args:
        sop: The SOP instance (its ``log`` and ``store``).

    Returns:
        The source to give :func:`log_routes`.
    """
    return _SOPTiles(sop)


class _SOPTiles:
    """A :class:`StoredLogTiles` over ``sop.log``, made the first time SOP has a log."""

    def __init__(self, sop: SOP) -> None:
        self._sop = sop
        self._tiles: StoredLogTiles | None = None
        self._refresh = TailRefresh(lambda: sop.log)  # other replicas' entries, within ~1 s

    def _stored(self) -> StoredLogTiles | None:
        if self._tiles is None:
            try:
                self._tiles = StoredLogTiles(self._sop.log, self._sop.store.log_store)
            except SOPError:  # boot did not finish: no log to serve yet
                return None
        return self._tiles

    def latest(self) -> SignedSize | None:
        """The published checkpoint: with witnesses, the latest one they cosigned (never newer)."""
        if self._stored() is None:
            return None
        self._refresh()
        published = published_checkpoint(self._sop.log, self._sop.witnesses)
        return None if published is None else (published.size, published.note)

    def read_nodes(self, size: int, level: int, start: int, end: int) -> list[bytes]:
        return self._require().read_nodes(size, level, start, end)

    def read_entries(self, start: int, end: int) -> list[bytes]:
        return self._require().read_entries(start, end)

    def _require(self) -> StoredLogTiles:
        tiles = self._stored()
        if tiles is None:  # only after latest() gave a checkpoint, so never
            raise SOPError("SOP has no log to read")
        return tiles


class _ReadPlane:
    def __init__(self, source: LogTileSource, cache: TileCache) -> None:
        self._source = source
        self._cache = cache

    async def checkpoint(self, request: Request) -> Response:
        latest = await run_in_threadpool(self._source.latest)
        if latest is None:
            detail = (
                "the log has no published checkpoint yet: none signed, or, with witnesses"
                " configured, none cosigned by enough of them"
            )
            return problem(404, "no_checkpoint", detail)
        return Response(
            latest[1],
            media_type="text/plain; charset=utf-8",
            headers={"Cache-Control": CHECKPOINT_CACHE},
        )

    async def tile(self, request: Request) -> Response:
        path = "tile/" + str(request.path_params["path"])
        try:
            ref = parse_tile_path(path)
        except InputError as exc:
            return problem(400, "bad_tile_path", str(exc))
        data = self._cache.get(ref)
        if data is None:
            try:
                data = await run_in_threadpool(self._read, ref)
            except _Absent:
                detail = f"`{ref.path}` is not in the tree of the latest checkpoint"
                return problem(404, "not_in_tree", detail)
            except EntryTooLargeError as exc:  # spec: a bundle's lengths are uint16
                return problem(501, "entry_too_large", f"`{ref.path}` cannot be served: {exc}")
        cache_control = PARTIAL_TILE_CACHE if ref.is_partial else FULL_TILE_CACHE
        return Response(data, media_type=_OCTETS, headers={"Cache-Control": cache_control})

    def _read(self, ref: TileRef) -> bytes:
        """Build ``ref`` from the tree of the latest checkpoint, read once (runs in a thread)."""
        latest = self._source.latest()
        if latest is None or not tile_available(ref, latest[0]):
            raise _Absent
        size = latest[0]
        if ref.is_entries:
            data = bundle_bytes(ref, size, self._source.read_entries)
        else:
            data = tile_bytes(ref, size, lambda lv, a, b: self._source.read_nodes(size, lv, a, b))
        if not ref.is_partial:
            self._cache.put(ref, data)
        return data
