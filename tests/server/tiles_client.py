"""A tlog-tiles client written straight from c2sp.org/tlog-tiles, RFC 6962 and c2sp.org/signed-note.

It shares no code with SOP (hashlib, base64, cryptography's Ed25519 and an
HTTP client only), so it cross-checks the read plane the way an outside
monitor would: fetch the checkpoint, fetch the tiles that tree has, check
that every full tile hashes to its entry in the tile above, recompute the
root from the tiles and compare it with the checkpoint's, and check every
entry of every bundle against its leaf hash in the level-0 tile.
"""

from __future__ import annotations

import base64
import hashlib
from dataclasses import dataclass, field
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

WIDTH = 256


def encode_index(n: int) -> str:
    """The spec's example: 1234067 -> x001/x234/067."""
    digits = f"{n:d}"
    digits = digits.zfill((len(digits) + 2) // 3 * 3)
    groups = [digits[i : i + 3] for i in range(0, len(digits), 3)]
    return "/".join(["x" + g for g in groups[:-1]] + [groups[-1]])


def tile_path(level: int | str, index: int, width: int) -> str:
    suffix = "" if width == WIDTH else f".p/{width}"
    return f"tile/{level}/{encode_index(index)}{suffix}"


def _node(left: bytes, right: bytes) -> bytes:
    return hashlib.sha256(b"\x01" + left + right).digest()


def mth_of_hashes(hashes: list[bytes]) -> bytes:
    """RFC 6962 MTH over a list of subtree hashes (a tile's hashes as the leaves)."""
    if len(hashes) == 1:
        return hashes[0]
    k = 1
    while k * 2 < len(hashes):
        k *= 2
    return _node(mth_of_hashes(hashes[:k]), mth_of_hashes(hashes[k:]))


@dataclass
class Checkpoint:
    origin: str
    size: int
    root: bytes
    note: str


@dataclass
class TilesClient:
    """``http.get(url)`` returns a response with ``status_code``, ``content`` and ``headers``."""

    http: Any
    prefix: str = "/log"
    fetched: list[str] = field(default_factory=list)

    def get(self, path: str) -> Any:
        self.fetched.append(path)
        return self.http.get(f"{self.prefix}/{path}")

    def checkpoint(self, vkey: str | None = None) -> Checkpoint:
        response = self.get("checkpoint")
        assert response.status_code == 200, response.text
        assert response.headers["content-type"] == "text/plain; charset=utf-8"
        note = response.text
        body, _, signatures = note.partition("\n\n")
        origin, size, root = body.split("\n")[:3]
        if vkey is not None:
            verify_note(body + "\n", signatures, vkey)
        return Checkpoint(origin, int(size), base64.b64decode(root), note)

    def tile(self, level: int | str, index: int, width: int) -> bytes:
        response = self.get(tile_path(level, index, width))
        assert response.status_code == 200, (tile_path(level, index, width), response.text)
        assert response.headers["content-type"] == "application/octet-stream"
        return bytes(response.content)

    def hashes(self, level: int, index: int, width: int) -> list[bytes]:
        data = self.tile(level, index, width)
        assert len(data) == 32 * width
        return [data[i : i + 32] for i in range(0, len(data), 32)]

    def bundle(self, index: int, width: int) -> list[bytes]:
        data, entries, at = self.tile("entries", index, width), [], 0
        while at < len(data):
            n = int.from_bytes(data[at : at + 2], "big")
            entries.append(data[at + 2 : at + 2 + n])
            at += 2 + n
        assert at == len(data)
        return entries


def tiles_of(size: int) -> list[tuple[int, int, int]]:
    """(level, index, width) of every tile a tree of ``size`` has (spec: "Partial Tiles")."""
    out, level = [], 0
    while WIDTH**level <= size:
        full, width = divmod(size // WIDTH**level, WIDTH)
        out += [(level, n, WIDTH) for n in range(full)]
        if width:
            out.append((level, full, width))
        level += 1
    return out


def verify_log(client: TilesClient, vkey: str | None = None) -> Checkpoint:
    """Fetch the checkpoint and everything under it; assert the whole tree checks out."""
    cp = client.checkpoint(vkey)
    tiles = {(lv, n): client.hashes(lv, n, w) for lv, n, w in tiles_of(cp.size)}
    for (level, index), hashes in tiles.items():
        if len(hashes) == WIDTH and (level + 1, index // WIDTH) in tiles:
            above = tiles[(level + 1, index // WIDTH)]
            assert mth_of_hashes(hashes) == above[index % WIDTH], (level, index)
    assert root_from_tiles(cp.size, tiles) == cp.root
    for level, index, width in tiles_of(cp.size):
        if level == 0:
            entries = client.bundle(index, width)
            assert len(entries) == width
            leaves = tiles[(0, index)]
            for entry, leaf in zip(entries, leaves, strict=True):
                assert hashlib.sha256(b"\x00" + entry).digest() == leaf
    return cp


def root_from_tiles(size: int, tiles: dict[tuple[int, int], list[bytes]]) -> bytes:
    """RFC 6962 2.1 MTH(D[0:size]), reading nodes of every eighth level from the tiles."""

    def node(level: int, index: int) -> bytes:  # the complete subtree of 2**level leaves
        if level % 8 == 0:
            return tiles[(level // 8, index // WIDTH)][index % WIDTH]
        return _node(node(level - 1, 2 * index), node(level - 1, 2 * index + 1))

    def mth(start: int, width: int) -> bytes:
        if width & (width - 1) == 0:  # start is a multiple of width here
            level = width.bit_length() - 1
            return node(level, start >> level)
        k = 1 << ((width - 1).bit_length() - 1)
        return _node(mth(start, k), mth(start + k, width - k))

    if size == 0:
        return hashlib.sha256(b"").digest()
    return mth(0, size)


def verify_note(text: str, signatures: str, vkey: str) -> None:
    """c2sp.org/signed-note: an Ed25519 line `— <name> base64(key id || signature)` by ``vkey``."""
    name, key_id_hex, key_b64 = vkey.split("+", 2)
    key = base64.b64decode(key_b64)
    assert key[0] == 0x01  # Ed25519
    key_id = hashlib.sha256(name.encode() + b"\n" + key).digest()[:4]
    assert key_id.hex() == key_id_hex
    for line in signatures.rstrip("\n").split("\n"):
        dash, signer, blob = line.split(" ")
        raw = base64.b64decode(blob)
        if dash == "\u2014" and signer == name and raw[:4] == key_id:
            Ed25519PublicKey.from_public_bytes(key[1:]).verify(raw[4:], text.encode())
            return
    raise AssertionError(f"no signature by `{name}` on the checkpoint")
