"""Concurrent persists are decided and committed in batches, each caller getting its own answer.

``SOP.persist`` hands a linked write (ADR 0007) to ``LinkedWrites``: one
caller at a time decides every queued write through the kernel and commits
them in one transaction. These tests hold the first batch until the other
callers have queued, so the second batch is known to hold several writes,
and check that every caller gets the answer for its own request and bytes,
that a DENY in a batch stays a DENY, and that a batch failing outside the
kernel answers DENY without a traceback.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable
from typing import Any

import pytest
from conftest import Env, assert_own_answers, batch_writes

from sop_verified.core.request import Decision, Permission, Stage

CALLERS = 12


def _held_batches(env: Env, monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Record batch sizes; hold the first batch until every other caller has queued."""
    controller, pipeline = env.sop.persistence, env.sop.services.linked_writes
    assert controller is not None and pipeline is not None
    real = controller.execute_linked_batch
    sizes: list[int] = []

    def held(submit_batch: Any, writes: Any) -> Any:
        if not sizes:
            deadline = time.monotonic() + 30
            while len(pipeline._queue._queue) < CALLERS - 1 and time.monotonic() < deadline:
                time.sleep(0.001)
        sizes.append(len(writes))
        return real(submit_batch, writes)

    monkeypatch.setattr(controller, "execute_linked_batch", held)
    return sizes


def _run(calls: list[Any]) -> list[Decision]:
    out: list[Decision | None] = [None] * len(calls)
    gate = threading.Barrier(len(calls))

    def go(i: int) -> None:
        gate.wait()
        out[i] = calls[i]()

    threads = [threading.Thread(target=go, args=(i,)) for i in range(len(calls))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert all(d is not None for d in out)
    return [d for d in out if d is not None]


def test_concurrent_writes_share_a_batch_and_each_gets_its_own_answer(
    env: Env, monkeypatch: pytest.MonkeyPatch
) -> None:
    sizes = _held_batches(env, monkeypatch)
    datas, requests = batch_writes(env, "b", "blob", CALLERS, forged=3)

    decisions = _run(
        [lambda r=r, d=d: env.sop.persist(r, d) for r, d in zip(requests, datas, strict=True)]
    )

    assert sizes[0] == 1 and max(sizes) > 1 and sum(sizes) == CALLERS
    assert [d.request_id for d in decisions] == [r["request_id"] for r in requests]
    assert_own_answers(env, "b", datas, decisions, forged=3)
    entries = env.log()
    effects = [e for e in entries if e.get("type") == "persist.effect"]
    assert len(effects) == CALLERS - 1


def test_writes_that_do_not_qualify_take_two_steps_beside_a_batch(env: Env) -> None:
    big = b"L" * (70 * 1024)  # larger than a database-kept blob: a file, two steps
    writes = [
        (env.request("drac", "artifact.persist", "artifacts/drac/q/small"), b"small"),
        (env.request("drac", "artifact.persist", "artifacts/drac/q/big"), big),
        (env.request("drac", "artifact.persist", "state/csp/mine"), b"mine"),  # not DRAC's
    ]

    small, large_one, foreign = _run([lambda w=w: env.sop.persist(*w) for w in writes])

    assert small.allowed and small.write.size == 5
    assert large_one.allowed and large_one.write.size == len(big)
    assert foreign.effect is Permission.DENY
    assert foreign.reasons[-1].code == "foreign_scope"


Entry = Callable[[Env, dict[str, Any], bytes], Decision]


def _persist_sync(env: Env, request: dict[str, Any], data: bytes) -> Decision:
    return env.sop.persist(request, data)


def _persist_async(env: Env, request: dict[str, Any], data: bytes) -> Decision:
    return asyncio.run(env.sop.persist_async(request, data))


@pytest.mark.parametrize("entry", [_persist_sync, _persist_async], ids=["persist", "async"])
def test_a_batch_failing_outside_the_kernel_answers_deny(
    env: Env, monkeypatch: pytest.MonkeyPatch, entry: Entry
) -> None:
    controller = env.sop.persistence
    assert controller is not None and env.sop.store is not None
    before = env.sop.store.log.log_size()

    def broken(*_a: Any) -> Any:
        raise RuntimeError("the batch broke")

    monkeypatch.setattr(controller, "execute_linked_batch", broken)
    d = entry(env, env.request("drac", "artifact.persist", "artifacts/drac/z"), b"z")
    monkeypatch.undo()

    assert d.effect is Permission.DENY and d.log_index is None
    assert (d.reasons[0].stage, d.reasons[0].code) == (Stage.INTERNAL, "internal_error")
    assert "RuntimeError" in d.reasons[0].message
    assert env.sop.store.log.log_size() == before
    assert env.read("drac", "artifacts/drac/z").data is None
    after = entry(env, env.request("drac", "artifact.persist", "artifacts/drac/z"), b"z")
    assert after.allowed  # the queue goes on
