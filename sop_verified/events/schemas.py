"""The JSON Schema (draft 2020-12) of every event type, written from the kinds' shapes.

``docs/events/<type>.schema.json`` holds one per type (``sop.decision.v1``, ...,
``sop.entry.v1``, ``sop.checkpoint.v1``): the whole CloudEvent, its attributes and
its ``data``, with ``additionalProperties: false`` at every level, so a field that is not in a
schema cannot be in an event. The files are generated, never edited:
``python3 -m sop_verified.events.schemas docs/events`` writes them, and a test
holds them equal to what this module generates.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any, Final

import orjson

from sop_verified.events.kinds import CHECKPOINT, GENERIC, KINDS, Kind
from sop_verified.events.projection import (
    DATACONTENTTYPE,
    INDEX_EXTENSION,
    ORIGIN_PATTERN,
    SIZE_EXTENSION,
    SPECVERSION,
)

__all__ = ["SCHEMA_BASE", "event_schema", "schema_files", "write_schemas"]

SCHEMA_BASE: Final = "https://sop.local/events/"
"""The schemas' ``$id`` prefix (an identifier, not a place they are served from)."""

_DRAFT = "https://json-schema.org/draft/2020-12/schema"
_INDEX = "(0|[1-9][0-9]*)"
_RFC3339_UTC = r"^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}Z$"


def event_schema(kind: Kind) -> dict[str, Any]:
    """The JSON Schema of the events of ``kind``."""
    if kind is CHECKPOINT:
        return _checkpoint_schema()
    data = kind.data.schema()
    return {
        "$schema": _DRAFT,
        "$id": f"{SCHEMA_BASE}{kind.event_type}.schema.json",
        "title": kind.event_type,
        "description": f"{kind.doc} One CloudEvent 1.0 (structured JSON format) per log entry;"
        " docs/events/README.md.",
        "type": "object",
        "required": [
            "specversion",
            "id",
            "source",
            "type",
            "datacontenttype",
            INDEX_EXTENSION,
            "data",
        ],
        "properties": {
            "specversion": {"const": SPECVERSION},
            "id": {
                "type": "string",
                "pattern": f"^{ORIGIN_PATTERN}/{_INDEX}$",
                "description": "`<origin>/<log index>`.",
            },
            "source": {
                "type": "string",
                "pattern": f"^{ORIGIN_PATTERN}$",
                "description": "The log's checkpoint origin, a relative URI-reference.",
            },
            "type": {"const": kind.event_type},
            "time": {
                "type": "string",
                "format": "date-time",
                "pattern": _RFC3339_UTC,
                "description": "The entry's own time (UTC); absent when the entry has none.",
            },
            "datacontenttype": {"const": DATACONTENTTYPE},
            INDEX_EXTENSION: {
                "type": "string",
                "pattern": f"^{_INDEX}$",
                "description": "The log index, in decimal (CloudEvents Integer is 32 bits).",
            },
            "data": data,
        },
        "additionalProperties": False,
    }


def _checkpoint_schema() -> dict[str, Any]:
    """A checkpoint's event: an entry's attributes, keyed by its size, after its last entry."""
    schema = event_schema(GENERIC) | {
        "$id": f"{SCHEMA_BASE}{CHECKPOINT.event_type}.schema.json",
        "title": CHECKPOINT.event_type,
        "description": f"{CHECKPOINT.doc} One CloudEvent 1.0 (structured JSON format) per"
        " signed checkpoint; docs/events/README.md.",
    }
    required = [n for n in schema["required"] if n != INDEX_EXTENSION]
    schema["required"] = [*required, SIZE_EXTENSION]
    properties = dict(schema["properties"])
    properties.pop("time")  # a checkpoint has no time of its own
    properties["id"] = {
        "type": "string",
        "pattern": f"^{ORIGIN_PATTERN}/checkpoint/{_INDEX}$",
        "description": "`<origin>/checkpoint/<tree size>`.",
    }
    properties["type"] = {"const": CHECKPOINT.event_type}
    properties[INDEX_EXTENSION] = {
        "type": "string",
        "pattern": f"^{_INDEX}$",
        "description": "The last entry it covers, `size - 1` (absent for an empty tree):"
        " the event it follows.",
    }
    properties[SIZE_EXTENSION] = {
        "type": "string",
        "pattern": f"^{_INDEX}$",
        "description": "The tree size it signs, in decimal.",
    }
    properties["data"] = CHECKPOINT.data.schema()
    schema["properties"] = properties
    return schema


def schema_files() -> dict[str, bytes]:
    """Every schema file, by file name (indented JSON, sorted keys, a final newline)."""
    out = {}
    for kind in (*KINDS.values(), GENERIC, CHECKPOINT):
        text = orjson.dumps(event_schema(kind), option=orjson.OPT_INDENT_2 | orjson.OPT_SORT_KEYS)
        out[f"{kind.event_type}.schema.json"] = text + b"\n"
    return out


def write_schemas(directory: Path) -> list[Path]:
    """Write every schema file into ``directory`` (created if missing); return the paths."""
    directory.mkdir(parents=True, exist_ok=True)
    written = []
    for name, body in sorted(schema_files().items()):
        path = directory / name
        path.write_bytes(body)
        written.append(path)
    return written


if __name__ == "__main__":  # pragma: no cover - the maintainers' regeneration step
    for written_path in write_schemas(Path(sys.argv[1] if len(sys.argv) > 1 else "docs/events")):
        sys.stdout.write(f"{written_path}\n")
