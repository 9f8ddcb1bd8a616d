"""The worker pool: caps, deadlines, replacement of dead workers, thread safety, clean shutdown."""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from sop_verified.tools.workerpool import CallResult, WorkerLimits, WorkerPool

WORKER = """
import os, sys, time
from sop_verified.tools.workerproc import serve

def make(init):
    def handle(req):
        op = req.get("op")
        if op == "echo":
            return {"echo": req.get("value"), "pid": os.getpid()}
        if op == "sleep":
            time.sleep(req["seconds"])
            return {"slept": True}
        if op == "exit":
            os._exit(int(req["code"]))
        if op == "raise":
            raise ValueError("boom")
        if op == "hog":
            block = bytearray(int(req["bytes"]))
            return {"len": len(block)}
        if op == "huge":
            return {"blob": "x" * (9 << 20)}
        if op == "retire":
            return {"retired": True, "_retire": True}
        if op == "spin":
            while True:
                pass
        return {"unknown": op}
    return handle, {"hello": init.get("greeting", "hi")}

serve(make)
"""


@pytest.fixture(scope="module")
def module_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("workers")
    (path / "sop_test_echo_worker.py").write_text(WORKER)
    return path


@pytest.fixture
def pool_factory(module_dir: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    monkeypatch.setenv(
        "PYTHONPATH", os.pathsep.join([str(module_dir), os.environ.get("PYTHONPATH", "")])
    )
    pools: list[WorkerPool] = []

    def make(**kw: Any) -> WorkerPool:
        limits = kw.pop(
            "limits", WorkerLimits(memory_bytes=512 << 20, cpu_seconds=5, wall_seconds=5.0)
        )
        pool = WorkerPool("sop_test_echo_worker", limits=limits, **kw)
        pools.append(pool)
        return pool

    yield make
    for pool in pools:
        pool.close()


def test_call_round_trip_and_workers_are_reused(pool_factory: Any) -> None:
    pool = pool_factory(size=1)
    first = pool.call({"op": "echo", "value": [1, "two"]})
    second = pool.call({"op": "echo", "value": None})
    assert first.ok and first.reply["echo"] == [1, "two"]
    assert first.pid == second.pid == first.reply["pid"]


@pytest.mark.parametrize(
    ("request_", "failure", "detail"),
    [
        ({"op": "exit", "code": 101}, "memory", "exit 101"),
        ({"op": "exit", "code": 3}, "crash", "status 3"),
        ({"op": "raise"}, "crash", "ValueError"),
        ({"op": "huge"}, "protocol", "-byte frame"),
    ],
)
def test_worker_failure_is_reported_and_the_worker_replaced(
    pool_factory: Any, request_: dict[str, Any], failure: str, detail: str
) -> None:
    pool = pool_factory(size=1)
    before = pool.call({"op": "echo"}).pid
    result = pool.call(request_)
    assert (result.ok, result.failure) == (False, failure)
    assert detail in result.detail
    after = pool.call({"op": "echo"})
    assert after.ok and after.pid != before


def test_wall_clock_deadline_kills_the_worker(pool_factory: Any) -> None:
    pool = pool_factory(size=1)
    started = time.perf_counter()
    result = pool.call({"op": "sleep", "seconds": 30}, wall_seconds=0.5)
    assert result.failure == "timeout" and "killed" in result.detail
    assert time.perf_counter() - started < 2.0
    assert pool.call({"op": "echo"}).ok


def test_cpu_cap_is_enforced_per_call(pool_factory: Any) -> None:
    limits = WorkerLimits(memory_bytes=512 << 20, cpu_seconds=1, wall_seconds=10.0)
    pool = pool_factory(size=1, limits=limits)
    result = pool.call({"op": "spin"})
    assert result.failure == "cpu"
    assert pool.call({"op": "echo"}).ok


def test_memory_cap_is_enforced(pool_factory: Any) -> None:
    limits = WorkerLimits(memory_bytes=256 << 20, cpu_seconds=5, wall_seconds=10.0)
    pool = pool_factory(size=1, limits=limits)
    assert pool.call({"op": "hog", "bytes": 1 << 20}).ok
    result = pool.call({"op": "hog", "bytes": 1 << 30})
    assert result.failure == "memory"
    assert pool.call({"op": "echo"}).ok


def test_retire_flag_returns_the_reply_and_replaces_the_worker(pool_factory: Any) -> None:
    pool = pool_factory(size=1)
    first = pool.call({"op": "retire"})
    assert first.ok and first.reply == {"retired": True}
    assert pool.call({"op": "echo"}).pid != first.pid


def test_worker_is_replaced_after_max_calls(pool_factory: Any) -> None:
    limits = WorkerLimits(memory_bytes=512 << 20, cpu_seconds=5, wall_seconds=5.0, max_calls=2)
    pool = pool_factory(size=1, limits=limits)
    pids = [pool.call({"op": "echo"}).pid for _ in range(5)]
    assert pids[0] == pids[1] != pids[2] == pids[3] != pids[4]


def test_hello_check_can_refuse_workers(pool_factory: Any) -> None:
    pool = pool_factory(
        size=1,
        init={"greeting": "hostile"},
        hello_check=lambda h: "" if h["hello"] == "hi" else "bad hello",
    )
    result = pool.call({"op": "echo"})
    assert result.failure == "start" and "bad hello" in result.detail
    assert pool.pids() == []


def test_busy_pool_times_out_waiting_for_a_worker(pool_factory: Any) -> None:
    limits = WorkerLimits(
        memory_bytes=512 << 20, cpu_seconds=5, wall_seconds=3.0, start_seconds=0.2
    )
    pool = pool_factory(size=1, limits=limits)
    pool.warm()
    thread = threading.Thread(target=pool.call, args=({"op": "sleep", "seconds": 2},))
    thread.start()
    time.sleep(0.2)
    result = pool.call({"op": "echo"}, wall_seconds=0.1)
    thread.join()
    assert result.failure == "busy"


def test_concurrent_calls_use_all_workers_and_all_answer(pool_factory: Any) -> None:
    pool = pool_factory(size=2)
    pool.warm()
    results: list[CallResult] = []
    lock = threading.Lock()

    def work(i: int) -> None:
        reply = pool.call({"op": "echo", "value": i})
        with lock:
            results.append(reply)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(20)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(r.reply["echo"] for r in results) == list(range(20))
    assert len({r.pid for r in results}) == 2


def test_close_stops_workers_and_later_calls_fail_closed(pool_factory: Any) -> None:
    pool = pool_factory(size=2)
    pool.warm()
    pids = pool.pids()
    assert len(pids) == 2
    with pool:
        pass
    assert pool.closed and pool.pids() == []
    for pid in pids:
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline and Path(f"/proc/{pid}").exists():
            time.sleep(0.05)
        assert (
            not Path(f"/proc/{pid}").exists()
            or "Z" in Path(f"/proc/{pid}/stat").read_text().split()[2]
        )
    assert pool.call({"op": "echo"}).failure == "closed"


def test_limits_are_validated() -> None:
    with pytest.raises(ValueError, match="64 MiB"):
        WorkerLimits(memory_bytes=1 << 20)
    with pytest.raises(ValueError, match="positive"):
        WorkerLimits(wall_seconds=0)
    with pytest.raises(ValueError, match="at least 1"):
        WorkerPool("x", size=0)
