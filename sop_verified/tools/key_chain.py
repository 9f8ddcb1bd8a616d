"""Checkpoint-key rotation: the announcement entry and the chain verifiers follow.

A rotation is one log entry, canonical JSON
``{"type": "log.key_rotation", "old": <vkey>, "new": <vkey>, "time": <int>}``,
appended in a batch of its own whose checkpoint is signed by the old key and
co-signed by the new one. A verifier that trusts the old key accepts the new
one from the checkpoint covering the announcement on, and stops trusting the
old one there: :class:`KeyChain` walks the log in order and says which key
must sign each checkpoint.
"""

from __future__ import annotations

from dataclasses import dataclass

import orjson

from sop_verified.errors import InputError, VerificationError
from sop_verified.tools.canonical import canonical_json
from sop_verified.tools.signed_note import Verifier

__all__ = [
    "ROTATION_MARK",
    "ROTATION_TYPE",
    "KeyChain",
    "Rotation",
    "parse_rotation",
    "rotation_entry",
]

ROTATION_TYPE = "log.key_rotation"
"""The ``type`` of a key-rotation announcement entry."""

ROTATION_MARK = b'"type":"' + ROTATION_TYPE.encode() + b'"'


@dataclass(frozen=True, slots=True)
class Rotation:
    """One announced rotation: at entry ``index``, ``old`` hands over to ``new``."""

    index: int
    old: Verifier
    new: Verifier


def rotation_entry(old: Verifier, new: Verifier, time: int) -> bytes:
    """Return the canonical announcement entry for rotating ``old`` to ``new``.

    Args:
        old: The current checkpoint key.
        new: The next checkpoint key (same name).
        time: Unix seconds.

    Returns:
        The entry payload.

    Raises:
        ValueError: the keys have different names or are the same key.
    """
    if old.name != new.name or old == new:
        raise ValueError("a rotation needs a different key with the same name")
    entry = {"type": ROTATION_TYPE, "old": old.vkey, "new": new.vkey, "time": time}
    return canonical_json(entry)


def parse_rotation(index: int, payload: bytes) -> Rotation | None:
    """Return the rotation a log entry announces, or None for any other entry.

    Args:
        index: The entry's index.
        payload: The entry's bytes (untrusted).

    Returns:
        The rotation, or None when the entry is not an announcement.

    Raises:
        InputError: the entry claims to be an announcement but is malformed.
    """
    if ROTATION_MARK not in payload:
        return None
    try:
        data = orjson.loads(payload)
    except orjson.JSONDecodeError:
        return None
    if not isinstance(data, dict) or data.get("type") != ROTATION_TYPE:
        return None
    old, new = data.get("old"), data.get("new")
    if not isinstance(old, str) or not isinstance(new, str):
        raise InputError(
            "key rotation names no keys", where=f"log entry {index}", accepted="`old` and `new`"
        )
    rotation = Rotation(index, Verifier.from_string(old), Verifier.from_string(new))
    if rotation.old.name != rotation.new.name:
        raise InputError(
            "key rotation changes the key name",
            where=f"log entry {index}",
            accepted="the same name for `old` and `new`",
        )
    return rotation


class KeyChain:
    """The checkpoint key trusted at each point of a log, starting from one trusted key."""

    __slots__ = ("_current", "_pending")

    def __init__(self, trusted: Verifier) -> None:
        """Start trusting ``trusted`` (the key the auditor holds)."""
        self._current = trusted
        self._pending: list[Rotation] = []

    @property
    def current(self) -> Verifier:
        """The key the next checkpoint must be signed by."""
        return self._current

    def observe(self, index: int, payload: bytes) -> None:
        """Note an entry; a rotation takes effect at the next checkpoint that covers it.

        Args:
            index: The entry's index.
            payload: The entry's bytes.

        Raises:
            InputError: a malformed announcement.
        """
        rotation = parse_rotation(index, payload)
        if rotation is not None:
            self._pending.append(rotation)

    def signers_for(self, size: int) -> list[Verifier]:
        """Return the keys that must sign the checkpoint of ``size``, then advance the chain.

        The checkpoint covering an announcement is signed by the old key (the
        one trusted), and from then on the new key is trusted.

        Args:
            size: The checkpoint's tree size.

        Returns:
            The key(s) the checkpoint may be verified with (the current one).

        Raises:
            VerificationError: an announcement covered by this checkpoint does
                not start from the key trusted at that point.
        """
        trusted = [self._current]
        while self._pending and self._pending[0].index < size:
            rotation = self._pending.pop(0)
            if rotation.old != self._current:
                raise VerificationError(
                    f"key rotation at entry `{rotation.index}` starts from"
                    f" `{rotation.old.vkey}`, not the trusted key",
                    expected=self._current.vkey,
                    calculated=rotation.old.vkey,
                )
            self._current = rotation.new
        return trusted
