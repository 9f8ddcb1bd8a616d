"""One log entry, one CloudEvent: the projection, in the CloudEvents 1.0 structured JSON format.

The event of the entry at log index ``i`` of the log with origin ``o``::

    {"specversion": "1.0", "id": "o/i", "source": "o", "type": "sop.<kind>.v1",
     "time": "<RFC 3339, from the entry>", "datacontenttype": "application/json",
     "sopindex": "i", "data": {...}}

- ``source`` is the log's checkpoint origin as it stands: its grammar (letters,
  digits, ``.``, ``_``, ``-`` and ``/``, never ``:``) makes it a relative
  URI-reference (RFC 3986 section 4.2), so nothing is added to it; ``id`` is
  unique within it, as CloudEvents requires of ``source`` + ``id``.
- ``time`` is the entry's own Unix time (``time``, or a boot manifest's
  ``booted_at``) in UTC; an entry without one (an attestation) has no ``time``
  attribute, which CloudEvents makes optional. The wall clock at projection
  time is never used: the same entry always gives the same bytes.
- ``sopindex`` (an extension attribute) is the log index as a decimal string:
  CloudEvents' Integer type is 32 bits and a log holds up to ``2**56`` entries.
- ``data`` is the entry seen through its kind's shape and the telemetry
  boundary (:mod:`sop_verified.events.kinds`, :mod:`.boundary`).

A checkpoint the log signed becomes an event too (:func:`project_checkpoint`),
``sop.checkpoint.v1`` with ``id`` ``o/checkpoint/<size>``, the extension
``sopsize`` (its tree size) and ``sopindex`` = ``size - 1``, the last entry it
covers, whose event it follows (an empty tree's checkpoint has no ``sopindex``).

The bytes are RFC 8785 canonical JSON, so projecting an entry twice, here or
in another process, gives identical bytes (docs/adr/0018).
"""

from __future__ import annotations

import base64
import re
import time as _time
from collections.abc import Mapping
from typing import Any, Final

from sop_verified.core.contracts import ensure, require
from sop_verified.events.boundary import TelemetryBoundary
from sop_verified.events.kinds import CHECKPOINT, GENERIC, kind_of
from sop_verified.events.model import Event
from sop_verified.events.shapes import MISSING
from sop_verified.tools.canonical import canonical_json
from sop_verified.tools.checkpoint import Checkpoint

__all__ = [
    "DATACONTENTTYPE",
    "INDEX_EXTENSION",
    "ORIGIN_PATTERN",
    "SIZE_EXTENSION",
    "SPECVERSION",
    "entry_time",
    "project_checkpoint",
    "project_entry",
]

SPECVERSION: Final = "1.0"
DATACONTENTTYPE: Final = "application/json"
INDEX_EXTENSION: Final = "sopindex"
"""The extension attribute carrying the log index (CloudEvents names: ``[a-z0-9]+``)."""

SIZE_EXTENSION: Final = "sopsize"
"""The extension attribute carrying a checkpoint's tree size."""

ORIGIN_PATTERN: Final = r"[A-Za-z0-9][A-Za-z0-9._/-]{0,127}"
"""A log origin (``origin`` in sop.toml): always a relative URI-reference as it stands."""

_ORIGIN = re.compile(ORIGIN_PATTERN)
_NO_CONTEXT: Final = TelemetryBoundary()
_LAST_SECOND = 253_402_300_799  # 9999-12-31T23:59:59Z, RFC 3339's last


def entry_time(entry: Mapping[str, Any], path: tuple[str, ...] = ("time",)) -> str | None:
    """The entry's own time at ``path`` as RFC 3339 UTC (``2026-12-07T10:35:14Z``), or None.

    Args:
        entry: the log entry.
        path: the keys leading to its integer Unix time.

    Returns:
        The time, or None when the entry has none (or none RFC 3339 can write).
    """
    value: Any = entry
    for key in path:
        value = value.get(key) if isinstance(value, Mapping) else None
    if not path or type(value) is not int or not 0 <= value <= _LAST_SECOND:
        return None
    return _time.strftime("%Y-%m-%dT%H:%M:%SZ", _time.gmtime(value))


@require(lambda index: type(index) is int and index >= 0, "a log index", helper=True)
@require(lambda origin: _ORIGIN.fullmatch(origin) is not None, "a log origin", helper=True)
@ensure(
    lambda origin, index, result: result.id == f"{origin}/{index}",
    helper=True,
)
def project_entry(
    origin: str, index: int, entry: Mapping[str, Any], boundary: TelemetryBoundary, position: int
) -> Event:
    """The CloudEvent of the log entry at ``index``.

    Args:
        origin: the log's checkpoint origin.
        index: the entry's log index.
        position: where the event stands among the log's events (``Event.position``).
        entry: the entry, parsed (and authenticated: :mod:`sop_verified.events.source`).
        boundary: what of the request context may leave.

    Returns:
        The event; its bytes depend on nothing but the arguments.
    """
    kind = kind_of(entry)
    data = kind.data.project(dict(entry), boundary)
    if data is MISSING:  # not the shape its kind says: an entry this version does not know
        kind = GENERIC
        data = GENERIC.data.project(dict(entry), boundary)
    attributes = {INDEX_EXTENSION: str(index)}
    when = entry_time(entry, kind.time)
    if when is not None:
        attributes["time"] = when
    return _event(origin, f"{origin}/{index}", kind.event_type, data, attributes, position=position)


@require(lambda origin: _ORIGIN.fullmatch(origin) is not None, "a log origin", helper=True)
@require(lambda checkpoint, origin: checkpoint.origin == origin, "this log's checkpoint")
@ensure(lambda checkpoint, result: result.id.endswith(f"/checkpoint/{checkpoint.size}"))
def project_checkpoint(origin: str, checkpoint: Checkpoint, note: str, position: int) -> Event:
    """The CloudEvent of a checkpoint the log signed.

    Args:
        origin: the log's checkpoint origin.
        checkpoint: the checkpoint's body, opened from ``note`` (and authenticated:
            :mod:`sop_verified.events.source`).
        note: the signed note, as stored.
        position: where the event stands among the log's events.

    Returns:
        The event; its bytes depend on nothing but the arguments.
    """
    size = checkpoint.size
    data = CHECKPOINT.data.project(
        {"size": size, "root": base64.b64encode(checkpoint.root_hash).decode(), "note": note},
        _NO_CONTEXT,  # a checkpoint carries no request context
    )
    attributes = {SIZE_EXTENSION: str(size)}
    if size:
        attributes[INDEX_EXTENSION] = str(size - 1)
    event_id = f"{origin}/checkpoint/{size}"
    return _event(origin, event_id, CHECKPOINT.event_type, data, attributes, position=position)


def _event(
    origin: str,
    event_id: str,
    event_type: str,
    data: Any,
    attributes: Mapping[str, str],
    *,
    position: int,
) -> Event:
    """The structured CloudEvent: the context attributes every event has, then ``attributes``
    (``time`` and the extensions), and ``data``; as RFC 8785 canonical bytes."""
    event: dict[str, Any] = {
        "specversion": SPECVERSION,
        "id": event_id,
        "source": origin,
        "type": event_type,
        "datacontenttype": DATACONTENTTYPE,
        **attributes,
        "data": data,
    }
    return Event(position, event_id, event_type, canonical_json(event))
