"""The echo applications ``bench_http_stacks.py`` serves: one JSON POST, parsed and re-serialised.

Each is the same route, ``POST /echo``: read the body, parse it, answer it
serialised again. They differ only in the framework and the JSON library, so
the servers can be compared on equal work (ADR 0013).
"""

from __future__ import annotations

from typing import Any

import msgspec
import orjson
from fastapi import FastAPI
from pydantic import BaseModel, ConfigDict
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

__all__ = ["fastapi_pydantic", "starlette_msgspec", "starlette_orjson"]

_JSON = "application/json"


async def _orjson_echo(request: Request) -> Response:
    return Response(orjson.dumps(orjson.loads(await request.body())), media_type=_JSON)


_decoder = msgspec.json.Decoder()
_encoder = msgspec.json.Encoder()


async def _msgspec_echo(request: Request) -> Response:
    return Response(_encoder.encode(_decoder.decode(await request.body())), media_type=_JSON)


starlette_orjson = Starlette(routes=[Route("/echo", _orjson_echo, methods=["POST"])])
starlette_msgspec = Starlette(routes=[Route("/echo", _msgspec_echo, methods=["POST"])])


class _Strict(BaseModel):
    model_config = ConfigDict(strict=True, extra="forbid")


class Context(_Strict):
    """The echo body's context (the shape of a decision request's)."""

    session: str
    size_bytes: int
    phase: str


class EchoBody(_Strict):
    """The echo body, strict and closed like SOP's request schema."""

    request_id: str
    principal: str
    action: str
    resource: str
    capability: str
    context: Context


fastapi_pydantic = FastAPI(openapi_url=None, docs_url=None, redoc_url=None)


@fastapi_pydantic.post("/echo")
async def _pydantic_echo(body: EchoBody) -> EchoBody:
    return body


def body(size: int = 306) -> dict[str, Any]:
    """A decision-request-shaped JSON object of exactly ``size`` bytes, compact."""
    value: dict[str, Any] = {
        "request_id": "bench-0001",
        "principal": "drac",
        "action": "artifact.persist",
        "resource": "artifacts/drac/bench/c01/obj3.bin",
        "capability": "",
        "context": {"session": "bench", "size_bytes": 4096, "phase": "ASSEMBLE"},
    }
    value["capability"] = "x" * (size - len(orjson.dumps(value)))
    assert len(orjson.dumps(value)) == size
    return value
