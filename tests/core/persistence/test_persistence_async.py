"""``SOP.persist_async``: coroutines' writes batched and committed off the event loop (ADR 0010).

Each test runs its coroutines with ``asyncio.run``. The batch runs in SOP's
writer thread; some tests hold that thread (a batch that waits on an event)
to know what is queued, what the loop does meanwhile, and what a cancelled
or failing caller gets.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable
from typing import Any

import pytest
from conftest import Env, assert_own_answers, batch_writes

from sop_verified.core.request import Decision, Permission, Stage

CALLERS = 12


class Held:
    """The first batch waits in the writer thread until ``release`` is set."""

    def __init__(self, env: Env, monkeypatch: pytest.MonkeyPatch) -> None:
        controller = env.sop.persistence
        assert controller is not None
        real = controller.execute_linked_batch
        self.entered = threading.Event()  # the first batch is in the writer thread
        self.release = threading.Event()
        self.sizes: list[int] = []

        def held(submit_batch: Any, writes: Any) -> Any:
            if not self.sizes:
                self.entered.set()
                assert self.release.wait(30), "the test never released the first batch"
            self.sizes.append(len(writes))
            return real(submit_batch, writes)

        monkeypatch.setattr(controller, "execute_linked_batch", held)


async def _until(check: Callable[[], bool]) -> None:
    for _ in range(3000):
        if check():
            return
        await asyncio.sleep(0.001)
    raise AssertionError("the condition never held")


def _queued(env: Env) -> int:
    writes = env.sop.services.async_writes
    assert writes is not None
    return sum(len(q.items) for q in writes._loops.values())


def test_coroutines_share_batches_and_each_gets_its_own_answer(
    env: Env, monkeypatch: pytest.MonkeyPatch
) -> None:
    held = Held(env, monkeypatch)
    datas, requests = batch_writes(env, "a", "async blob", CALLERS, forged=5)

    async def main() -> list[Decision]:
        first = asyncio.ensure_future(env.sop.persist_async(requests[0], datas[0]))
        await _until(held.entered.is_set)
        rest = [
            asyncio.ensure_future(env.sop.persist_async(r, d))
            for r, d in zip(requests[1:], datas[1:], strict=True)
        ]
        await _until(lambda: _queued(env) == CALLERS - 1)
        held.release.set()
        return [await first, *[await f for f in rest]]

    decisions = asyncio.run(main())

    assert held.sizes == [1, CALLERS - 1]  # the other eleven went in one batch
    assert [d.request_id for d in decisions] == [r["request_id"] for r in requests]
    assert_own_answers(env, "a", datas, decisions, forged=5)


def test_the_loop_runs_while_a_batch_is_being_committed(
    env: Env, monkeypatch: pytest.MonkeyPatch
) -> None:
    held = Held(env, monkeypatch)
    ticks: list[int] = []

    async def heartbeat() -> None:
        while len(ticks) < 20:
            ticks.append(len(ticks))
            await asyncio.sleep(0.001)
        held.release.set()  # only a loop that kept running gets here

    async def main() -> Decision:
        write = env.sop.persist_async(
            env.request("drac", "artifact.persist", "artifacts/drac/hb"), b"heartbeat"
        )
        d, _ = await asyncio.gather(write, heartbeat())
        return d

    assert asyncio.run(main()).allowed
    assert len(ticks) == 20


def test_writes_that_do_not_qualify_run_as_persist_does(env: Env) -> None:
    big = b"L" * (70 * 1024)  # a file in two steps, off the loop
    writes = [
        (env.request("drac", "artifact.persist", "artifacts/drac/q/small"), b"small"),
        (env.request("drac", "artifact.persist", "artifacts/drac/q/big"), big),
        (env.request("drac", "artifact.persist", "state/csp/mine"), b"mine"),  # not DRAC's
    ]

    async def main() -> list[Decision]:
        return list(await asyncio.gather(*(env.sop.persist_async(*w) for w in writes)))

    small, large_one, foreign = asyncio.run(main())
    assert small.allowed and small.write.size == 5
    assert large_one.allowed and large_one.write.size == len(big)
    assert env.read("drac", "artifacts/drac/q/big").data == big
    assert foreign.effect is Permission.DENY and foreign.reasons[-1].code == "foreign_scope"


@pytest.mark.parametrize("bad", [None, [1, 2], "x", 5, b"{"])
def test_a_malformed_request_is_recorded_and_denied(env: Env, bad: Any) -> None:
    d = asyncio.run(env.sop.persist_async(bad, b"x"))
    sync = env.sop.persist(bad, b"x")  # the blocking entry answers it the same way
    for answer in (d, sync):
        assert answer.effect is Permission.DENY and answer.reasons[0].stage is Stage.SCHEMA
        assert answer.log_index is not None
        assert env.log()[answer.log_index]["effect"] == "DENY"


def test_a_caller_cancelled_before_its_batch_writes_nothing(
    env: Env, monkeypatch: pytest.MonkeyPatch
) -> None:
    held = Held(env, monkeypatch)

    async def main() -> Decision:
        first = asyncio.ensure_future(
            env.sop.persist_async(
                env.request("drac", "artifact.persist", "artifacts/drac/c/kept"), b"kept"
            )
        )
        await _until(held.entered.is_set)
        gone = asyncio.ensure_future(
            env.sop.persist_async(
                env.request("drac", "artifact.persist", "artifacts/drac/c/gone"), b"gone"
            )
        )
        await _until(lambda: _queued(env) == 1)
        gone.cancel()
        held.release.set()
        with pytest.raises(asyncio.CancelledError):
            await gone
        return await first

    assert asyncio.run(main()).allowed
    assert held.sizes == [1]  # the cancelled write never reached a batch
    assert env.read("drac", "artifacts/drac/c/gone").data is None
    assert not [e for e in env.log() if e.get("name") == "c/gone"]


def test_after_close_persist_async_denies_without_a_traceback(env: Env) -> None:
    env.sop.close()
    request = env.request("drac", "artifact.persist", "artifacts/drac/closed")
    d = asyncio.run(env.sop.persist_async(request, b"late"))
    assert d.effect is Permission.DENY
    assert (d.reasons[0].stage, d.reasons[0].code) == (Stage.INTERNAL, "internal_error")


def test_event_loops_in_two_threads_each_get_their_own_answers(env: Env) -> None:
    out: dict[int, list[Decision]] = {}

    def loop_thread(k: int) -> None:
        async def main() -> list[Decision]:
            calls = [
                env.sop.persist_async(
                    env.request("drac", "artifact.persist", f"artifacts/drac/l{k}/{i}"),
                    f"loop {k} write {i}".encode(),
                )
                for i in range(6)
            ]
            return list(await asyncio.gather(*calls))

        out[k] = asyncio.run(main())

    threads = [threading.Thread(target=loop_thread, args=(k,)) for k in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    for k in range(2):
        for i, d in enumerate(out[k]):
            assert d.allowed, d.reasons
            assert d.write.name == f"l{k}/{i}"
            assert (
                env.read("drac", f"artifacts/drac/l{k}/{i}").data == f"loop {k} write {i}".encode()
            )
