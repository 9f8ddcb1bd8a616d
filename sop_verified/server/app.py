"""The ASGI applications of the three planes, with SOP's error shape everywhere.

Each plane is its own Starlette application on its own listener. Every
answer that is not a success is an RFC 9457 problem: an unknown path (404), a
wrong method (405), and any exception a handler did not expect (500, logged
with its traceback; the body says only its type: no internals leak).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.middleware.gzip import GZipMiddleware
from starlette.requests import Request as HTTPRequest
from starlette.responses import Response
from starlette.routing import BaseRoute

from sop_verified.server.problems import problem

__all__ = ["plane"]

_log = logging.getLogger("sop.server")


async def _http_error(request: HTTPRequest, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    code = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code, "http_error")
    detail = {
        404: f"no such path `{request.url.path}`; see /openapi.json on the read plane",
        405: f"`{request.method}` is not accepted at `{request.url.path}`",
    }.get(exc.status_code, str(exc.detail))
    return problem(exc.status_code, code, detail, headers=exc.headers)


async def _internal(request: HTTPRequest, exc: Exception) -> Response:
    _log.exception("unexpected error at %s %s", request.method, request.url.path)
    return problem(
        500,
        "internal_error",
        f"the server failed: `{type(exc).__name__}` (the server's log has the details)",
        stage="internal",
    )


def plane(routes: Sequence[BaseRoute], *, gzip: bool = False) -> Starlette:
    """One plane's application: ``routes`` with problem+json errors.

    Args:
        routes: the plane's routes.
        gzip: compress bodies of 1 KiB and more for clients that accept gzip (the read
            plane: C2SP tlog-tiles says entry bundles SHOULD be compressed).
    """
    middleware = [Middleware(GZipMiddleware, minimum_size=1024)] if gzip else []
    return Starlette(
        routes=list(routes),
        middleware=middleware,
        exception_handlers={HTTPException: _http_error, Exception: _internal},
    )
