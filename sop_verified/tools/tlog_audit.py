"""The full audit of a stored log (``sop log verify``): trust nothing but one key.

:func:`audit_log` streams every entry in index order and recomputes from the
payloads alone: each leaf hash, every tile of subtree hashes, and the root at
every checkpoint size. Every checkpoint must verify under the key the chain
trusts at that point (:mod:`sop_verified.tools.key_chain`), carry exactly the
recomputed root, and be consistent with the checkpoint before it (an
RFC 9162 consistency proof, built from tiles already compared, verifies). The
log must end exactly at its latest checkpoint. Memory is ``O(log n)`` plus
one chunk of entries.

A checkpoint kept outside the store (``held``: receipts, witnesses' views;
``anchor``: the latest checkpoint SOP wrote outside the database) must be
signed by the key the chain trusts at its size and carry the recomputed root
there; one the log ends before is a cut (``truncated``, or ``anchor``).

Whatever differs is a :class:`Finding`. Some pin one entry (a leaf that
does not hash, a missing row, the first leaf under a differing tile hash);
a checkpoint that fails only says its range ``[index, end)`` holds a bad
entry. :attr:`AuditReport.first_bad_index` is the smallest pinned index, or
the start of a failing range that no pinned index explains.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

from sop_verified.errors import SOPError
from sop_verified.tools.checkpoint import Checkpoint, open_checkpoint
from sop_verified.tools.key_chain import KeyChain
from sop_verified.tools.merkle import HASH_SIZE, verify_consistency
from sop_verified.tools.signed_note import Verifier
from sop_verified.tools.tile_proofs import TileReader
from sop_verified.tools.tlog_store import LogReader
from sop_verified.tools.tlog_tiles import TILE_HEIGHT, TreeState, extend, tile_id

__all__ = ["MAX_FINDINGS", "AuditReport", "Finding", "audit_log"]

MAX_FINDINGS = 100
"""Findings kept in a report (the count goes on)."""

_OFFSETS = (0, 16, 24, 28)
_HELD, _ANCHOR = "held_checkpoint", "anchor"
_Held = tuple[int, str, str]  # size, note, finding kind
_sha256 = hashlib.sha256
Progress = Callable[[int, int], None]


@dataclass(frozen=True, slots=True)
class Finding:
    """One discrepancy: its kind, the entry it pins (or range ``[index, end)``), what was seen."""

    kind: str
    index: int
    message: str
    end: int | None = None

    def to_dict(self) -> dict[str, Any]:
        """Return the JSON-ready form."""
        out: dict[str, Any] = {"kind": self.kind, "index": self.index, "message": self.message}
        if self.end is not None:
            out["end"] = self.end
        return out


@dataclass
class AuditReport:
    """What :func:`audit_log` found."""

    entries: int = 0
    checkpoints: int = 0
    verified_checkpoints: int = 0
    root: str = ""
    findings: list[Finding] = field(default_factory=list)
    total_findings: int = 0
    derived_state: str = "not checked: the log did not verify"
    """What the caller found of the state derived from the log (a data directory's audit)."""
    anchor: dict[str, Any] | None = None
    """The anchor checked: its ``size`` and ``root`` (None when no anchor was given)."""

    @property
    def ok(self) -> bool:
        """True only when nothing was found."""
        return self.total_findings == 0

    @property
    def first_bad_index(self) -> int | None:
        """The first bad entry: pinned indices, and ranges no pinned index explains."""
        pinned = [f.index for f in self.findings if f.end is None]
        ranges = [
            f.index
            for f in self.findings
            if f.end is not None and not any(f.index <= i < f.end for i in pinned)
        ]
        return min(pinned + ranges, default=None)

    def add(self, kind: str, index: int, message: str, end: int | None = None) -> None:
        """Record a finding pinning ``index``, or the range ``[index, end)``.

        Only the first :data:`MAX_FINDINGS` are kept; the count goes on.
        """
        self.total_findings += 1
        if len(self.findings) < MAX_FINDINGS:
            self.findings.append(Finding(kind, index, message, end))

    def to_dict(self) -> dict[str, Any]:
        """Return the JSON-ready form."""
        return {
            "ok": self.ok,
            "entries": self.entries,
            "checkpoints": self.checkpoints,
            "verified_checkpoints": self.verified_checkpoints,
            "root": self.root,
            "first_bad_index": self.first_bad_index,
            "findings": [f.to_dict() for f in self.findings],
            "total_findings": self.total_findings,
            "derived_state": self.derived_state,
            "anchor": self.anchor,
        }


def _first_diff(key: int, expected: bytes, stored: bytes) -> int:
    """The first leaf under the first hash where a stored tile differs from the recomputed one."""
    stratum, tile = tile_id(key)
    for slot in range(min(len(expected), len(stored)) // HASH_SIZE):
        a = slot * HASH_SIZE
        if expected[a : a + HASH_SIZE] != stored[a : a + HASH_SIZE]:
            k = max(i for i, off in enumerate(_OFFSETS) if off <= slot)
            level = TILE_HEIGHT * stratum + k
            index = (tile << (TILE_HEIGHT - k)) + slot - _OFFSETS[k]
            return index << level
    return tile << (TILE_HEIGHT * (stratum + 1))


class _Auditor:
    """One pass over a log; see :func:`audit_log`."""

    def __init__(self, reader: LogReader, origin: str, trusted: Verifier) -> None:
        self.reader, self.origin = reader, origin
        self.chain = KeyChain(trusted)
        self.report = AuditReport()
        self.state = TreeState(0, {})
        self.tiles: Iterator[tuple[int, bytes]] = reader.iter_tiles(4096)
        self.stored: tuple[int, bytes] | None = next(self.tiles, None)
        self.previous: Checkpoint | None = None
        self.good = 0  # entries vouched for by the last verified checkpoint
        self.held: list[_Held] = []

    def compare_tiles(self, produced: list[tuple[int, bytes]]) -> None:
        for key, expected in produced:
            while self.stored is not None and self.stored[0] < key:
                self.extra_tile(self.stored[0])
            stored = self.stored
            if stored is None or stored[0] != key:
                first = tile_id(key)[1] << (TILE_HEIGHT * (tile_id(key)[0] + 1))
                self.report.add("tile", first, f"tile `{tile_id(key)}` is missing")
                continue
            if stored[1] != expected:
                at = _first_diff(key, expected, stored[1])
                self.report.add("tile", at, f"tile `{tile_id(key)}` differs from the entries")
            self.stored = next(self.tiles, None)

    def extra_tile(self, key: int) -> None:
        self.report.add("tile", self.state.size, f"tile `{tile_id(key)}` is not in the tree")
        self.stored = next(self.tiles, None)

    def check_checkpoint(self, size: int, note: str) -> None:
        report = self.report
        try:
            keys = self.chain.signers_for(size)
            checkpoint = open_checkpoint(note, keys, origin=self.origin)
        except SOPError as exc:
            report.add("checkpoint_signature", self.good, f"checkpoint `{size}`: {exc}", size)
            return
        if checkpoint.size != size:
            report.add(
                "checkpoint_size",
                self.good,
                f"checkpoint stored at size `{size}` says `{checkpoint.size}`",
                size,
            )
            return
        root = self.state.root()
        if checkpoint.root_hash != root:  # spec: INV-5 — the signed root is the entries' root
            report.add(
                "checkpoint_root",
                self.good,
                f"checkpoint `{size}` signs root `{checkpoint.root_hash.hex()}`,"
                f" the entries give `{root.hex()}`",
                size,
            )
            return
        self.check_consistency(checkpoint)
        report.verified_checkpoints += 1
        self.previous, self.good = checkpoint, size

    def check_held(self, held: _Held) -> None:
        size, note, kind = held
        what = "the anchor" if kind == _ANCHOR else "held checkpoint"
        try:
            checkpoint = open_checkpoint(note, [self.chain.current], origin=self.origin)
        except SOPError as exc:
            self.report.add(kind, size, f"{what} `{size}`: {exc}")
            return
        root = self.state.root()
        if checkpoint.root_hash != root:  # spec: INV-5 — what was seen still holds
            self.report.add(
                kind,
                self.good,
                f"{what} `{size}` signs root `{checkpoint.root_hash.hex()}`, the entries"
                f" give `{root.hex()}` at that size",
                size,
            )

    def check_consistency(self, checkpoint: Checkpoint) -> None:
        prev = self.previous
        if prev is None or not 0 < prev.size < checkpoint.size:
            return
        proof = TileReader(self.reader.read_tiles).consistency_proof(
            self.state, prev.size, checkpoint.size
        )
        try:  # spec: INV-5 — successive checkpoints are consistent
            verify_consistency(
                prev.size, checkpoint.size, proof, prev.root_hash, checkpoint.root_hash
            )
        except SOPError as exc:
            self.report.add(
                "checkpoint_consistency",
                prev.size,
                f"checkpoints `{prev.size}` and `{checkpoint.size}` are not consistent: {exc}",
                checkpoint.size,
            )

    def grow(self, leaves: list[bytes]) -> None:
        if leaves:
            self.state, produced = extend(self.state, leaves)
            self.compare_tiles(produced)


def audit_log(
    reader: LogReader,
    *,
    origin: str,
    trusted: Verifier,
    progress: Progress | None = None,
    chunk: int = 1 << 16,
    held: Sequence[str] = (),
    anchor: str | None = None,
) -> AuditReport:
    """Recompute and check the whole stored log.

    Args:
        reader: The stored log.
        origin: The origin line its checkpoints must carry.
        trusted: The checkpoint key the auditor trusts (the chain starts here).
        progress: Called with ``(entries done, entry rows)`` after each chunk.
        chunk: Entries read per step.
        held: Signed checkpoints the auditor kept from earlier (receipts,
            witnesses): each must match the log, which catches a log whose
            entries and checkpoints were both cut back.
        anchor: The rollback anchor's note: checked like ``held``, reported
            as ``anchor`` findings and in :attr:`AuditReport.anchor`.

    Returns:
        The report; ``ok`` only when nothing was found.

    Raises:
        InputError: a held checkpoint is malformed.
        StorageError: the log cannot be read.
    """
    a = _Auditor(reader, origin, trusted)
    a.held = sorted((_held_size(note), note, _HELD) for note in held)
    if anchor is not None:
        _add_anchor(a, anchor)
    checkpoints = reader.checkpoints()
    a.report.checkpoints = len(checkpoints)
    rows = reader.entry_rows()
    marks = iter(checkpoints)
    mark = _advance(a, next(marks, None), marks, 0, [])
    leaves: list[bytes] = []
    expected = 0
    for index, leaf, payload in reader.iter_entries(chunk):
        if index != expected:
            if index > expected:
                a.report.add("missing_entry", expected, f"entry `{expected}` is missing")
            else:
                what = f"the row after entry `{expected - 1}` is numbered `{index}`"
                a.report.add("duplicate_entry", expected, what)
            break  # the order is broken: nothing after this can be placed in the tree
        computed = _sha256(b"\x00" + payload).digest()
        if computed != leaf:
            a.report.add("leaf_hash", index, f"entry `{index}`: payload does not hash to its leaf")
        a.chain.observe(index, payload)
        leaves.append(computed)
        expected += 1
        if (mark is not None and mark[0] == expected) or (a.held and a.held[0][0] == expected):
            mark = _advance(a, mark, marks, expected, leaves)
            leaves = []
        elif len(leaves) >= chunk:
            a.grow(leaves)
            leaves = []
        if progress is not None and expected % chunk == 0:
            progress(expected, rows)
    a.grow(leaves)
    _finish(a, expected, mark, checkpoints)
    if progress is not None:
        progress(expected, rows)
    return a.report


def _add_anchor(a: _Auditor, note: str) -> None:
    """Queue the anchor with the held checkpoints; one that does not parse is a finding."""
    try:
        body = _held_body(note)
    except SOPError as exc:
        a.report.add(_ANCHOR, 0, f"the anchor is not a checkpoint: {exc}")
        a.report.anchor = {"size": None, "root": None}
        return
    a.report.anchor = {"size": body.size, "root": body.root_hash.hex()}
    a.held = sorted([*a.held, (body.size, note, _ANCHOR)])


def _held_size(note: str) -> int:
    """The size a held checkpoint signs (its signature is checked when the audit gets there)."""
    return _held_body(note).size


def _held_body(note: str) -> Checkpoint:
    """A held checkpoint's body, not yet verified."""
    text = note[: note.find("\n\n") + 1] if "\n\n" in note else note
    return Checkpoint.from_text(text)


def _advance(
    a: _Auditor,
    mark: tuple[int, str] | None,
    marks: Iterator[tuple[int, str]],
    size: int,
    leaves: list[bytes],
) -> tuple[int, str] | None:
    """Add ``leaves``, check the checkpoints of ``size``; return the next stored one after it."""
    a.grow(leaves)
    while a.held and a.held[0][0] == size:
        a.check_held(a.held.pop(0))
    checked = False
    while mark is not None and mark[0] <= size:
        if mark[0] == size and not checked:
            a.check_checkpoint(*mark)
            checked = True
        else:
            a.report.add("checkpoint_size", a.good, f"checkpoint `{mark[0]}` is out of order", size)
        mark = next(marks, None)
    return mark


def _finish(
    a: _Auditor, size: int, mark: tuple[int, str] | None, checkpoints: list[tuple[int, str]]
) -> None:
    report = a.report
    report.entries, report.root = size, a.state.root().hex()
    latest = checkpoints[-1][0] if checkpoints else None
    if latest is None:
        if size:
            report.add("no_checkpoint", 0, f"`{size}` entries and no signed checkpoint", size)
    elif latest > size or mark is not None:
        report.add(
            "truncated", size, f"the log ends at `{size}` entries, a checkpoint signs `{latest}`"
        )
    elif latest < size:
        report.add(
            "unsigned_entries", latest, f"entries `[{latest}, {size})` are past the last checkpoint"
        )
    for held_size, _, kind in a.held:
        what = "the anchor" if kind == _ANCHOR else "a held checkpoint"
        report.add(
            "truncated" if kind == _HELD else kind,
            size,
            f"the log ends at `{size}` entries (root `{report.root}`), {what} signs `{held_size}`",
        )
    while a.stored is not None:
        a.extra_tile(a.stored[0])
