"""A client that goes away does not free its idempotency key while its call still runs."""

from __future__ import annotations

import asyncio
from typing import Any

import orjson
from starlette.responses import Response

from sop_verified.core.transport import Transport
from sop_verified.server.edge import Edge
from sop_verified.server.idempotency import Answer, IdempotencyKeys, KeyInFlightError


class _State:
    """The part of ServerState the edge's idempotency uses."""

    def __init__(self) -> None:
        self.keys = IdempotencyKeys()
        self.replicas = None  # one writer: no other replica's keys to read


def test_a_cancelled_wait_keeps_the_key_until_the_call_ends_then_keeps_its_answer() -> None:
    async def scenario() -> tuple[Any, Any]:
        edge = Edge(_State())  # type: ignore[arg-type]
        release = asyncio.Event()

        async def run() -> tuple[Response, int | None]:
            await release.wait()  # the decision is queued, then logged at index 7
            return Response(orjson.dumps({"log_index": 7}), media_type="application/json"), 7

        said = Transport("drac", idempotency_key="k-1")
        waiting = asyncio.ensure_future(edge.idempotent(said, {"r": 1}, run))
        await asyncio.sleep(0)
        waiting.cancel()  # the client went away
        await asyncio.sleep(0)
        try:
            edge.state.keys.begin("drac", "k-1", "x")
            in_flight: Any = None
        except KeyInFlightError as exc:
            in_flight = exc
        release.set()
        await asyncio.sleep(0.01)
        return in_flight, edge.state.keys.logged("drac", "k-1")

    in_flight, logged = asyncio.run(scenario())
    assert in_flight is not None, "a retry during the first call must not run it again"
    assert logged == 7, "the first call's decision is the key's, after the client left"


def test_the_first_answer_is_replayed_after_a_cancelled_wait() -> None:
    async def scenario() -> Any:
        edge = Edge(_State())  # type: ignore[arg-type]
        release = asyncio.Event()

        async def run() -> tuple[Response, int | None]:
            await release.wait()
            return Response(b'{"log_index":3}', media_type="application/json"), 3

        said = Transport("drac", idempotency_key="k-2")
        waiting = asyncio.ensure_future(edge.idempotent(said, {"r": 2}, run))
        await asyncio.sleep(0)
        waiting.cancel()
        release.set()
        await asyncio.sleep(0.01)
        return await edge.idempotent(said, {"r": 2}, run)

    again = asyncio.run(scenario())
    assert again.body == b'{"log_index":3}'


def test_answers_are_kept_as_first_given() -> None:
    keys = IdempotencyKeys()
    assert keys.begin("drac", "k", "f") is None
    keys.finish("drac", "k", Answer(200, "application/json", b"{}"), 1)
    assert keys.begin("drac", "k", "f") == Answer(200, "application/json", b"{}")
