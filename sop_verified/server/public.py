"""The public read plane's own routes: health, metrics, receipts, the OpenAPI document.

No authentication: nothing here decides or changes anything. The log itself
(C2SP tlog-tiles) is served by :mod:`.read_plane`.
"""

from __future__ import annotations

import re
import time
from pathlib import Path
from typing import Any

import orjson
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request as HTTPRequest
from starlette.responses import Response
from starlette.routing import Route

from sop_verified.core.health import Health
from sop_verified.core.proofgate import Z3ProofGate
from sop_verified.errors import InputError, NotWitnessedError
from sop_verified.nexus.witness_publisher import prove_published
from sop_verified.server.log_source import TailRefresh
from sop_verified.server.nats_metrics import NatsSinkCollector
from sop_verified.server.openapi import openapi_document
from sop_verified.server.problems import problem
from sop_verified.server.state import ServerState
from sop_verified.server.telemetry import CONTENT_TYPE_LATEST, Metrics
from sop_verified.server.witness_metrics import WitnessCollector
from sop_verified.tools.tlog_receipt import ProofBundle

__all__ = ["public_routes"]


_NO_STORE = {"Cache-Control": "no-store"}

NOT_WITNESSED_RETRY_AFTER = 1
"""Seconds a client waits before asking again for a receipt witnesses have not cosigned yet."""
_INDEX = re.compile(r"0|[1-9][0-9]{0,18}")


def _json(value: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    return Response(
        orjson.dumps(value), status_code=status, media_type="application/json", headers=headers
    )


def public_routes(state: ServerState) -> list[Route]:
    """Health, metrics, receipts and the OpenAPI document over ``state``."""
    spec = orjson.dumps(openapi_document())
    warnings: list[str] = []
    if state.unsafe_no_tls:
        warnings.append(
            "UNSAFE: the bridge plane runs without TLS (--unsafe-no-tls): no client is"
            " authenticated and any local process can ask for decisions as any principal"
        )

    async def live(request: HTTPRequest) -> Response:
        return _json({"status": "live"}, headers=_NO_STORE)

    async def ready(request: HTTPRequest) -> Response:
        ok, why = state.ready()
        body = {"ready": ok, "state": str(state.sop.health), "detail": why, "warnings": warnings}
        return _json(body, 200 if ok else 503, headers=_NO_STORE)

    async def metrics(request: HTTPRequest) -> Response:
        text = await run_in_threadpool(state.metrics.render)
        return Response(text, media_type=CONTENT_TYPE_LATEST, headers={"Cache-Control": "no-store"})

    async def openapi(request: HTTPRequest) -> Response:
        return Response(spec, media_type="application/json")

    refresh = TailRefresh(lambda: state.sop.log)

    def prove(index: int) -> ProofBundle:
        sop = state.sop
        if index >= sop.log.size:  # maybe logged by another replica of a shared log
            refresh(force=True)
        return prove_published(sop.log, sop.witnesses, index)

    async def receipt(request: HTTPRequest) -> Response:
        text = request.path_params["index"]
        if not _INDEX.fullmatch(text):  # ASCII digits only: `isdigit` takes `²` and `٣`
            return problem(400, "bad_index", f"`{text[:40]}` is not a log index", stage="schema")
        try:
            bundle = await run_in_threadpool(prove, int(text))
        except NotWitnessedError as exc:  # in the log, not yet cosigned by enough witnesses
            after = {"Retry-After": str(NOT_WITNESSED_RETRY_AFTER)}
            return problem(503, "not_witnessed", str(exc), headers=after, published=exc.published)
        except InputError as exc:
            return problem(404, "not_in_log", str(exc))
        return Response(
            bundle.to_text(),
            media_type="text/plain; charset=utf-8",
            headers={"Cache-Control": "no-cache"},
        )

    state.metrics.collect_hooks.append(_sampler(state))
    state.metrics.registry.register(WitnessCollector(state.sop))
    state.metrics.registry.register(NatsSinkCollector(state.sop))
    return [
        Route("/health/live", live, methods=["GET"]),
        Route("/health/ready", ready, methods=["GET"]),
        Route("/metrics", metrics, methods=["GET"]),
        Route("/openapi.json", openapi, methods=["GET"]),
        Route("/v1/receipts/{index}", receipt, methods=["GET"]),
    ]


def _sampler(state: ServerState) -> Any:
    def sample(metrics: Metrics) -> None:
        sop = state.sop
        health = sop.health
        for member in Health:
            metrics.health.labels(str(member)).set(1 if member is health else 0)
        metrics.queue_depth.set(state.queue.depth)
        try:
            gate = sop.gate
        except Exception:  # boot did not finish: no gate to sample
            gate = None
        if isinstance(gate, Z3ProofGate):
            waiting, restarts = gate.worker_stats()
            metrics.gate_queue.set(waiting)
            metrics.worker_restarts.set(restarts)
        try:
            log = sop.log
        except Exception:  # boot did not finish: no log to sample
            return
        size = log.size
        metrics.log_size.set(size)
        now = time.time()
        if size != state.last_size:  # every batch signs a checkpoint: a new size is a new one
            state.last_size, state.last_signed = size, now
        if state.last_signed is not None:
            metrics.checkpoint_age.set(max(0.0, now - state.last_signed))

    return sample


def committed_openapi_path(root: Path) -> Path:
    """Where the repository keeps the generated OpenAPI document."""
    return root / "docs" / "openapi.json"
