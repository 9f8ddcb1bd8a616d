"""C2SP tlog-tiles (c2sp.org/tlog-tiles): tile paths, a tree's tiles, tile and bundle bytes.

A tiled log serves its Merkle tree as *tiles* of 256 consecutive hashes at
every eighth level: tile ``N`` of level ``L`` holds the hashes of the tree
nodes at Merkle level ``8 * L`` with indexes ``256 * N`` to ``256 * N + 255``
(level 0: the RFC 6962 leaf hashes; each hash above is the root of a full
tile below). A tile is *full* with 256 hashes and never changes; at the right
edge of a tree of size ``s`` the tile of level ``L`` is *partial*, with
``floor(s / 256**L) mod 256`` hashes, served at ``.p/W``. The entries
themselves are served as *entry bundles*, the same way as level 0: each
entry a big-endian uint16 length, then its bytes.

This module is pure: it parses and writes tile paths, lists the tiles a tree
size has, says whether a tree holds a tile, and builds a tile's or a
bundle's bytes from callbacks that read node hashes and entries. SOP's own
storage tiles (:mod:`sop_verified.tools.tlog_tiles`, four levels high) are
another layout; the server reads nodes through them.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass

from sop_verified.errors import EntryTooLargeError, InputError, IntegrityError
from sop_verified.tools.merkle import HASH_SIZE, MAX_TREE_SIZE

__all__ = [
    "MAX_ENTRY_BYTES",
    "MAX_LEVEL",
    "TILE_HEIGHT",
    "TILE_WIDTH",
    "EntryReader",
    "NodeReader",
    "TileRef",
    "bundle_bytes",
    "encode_entry_bundle",
    "encode_index",
    "parse_tile_path",
    "tile_available",
    "tile_bytes",
    "tiles_for_size",
]

TILE_HEIGHT = 8
"""Merkle levels a tile spans: a tile of level ``L`` holds nodes of Merkle level ``8 * L``."""

TILE_WIDTH = 1 << TILE_HEIGHT
"""Hashes in a full tile (and entries in a full bundle): 256."""

MAX_LEVEL = 63
"""The largest tile level a path may name (spec: "between 0 and 63")."""

MAX_ENTRY_BYTES = 0xFFFF
"""The largest entry a bundle can hold: its length is a big-endian uint16."""

MAX_PATH_CHARS = 64
"""No well-formed path is longer (``tile/entries/`` and seven index groups come to 41)."""

NodeReader = Callable[[int, int, int], Sequence[bytes]]
"""``(merkle level, start, end)`` -> the hashes of the complete nodes ``start .. end - 1``."""

EntryReader = Callable[[int, int], Sequence[bytes]]
"""``(start, end)`` -> the entries ``start .. end - 1`` of the log."""

_LEVEL = re.compile(r"0|[1-9][0-9]?", re.ASCII)
_WIDTH = re.compile(r"[1-9][0-9]{0,2}", re.ASCII)
_INNER_GROUP = re.compile(r"x[0-9]{3}", re.ASCII)
_LAST_GROUP = re.compile(r"[0-9]{3}", re.ASCII)
_ACCEPTED = (
    "`tile/<L>/<N>[.p/<W>]` or `tile/entries/<N>[.p/<W>]`: L in `[0, 63]` and W in"
    " `[1, 255]` without leading zeros, N in 3-digit groups, `x` before all but the last"
    " and no leading `x000`"
)


@dataclass(frozen=True, slots=True)
class TileRef:
    """One tile (or entry bundle) of a tiled log: level, index, width.

    ``width`` is 256 for a full tile and 1..255 for a partial one. An entry
    bundle (``is_entries``) has level 0.
    """

    level: int
    index: int
    width: int = TILE_WIDTH
    is_entries: bool = False

    def __post_init__(self) -> None:
        """Check every field; a TileRef that exists names a tile the spec allows.

        Raises:
            InputError: a field is out of range.
            TypeError: a field has the wrong type.
        """
        for name in ("level", "index", "width"):
            value = getattr(self, name)
            if type(value) is not int:
                raise TypeError(f"tile {name} must be an int, not `{type(value).__name__}`")
        if type(self.is_entries) is not bool:
            raise TypeError("`is_entries` must be a bool")
        if not 0 <= self.level <= MAX_LEVEL or (self.is_entries and self.level):
            raise InputError(
                f"tile level `{self.level}` is out of range",
                accepted=f"`[0, {MAX_LEVEL}]`, and 0 for an entry bundle",
            )
        if not 0 <= self.index <= MAX_TREE_SIZE:
            raise InputError(f"tile index `{self.index}` is out of range", accepted="`[0, 2**64)`")
        if not 1 <= self.width <= TILE_WIDTH:
            raise InputError(
                f"tile width `{self.width}` is out of range", accepted=f"`[1, {TILE_WIDTH}]`"
            )

    @property
    def is_partial(self) -> bool:
        """Whether the tile has fewer than 256 hashes (entries)."""
        return self.width < TILE_WIDTH

    @property
    def merkle_level(self) -> int:
        """The Merkle level of the nodes this tile holds (0 for a bundle: the leaves)."""
        return TILE_HEIGHT * self.level

    @property
    def tree_size(self) -> int:
        """The smallest tree size that holds every node of this tile."""
        return (self.index * TILE_WIDTH + self.width) << self.merkle_level

    @property
    def path(self) -> str:
        """The tile's path, ``tile/<L>/<N>[.p/<W>]`` or ``tile/entries/<N>[.p/<W>]``."""
        level = "entries" if self.is_entries else str(self.level)
        partial = f".p/{self.width}" if self.is_partial else ""
        return f"tile/{level}/{encode_index(self.index)}{partial}"


def encode_index(index: int) -> str:
    """Return a tile index as path elements: 3-digit groups, ``x`` before all but the last.

    Args:
        index: The tile index, ``>= 0``.

    Returns:
        For example ``x001/x234/067`` for 1234067, and ``000`` for 0.

    Raises:
        ValueError: ``index`` is negative.
    """
    if index < 0:
        raise ValueError(f"tile index `{index}` is negative")
    digits = str(index)
    digits = "0" * (-len(digits) % 3) + digits
    groups = [digits[i : i + 3] for i in range(0, len(digits), 3)]
    return "/".join([*(f"x{g}" for g in groups[:-1]), groups[-1]])


def _malformed(path: str, what: str) -> InputError:
    return InputError(
        f"tile path is malformed: {what}", where=path[:MAX_PATH_CHARS], accepted=_ACCEPTED
    )


def parse_tile_path(path: str) -> TileRef:
    """Parse a tile or entry-bundle path; only the canonical spelling is accepted.

    A path parses only if :attr:`TileRef.path` writes it back unchanged: no
    leading zeros in the level or the width, exactly three digits per index
    group, ``x`` on every group but the last, no leading ``x000`` group.

    Args:
        path: For example ``tile/0/x001/234.p/5`` or ``tile/entries/000`` (untrusted).

    Returns:
        The tile.

    Raises:
        InputError: ``path`` is not a well-formed tile path.
    """
    if not isinstance(path, str) or len(path) > MAX_PATH_CHARS:
        raise _malformed(str(path), f"not a string of at most `{MAX_PATH_CHARS}` characters")
    parts = path.split("/")
    if len(parts) < 3 or parts[0] != "tile":
        raise _malformed(path, "it must start with `tile/<L>/` or `tile/entries/`")
    is_entries = parts[1] == "entries"
    if not is_entries and not _LEVEL.fullmatch(parts[1]):
        raise _malformed(path, f"level `{parts[1]}` is not a decimal without leading zeros")
    groups, width = parts[2:], TILE_WIDTH
    if len(groups) >= 2 and groups[-2].endswith(".p"):
        if not _WIDTH.fullmatch(groups[-1]) or int(groups[-1]) >= TILE_WIDTH:
            raise _malformed(path, f"partial width `{groups[-1]}` is not in `[1, 255]`")
        width = int(groups[-1])
        groups = [*groups[:-2], groups[-2][:-2]]
    if len(groups) > 7 or groups[0] == "x000":
        raise _malformed(path, "the index has leading zero groups or more than 7 groups")
    if not all(_INNER_GROUP.fullmatch(g) for g in groups[:-1]) or not _LAST_GROUP.fullmatch(
        groups[-1]
    ):
        raise _malformed(path, "the index must be 3-digit groups, `x` before all but the last")
    index = int("".join(g.removeprefix("x") for g in groups))
    try:
        return TileRef(0 if is_entries else int(parts[1]), index, width, is_entries)
    except InputError as exc:
        raise _malformed(path, str(exc)) from exc


def tiles_for_size(size: int, *, entries: bool = False) -> Iterator[TileRef]:
    """Yield every tile a tree of ``size`` leaves has, level by level, left to right.

    Per level ``L`` (while ``256**L <= size``): the full tiles, then the partial
    one of width ``floor(size / 256**L) mod 256`` if that is not zero (spec:
    "empty tiles MUST NOT be served").

    Args:
        size: The tree size, ``0 <= size < 2**64``.
        entries: Also yield the entry bundles (after level 0's tiles).

    Yields:
        The tiles.

    Raises:
        ValueError: ``size`` is out of range.
    """
    if not 0 <= size <= MAX_TREE_SIZE:
        raise ValueError(f"tree size `{size}` is out of range")
    level = 0
    while size >> (TILE_HEIGHT * level):
        nodes = size >> (TILE_HEIGHT * level)
        full, width = divmod(nodes, TILE_WIDTH)
        kinds = (False, True) if entries and level == 0 else (False,)
        for is_entries in kinds:
            for index in range(full):
                yield TileRef(level, index, TILE_WIDTH, is_entries)
            if width:
                yield TileRef(level, full, width, is_entries)
        level += 1


def tile_available(ref: TileRef, size: int) -> bool:
    """Return whether a tree of ``size`` leaves holds every node (entry) of ``ref``.

    A full tile needs its last leaf in the tree. A partial tile of width ``W``
    needs its first ``W`` nodes complete: the right edge of this tree, or of
    any smaller one (spec: partial tiles of every checkpointed size are served
    until the full tile is; their content never changes).

    Args:
        ref: The tile.
        size: The tree size served.

    Returns:
        True if the tile can be built from the tree.
    """
    return ref.tree_size <= size


def _check_available(ref: TileRef, size: int) -> None:
    if not tile_available(ref, size):
        raise ValueError(f"tile `{ref.path}` is not in a tree of size `{size}`")


def tile_bytes(ref: TileRef, size: int, read_nodes: NodeReader) -> bytes:
    """Return a Merkle tree tile: its hashes, concatenated, left to right.

    Args:
        ref: A hash tile (not an entry bundle) that ``size`` holds.
        size: The tree size served.
        read_nodes: Reads the hashes of complete nodes at a Merkle level.

    Returns:
        ``32 * ref.width`` bytes.

    Raises:
        IntegrityError: ``read_nodes`` returned the wrong number of hashes or
            something that is not a 32-byte hash.
        ValueError: ``ref`` is an entry bundle, or ``size`` does not hold it.
    """
    if ref.is_entries:
        raise ValueError(f"`{ref.path}` is an entry bundle, not a hash tile")
    _check_available(ref, size)
    first = ref.index * TILE_WIDTH
    hashes = read_nodes(ref.merkle_level, first, first + ref.width)
    if len(hashes) != ref.width or any(type(h) is not bytes or len(h) != HASH_SIZE for h in hashes):
        raise IntegrityError(
            f"tile `{ref.path}`: expected `{ref.width}` {HASH_SIZE}-byte hashes, read"
            f" `{len(hashes)}` values"
        )
    return b"".join(hashes)


def encode_entry_bundle(entries: Sequence[bytes], *, first: int = 0) -> bytes:
    """Return entries as a bundle: each a big-endian uint16 length, then its bytes.

    Args:
        entries: The entries, in log order.
        first: The log index of the first entry (named in the error).

    Returns:
        The bundle's bytes.

    Raises:
        EntryTooLargeError: an entry is longer than 65535 bytes; a bundle
            cannot hold it and none is made (never a truncated entry).
        TypeError: an entry is not bytes.
    """
    out = bytearray()
    for at, entry in enumerate(entries, start=first):
        if type(entry) is not bytes:
            raise TypeError(f"log entry `{at}` must be bytes, not `{type(entry).__name__}`")
        if len(entry) > MAX_ENTRY_BYTES:
            raise EntryTooLargeError(at, len(entry), MAX_ENTRY_BYTES)
        out += len(entry).to_bytes(2, "big")
        out += entry
    return bytes(out)


def bundle_bytes(ref: TileRef, size: int, read_entries: EntryReader) -> bytes:
    """Return an entry bundle of the tree of ``size`` leaves.

    Args:
        ref: An entry bundle that ``size`` holds.
        size: The tree size served.
        read_entries: Reads log entries by index range.

    Returns:
        The bundle's bytes.

    Raises:
        EntryTooLargeError: an entry of the bundle is longer than 65535 bytes.
        IntegrityError: ``read_entries`` returned the wrong number of entries.
        ValueError: ``ref`` is a hash tile, or ``size`` does not hold it.
    """
    if not ref.is_entries:
        raise ValueError(f"`{ref.path}` is a hash tile, not an entry bundle")
    _check_available(ref, size)
    first = ref.index * TILE_WIDTH
    entries = read_entries(first, first + ref.width)
    if len(entries) != ref.width:
        raise IntegrityError(
            f"bundle `{ref.path}`: expected `{ref.width}` entries, read `{len(entries)}`"
        )
    return encode_entry_bundle(entries, first=first)
