"""The listeners' accepted connections answer without Nagle's delay (TCP_NODELAY on).

The standard asyncio loop turns TCP_NODELAY on for an accepted connection only
when its socket says it is TCP (``proto == IPPROTO_TCP``); uvloop, which
``sop serve`` runs on, turns it on anyway. A listener made with protocol 0 on
the asyncio loop gives connections that keep Nagle's algorithm: uvicorn writes
a response's head and body in two sends, the second waits for the client's
delayed ACK, and every answer takes about 40 ms (bench/bench_http.py measured
700 req/s for the echo route that way, 5,800 with the flag on). The test runs
on the asyncio loop, where the listener's protocol decides.
"""

from __future__ import annotations

import asyncio
import socket

from sop_verified.server.serve import _bind


class _Accepted(asyncio.Protocol):
    def __init__(self, got: asyncio.Future[asyncio.BaseTransport]) -> None:
        self.got = got

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.got.set_result(transport)


async def _nodelay_of_accepted() -> int:
    sock = _bind("127.0.0.1", 0)
    loop = asyncio.get_running_loop()
    got: asyncio.Future[asyncio.BaseTransport] = loop.create_future()
    server = await loop.create_server(lambda: _Accepted(got), sock=sock)
    _, writer = await asyncio.open_connection(*sock.getsockname()[:2])
    transport = await asyncio.wait_for(got, 10)
    nodelay = transport.get_extra_info("socket").getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY)
    writer.close()
    transport.close()
    server.close()
    await server.wait_closed()
    return int(nodelay)


def test_accepted_connections_have_tcp_nodelay() -> None:
    assert asyncio.run(_nodelay_of_accepted()) != 0
