"""docs/openapi.json is the document the server serves (regenerate: see below)."""

from __future__ import annotations

from pathlib import Path

import orjson

from sop_verified.server.openapi import openapi_document

COMMITTED = Path(__file__).resolve().parents[2] / "docs" / "openapi.json"


def test_the_committed_openapi_document_is_the_served_one() -> None:
    served = orjson.dumps(openapi_document(), option=orjson.OPT_INDENT_2 | orjson.OPT_SORT_KEYS)
    assert COMMITTED.read_bytes() == served + b"\n", (
        "docs/openapi.json is stale; regenerate it with python3 -c 'import orjson; "
        "from sop_verified.server.openapi import openapi_document as d; "
        'open("docs/openapi.json", "wb").write(orjson.dumps(d(), '
        'option=orjson.OPT_INDENT_2 | orjson.OPT_SORT_KEYS) + b"\\n")\''
    )


def test_the_document_is_openapi_3_1_with_every_plane() -> None:
    doc = openapi_document()
    assert doc["openapi"] == "3.1.0"
    for path in ("/v1/decide", "/v1/decide/batch", "/access/v1/evaluation", "/log/checkpoint"):
        assert path in doc["paths"]
