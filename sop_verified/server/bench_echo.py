"""``POST /bench/echo``: the bridge plane's stack without SOP, for ``bench/bench_http.py`` only.

The route does what ``POST /v1/decide`` does at the edge and nothing else: read
the body within the same limit, parse it as strict JSON (duplicate keys
refused), serialise it again with orjson and answer it. What ``/v1/decide``
adds on top of it (the schema, the kernel, the durable log commit) is what the
benchmark's ratio of the two rates measures (DESIGN.md section 9).

It is off unless ``sop serve`` is started with the hidden ``--bench-echo``
option (:attr:`~.serve.ServeSettings.bench_echo`), which warns at start; it
decides nothing, logs nothing and is not in the OpenAPI document.
"""

from __future__ import annotations

import orjson
from starlette.requests import Request as HTTPRequest
from starlette.responses import Response
from starlette.routing import Route

from sop_verified.core.request import MAX_REQUEST_BYTES
from sop_verified.server.problems import problem
from sop_verified.tools.strict_json import loads_unique_keys

__all__ = ["ECHO_PATH", "ECHO_WARNING", "echo_routes"]

ECHO_PATH = "/bench/echo"
ECHO_WARNING = (
    f"the benchmark's echo route `POST {ECHO_PATH}` is on (--bench-echo): it answers any"
    " client without a decision; use it only to measure the stack"
)


async def _echo(request: HTTPRequest) -> Response:
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > MAX_REQUEST_BYTES:
            return problem(
                413, "body_too_large", f"the body has more than {MAX_REQUEST_BYTES} bytes"
            )
        chunks.append(chunk)
    try:
        value = loads_unique_keys(b"".join(chunks))
    except (ValueError, RecursionError, UnicodeDecodeError) as exc:
        return problem(400, "bad_request", f"the body is not JSON: {str(exc)[:200]}")
    return Response(orjson.dumps(value), media_type="application/json")


def echo_routes() -> list[Route]:
    """The echo route, for a bridge plane started with ``bench_echo`` on.

    Returns:
        One route: ``POST /bench/echo``.
    """
    return [Route(ECHO_PATH, _echo, methods=["POST"])]
