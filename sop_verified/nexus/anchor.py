"""The rollback anchor: the latest signed checkpoint, kept in a file outside ``sop.db``.

Every table of the log is insert-only, but whoever can write ``sop.db`` can
drop the triggers and cut the entries, the tiles and the checkpoints back
together to an earlier checkpoint. What is left is a shorter log that is
consistent with itself, and every later decision, revocation and rotation
is gone. A checkpoint kept outside the database catches that: the log may
have grown since, never shrunk or diverged (INV-5).

The anchor is ``checkpoint.anchor`` in the data directory (mode 0600): the
signed note of the latest checkpoint, rewritten after every batch.

- **Never ahead of the database.** It is written by the log's
  ``on_checkpoint`` hook, which runs only once the batch's transaction has
  committed (``synchronous=FULL``). A crash in between leaves the previous
  anchor: it lags, and a lagging anchor is accepted (the log extends it).
- **Never torn.** The note goes to a temporary file (``O_EXCL|O_NOFOLLOW``,
  0600), is fsynced, then renamed over the anchor. The fsync is what keeps a
  crash from leaving a renamed but empty or partial anchor, which boot would
  have to refuse. The directory is not fsynced: a rename lost in a crash
  leaves the previous anchor, a lag, which is safe.
- **Checked at boot** (:func:`check_anchor`): its signature under the log's
  checkpoint keys (or, for an anchor written before a rotation another replica
  of a shared log made, the key that rotation retired, up to its rotation),
  then the log must be its tree (same size, same root) or extend it (an RFC
  9162 consistency proof from the anchor's size to the log's verifies against
  both roots). A log with signed checkpoints and no anchor is refused too:
  deleting the anchor would otherwise undo it.
- **Re-anchoring** is explicit and logged (:func:`unsafe_accept_current`,
  ``sop log anchor --accept-current``): for a data directory made before
  anchors existed, or whose anchor was lost.

What the anchor does not stop, and what does (an anchor copy held elsewhere,
witnesses), is in ``docs/ROLLBACK.md``.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

from sop_verified.core.persistence.logged import proved_rotations
from sop_verified.errors import IntegrityError, SOPError, StorageError, VerificationError
from sop_verified.tools.canonical import sha256_hex
from sop_verified.tools.checkpoint import Checkpoint
from sop_verified.tools.private_fs import create_private_file
from sop_verified.tools.tlog import TransparencyLog

__all__ = [
    "ANCHOR_NAME",
    "MAX_ANCHOR_BYTES",
    "REANCHOR_HINT",
    "AnchorWriter",
    "check_anchor",
    "describe_anchor",
    "read_anchor",
    "write_anchor",
]

ANCHOR_NAME = "checkpoint.anchor"
"""The anchor's file name in the data directory."""

MAX_ANCHOR_BYTES = 1 << 16
"""Largest anchor read (a checkpoint note with a few signatures is a few hundred bytes)."""

REANCHOR_HINT = (
    "if you know this log is the latest one (for instance restored on purpose, or a data"
    " directory made before anchors existed), check it with `sop log verify --anchor <a copy"
    " of the anchor kept elsewhere>` and re-anchor it with `sop log anchor --accept-current`;"
    " otherwise restore `sop.db` from the copy matching the anchor"
)
"""What the operator can do about a refused anchor (boot and ``sop log verify`` say it)."""

_log = logging.getLogger(__name__)


def write_anchor(path: Path, note: str) -> None:
    """Replace the anchor at ``path`` with ``note``: temp file (0600, fsynced), then rename.

    Args:
        path: The anchor file.
        note: The signed checkpoint note.

    Raises:
        OSError: the file could not be written; the previous anchor is left as it was.
    """
    tmp = path.with_name(path.name + ".tmp")
    tmp.unlink(missing_ok=True)  # a crash's leftover; O_EXCL below never reuses a stranger's file
    fd = create_private_file(tmp)  # 0600 whatever the umask; O_EXCL, never through a symlink
    try:
        os.write(fd, note.encode("utf-8"))
        os.fsync(fd)  # the rename must never publish an empty or partial anchor
    finally:
        os.close(fd)
    os.replace(tmp, path)


class AnchorWriter:
    """The log's ``on_checkpoint`` hook: write each durable checkpoint to the anchor file."""

    def __init__(
        self,
        path: Path,
        on_failure: Callable[[str], None] | None = None,
        then: Callable[[int, str], None] | None = None,
    ) -> None:
        """Write to ``path``; tell ``on_failure`` (the integrity alarm) if a write fails.

        Args:
            path: The anchor file.
            on_failure: Told why, before the error goes back to the log (which
                then takes no more entries: the anchor would lag for good).
            then: Told ``(size, note)`` once the anchor holds the checkpoint (the
                witness publisher); it must not block, and what it raises is logged,
                never returned to the log.
        """
        self.path = path
        self._on_failure = on_failure
        self._then = then

    def __call__(self, size: int, note: str) -> None:
        """Write the checkpoint of ``size``; the log calls this after the batch committed.

        Raises:
            StorageError: the anchor could not be written.
        """
        try:
            write_anchor(self.path, note)
        except OSError as exc:
            reason = f"cannot write the rollback anchor `{self.path}` at size `{size}`: {exc}"
            _log.error(reason)
            if self._on_failure is not None:
                self._on_failure(reason)
            raise StorageError(reason) from exc
        if self._then is not None:
            try:
                self._then(size, note)
            except Exception:  # the checkpoint is durable and anchored: the log goes on
                _log.exception("the hook after the anchor failed at size `%d`", size)


def read_anchor(path: Path) -> str | None:
    """Return the note in the anchor file ``path``, or None if there is none.

    Raises:
        IntegrityError: the anchor exists but cannot be read as a small UTF-8 text file.
    """
    try:
        with open(path, "rb") as fh:
            data = fh.read(MAX_ANCHOR_BYTES + 1)
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise IntegrityError(f"cannot read the rollback anchor `{path}`: {exc}") from exc
    if len(data) > MAX_ANCHOR_BYTES:
        raise IntegrityError(
            f"the rollback anchor `{path}` is larger than `{MAX_ANCHOR_BYTES}` bytes"
        )
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise IntegrityError(f"the rollback anchor `{path}` is not UTF-8: {exc}") from exc


def check_anchor(log: TransparencyLog, path: Path) -> Checkpoint | None:
    """Refuse a log that is smaller than its anchor, inconsistent with it, or has lost it.

    Args:
        log: The opened log (its keys check the anchor's signature).
        path: The anchor file.

    Returns:
        The anchor's checkpoint, or None for a log with no checkpoint and no anchor.

    Raises:
        IntegrityError: the anchor is missing while the log has checkpoints,
            does not verify, or the log does not extend it; the message says
            what the anchor holds, what the log holds and what to do.
    """
    note = read_anchor(path)
    if note is None:
        if log.checkpoint is None:
            return None  # a fresh log: the first checkpoint writes the anchor
        raise IntegrityError(  # spec: INV-5 — deleting the anchor must not undo it
            f"no rollback anchor at `{path}`, but the log holds signed checkpoints (size"
            f" `{log.size}`, root `{log.root().hex()}`); a log without its anchor may have"
            f" been cut back; {REANCHOR_HINT}"
        )
    try:
        try:
            return log.check_extends(note)  # spec: INV-5
        except VerificationError as exc:
            return _check_retired(log, note, exc)
    except SOPError as exc:
        raise IntegrityError(f"rollback anchor `{path}` refused: {exc}; {REANCHOR_HINT}") from exc


def _check_retired(log: TransparencyLog, note: str, refused: VerificationError) -> Checkpoint:
    """The anchor under a key a rotation the log announces retired, or ``refused``.

    A replica started again with the key another replica rotated to holds an anchor
    its last checkpoint wrote, signed by the retired key: that key vouches for the
    checkpoints up to the one covering its rotation, and no further.
    """
    checkpoint = log.checkpoint
    rotations = [] if checkpoint is None else proved_rotations(log, 0, checkpoint.size)
    for rotation in rotations:
        try:
            kept = log.check_extends(note, [rotation.old])  # spec: INV-5
        except VerificationError:
            continue
        if kept.size > rotation.index + 1:  # spec: INV-5 — a retired key signs nothing later
            raise VerificationError(
                f"the anchor of size `{kept.size}` is signed by the key retired at log index"
                f" `{rotation.index}`, which signs no checkpoint past size `{rotation.index + 1}`"
            )
        return kept
    raise refused  # no rotation vouches for it: the current keys' refusal stands


def describe_anchor(note: str) -> dict[str, Any]:
    """What an anchor says, for a log entry or a report: size and root, or its digest.

    Args:
        note: The anchor's text (untrusted).

    Returns:
        ``{"size", "root"}`` when it parses as a checkpoint, else ``{"sha256"}``.
    """
    try:
        body = Checkpoint.from_note(note)
    except SOPError:
        return {"sha256": sha256_hex(note.encode("utf-8"))}
    return {"size": body.size, "root": body.root_hash.hex()}
