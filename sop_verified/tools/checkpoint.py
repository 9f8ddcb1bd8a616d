"""C2SP tlog-checkpoint (c2sp.org/tlog-checkpoint): a log's signed tree head.

The note text is the origin line, the tree size in decimal (no leading
zeros), the base64 RFC 6962 root hash, then optional non-empty extension
lines, each ending in a newline. The checkpoint is signed as a C2SP signed
note (:mod:`sop_verified.tools.signed_note`). Parsing is strict: a size in
``[0, 2**64)`` without sign, spaces or leading zeros, a canonical base64
32-byte root, no empty extension line.
"""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Iterable
from dataclasses import dataclass

from sop_verified.errors import InputError, VerificationError
from sop_verified.tools.merkle import HASH_SIZE, MAX_TREE_SIZE
from sop_verified.tools.signed_note import Signer, Verifier, open_note, sign_note

__all__ = ["Checkpoint", "open_checkpoint", "sign_checkpoint"]

_SIZE = re.compile(r"0|[1-9][0-9]{0,19}")
_CONTROL = re.compile(r"[\x00-\x1f]")
_ACCEPTED = "origin, decimal size, base64 32-byte root hash and non-empty extension lines"


def _bad(what: str, line: int) -> InputError:
    return InputError(
        f"checkpoint is malformed: {what}", where=f"checkpoint line {line}", accepted=_ACCEPTED
    )


def _check_line(value: object, what: str, line: int) -> str:
    if not isinstance(value, str) or not value or _CONTROL.search(value):
        raise _bad(f"{what} must be a non-empty line without control characters", line)
    return value


@dataclass(frozen=True, slots=True)
class Checkpoint:
    """A checkpoint body: origin, tree size, root hash and extension lines."""

    origin: str
    size: int
    root_hash: bytes
    extensions: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        """Validate every field; a Checkpoint that exists is well formed.

        Raises:
            InputError: a field breaks the tlog-checkpoint format.
        """
        _check_line(self.origin, "origin", 1)
        size = self.size
        if not isinstance(size, int) or isinstance(size, bool) or not 0 <= size <= MAX_TREE_SIZE:
            raise _bad(f"size `{size!r}` is not an integer in `[0, 2**64)`", 2)
        if type(self.root_hash) is not bytes or len(self.root_hash) != HASH_SIZE:
            raise _bad(f"root hash is not {HASH_SIZE} bytes", 3)
        if not isinstance(self.extensions, tuple):
            raise _bad("extensions must be a tuple of lines", 4)
        for i, ext in enumerate(self.extensions, start=4):
            _check_line(ext, "extension", i)

    def to_text(self) -> str:
        """Return the note text of this checkpoint, ending in a newline.

        Returns:
            ``origin\\nsize\\nbase64(root)\\n`` followed by the extension lines.
        """
        root = base64.b64encode(self.root_hash).decode()
        return "".join(f"{line}\n" for line in (self.origin, self.size, root, *self.extensions))

    @classmethod
    def from_text(cls, text: str) -> Checkpoint:
        """Parse checkpoint note text.

        Args:
            text: The note text (already verified, see :func:`open_checkpoint`).

        Returns:
            The checkpoint.

        Raises:
            InputError: the text breaks the tlog-checkpoint format.
        """
        if not isinstance(text, str) or not text.endswith("\n"):
            raise _bad("the text must end in a newline", 1)
        lines = text[:-1].split("\n")
        if len(lines) < 3:
            raise _bad(f"`{len(lines)}` lines, at least 3 are needed", len(lines))
        origin, size, root, *extensions = lines
        if not _SIZE.fullmatch(size):
            raise _bad(f"size `{size[:24]}` is not a decimal without leading zeros", 2)
        try:
            digest = base64.b64decode(root, validate=True)
        except (binascii.Error, ValueError):
            digest = b""
        if base64.b64encode(digest).decode() != root or len(digest) != HASH_SIZE:
            raise _bad(f"root hash is not canonical base64 of {HASH_SIZE} bytes", 3)
        return cls(origin, int(size), digest, tuple(extensions))

    @classmethod
    def from_note(cls, note: str) -> Checkpoint:
        """Parse the checkpoint body of a signed note, without checking its signatures.

        Args:
            note: A signed note whose signatures were checked before, or that is
                only read for its size (the body ends at the note's blank line).

        Returns:
            The checkpoint.

        Raises:
            InputError: the body breaks the tlog-checkpoint format.
        """
        return cls.from_text(note[: note.find("\n\n") + 1])


def sign_checkpoint(checkpoint: Checkpoint, *signers: Signer) -> str:
    """Return ``checkpoint`` as a signed note.

    Args:
        checkpoint: The checkpoint to sign.
        *signers: The log's key and any others.

    Returns:
        The signed note.

    Raises:
        ValueError: no signer, or two with the same name and key id.
    """
    return sign_note(checkpoint.to_text(), *signers)


def open_checkpoint(note: str | bytes, verifiers: Iterable[Verifier], *, origin: str) -> Checkpoint:
    """Verify a signed checkpoint and parse it; its origin must be ``origin``.

    Args:
        note: The signed note (untrusted).
        verifiers: The trusted keys.
        origin: The origin line this log must have.

    Returns:
        The checkpoint.

    Raises:
        InputError: the note or the checkpoint is malformed.
        VerificationError: no known key signed, a known key's signature fails,
            or the origin is not ``origin`` (``expected``/``calculated`` hold both).
    """
    checkpoint = Checkpoint.from_text(open_note(note, verifiers))
    if checkpoint.origin != origin:
        raise VerificationError(
            f"checkpoint origin `{checkpoint.origin}` is not `{origin}`",
            expected=origin,
            calculated=checkpoint.origin,
        )
    return checkpoint
