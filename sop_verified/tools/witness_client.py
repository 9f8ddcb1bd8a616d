"""The log's side of C2SP tlog-witness: submit a checkpoint, get cosignature lines or a refusal.

:func:`submit_checkpoint` (and :func:`asubmit_checkpoint` on an event loop)
posts ``add-checkpoint`` to a witness and returns either the cosignature lines
to append to the checkpoint note, or a :class:`WitnessRefusal` that says what
the witness answered:

========================  =======  ==================================================
``code``                  status   meaning, and what a log does next
========================  =======  ==================================================
``unreachable``           None     no answer (connection, timeout): try later
``malformed``             400      the request was wrong: a bug on the log's side
``bad_signature``         403      the witness does not trust the log's key
``unknown_log``           404      the witness does not witness this origin
``old_size_mismatch``     409      ``size`` is what the witness cosigned last: resend
                                   with that old size and a proof from it
``fork``                  409      the witness cosigned another root at this very
                                   size (its ``size`` equals the old size sent, and
                                   so the checkpoint's): an integrity alarm
``bad_proof``             422      the consistency proof fails: an integrity alarm if
                                   the log built it from its own tree
``bad_cosignature``       200      the answer holds no valid cosignature by the
                                   expected witness key
``error``                 other    any other answer
========================  =======  ==================================================

A 409 carries the witness's size as ``text/x.tlog.size``; when that size is
the old size the log sent, the only reason left is a different root at that
size (or a concurrent submission that recorded the same size first: either
way, the log's checkpoint is not the one the witness holds).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

import httpx

from sop_verified.errors import InputError, VerificationError
from sop_verified.tools.cosignature import CosignatureVerifier, verify_cosignatures
from sop_verified.tools.signed_note import parse_note
from sop_verified.tools.witness import SIZE_MEDIA_TYPE, format_add_checkpoint

__all__ = ["WitnessRefusal", "asubmit_checkpoint", "submit_checkpoint"]

_SIZE = re.compile(r"(0|[1-9][0-9]{0,19})\n")
_CODES = {400: "malformed", 403: "bad_signature", 404: "unknown_log", 422: "bad_proof"}
_MAX_ANSWER = 1 << 16


@dataclass(frozen=True, slots=True)
class WitnessRefusal:
    """A witness did not cosign: its ``status`` (None: no answer), a ``code``, its ``size``."""

    status: int | None
    code: str
    detail: str
    size: int | None = None


def _endpoint(url: str) -> str:
    return url.rstrip("/") + "/add-checkpoint"


def _interpret(
    answer: httpx.Response, old_size: int, note: bytes, witness: CosignatureVerifier | None
) -> str | WitnessRefusal:
    status, body = answer.status_code, answer.content
    media_type = answer.headers.get("content-type", "")
    text = body[:_MAX_ANSWER].decode("utf-8", "replace")
    if status == 200:
        return _cosignatures(body, note, witness)
    if status == 409:
        size = _SIZE.fullmatch(text)
        if size is None or media_type.split(";", maxsplit=1)[0].strip() != SIZE_MEDIA_TYPE:
            return WitnessRefusal(409, "error", f"a 409 without a `{SIZE_MEDIA_TYPE}` size")
        held = int(size.group(1))
        code = "fork" if held == old_size else "old_size_mismatch"
        return WitnessRefusal(409, code, f"the witness's latest cosigned size is {held}", held)
    return WitnessRefusal(status, _CODES.get(status, "error"), text.strip()[:500])


def _cosignatures(
    body: bytes, note: bytes, witness: CosignatureVerifier | None
) -> str | WitnessRefusal:
    try:
        _, lines = parse_note(note + body)
        _, before = parse_note(note)
        if len(lines) <= len(before) or not body.endswith(b"\n"):
            raise InputError("no signature lines")
        if witness is not None:
            verify_cosignatures(note + body, [witness], minimum=1)
    except (InputError, VerificationError) as exc:
        return WitnessRefusal(200, "bad_cosignature", f"the witness's answer: {exc}")
    answer = body.decode()
    if witness is None:
        return answer
    mine = f"— {witness.name} "
    return "".join(line + "\n" for line in answer.splitlines() if line.startswith(mine))


def submit_checkpoint(
    url: str,
    old_size: int,
    proof: Sequence[bytes],
    checkpoint: str | bytes,
    *,
    witness: CosignatureVerifier | None = None,
    timeout: float = 10.0,
    client: httpx.Client | None = None,
) -> str | WitnessRefusal:
    """Ask the witness at ``url`` (its submission prefix) to cosign ``checkpoint``.

    Args:
        url: The witness's submission prefix, e.g. ``http://127.0.0.1:7650``.
        old_size: The size the witness cosigned last (0 if unknown: a 409 tells it).
        proof: The consistency proof from ``old_size`` to the checkpoint's size.
        checkpoint: The signed checkpoint note.
        witness: The witness's key; when given, the answer must hold a valid
            cosignature by it and only its lines are returned.
        timeout: Seconds to wait for the answer.
        client: An ``httpx.Client`` to reuse (keep-alive); default a new one.

    Returns:
        The cosignature lines (each ``— <name> <base64>`` and a newline), to append to
        the checkpoint note, or a :class:`WitnessRefusal`.

    Raises:
        ValueError: the old size or the proof is malformed (see
            :func:`~sop_verified.tools.witness.format_add_checkpoint`).
    """
    note = checkpoint.encode() if isinstance(checkpoint, str) else checkpoint
    body = format_add_checkpoint(old_size, proof, note)
    try:
        if client is None:
            with httpx.Client(timeout=timeout) as own:
                answer = own.post(_endpoint(url), content=body)
        else:
            answer = client.post(_endpoint(url), content=body, timeout=timeout)
    except httpx.HTTPError as exc:
        return WitnessRefusal(None, "unreachable", f"`{url}`: {type(exc).__name__}: {exc}")
    return _interpret(answer, old_size, note, witness)


async def asubmit_checkpoint(
    url: str,
    old_size: int,
    proof: Sequence[bytes],
    checkpoint: str | bytes,
    *,
    witness: CosignatureVerifier | None = None,
    timeout: float = 10.0,
    client: httpx.AsyncClient | None = None,
) -> str | WitnessRefusal:
    """:func:`submit_checkpoint` for an event loop (an ``httpx.AsyncClient``).

    Returns:
        The cosignature lines, or a :class:`WitnessRefusal`.

    Raises:
        ValueError: the old size or the proof is malformed.
    """
    note = checkpoint.encode() if isinstance(checkpoint, str) else checkpoint
    body = format_add_checkpoint(old_size, proof, note)
    try:
        if client is None:
            async with httpx.AsyncClient(timeout=timeout) as own:
                answer = await own.post(_endpoint(url), content=body)
        else:
            answer = await client.post(_endpoint(url), content=body, timeout=timeout)
    except httpx.HTTPError as exc:
        return WitnessRefusal(None, "unreachable", f"`{url}`: {type(exc).__name__}: {exc}")
    return _interpret(answer, old_size, note, witness)
