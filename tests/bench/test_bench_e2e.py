"""The end-to-end bench still works: its operations are ALLOW, with the effect really written.

No timing is asserted here. These tests keep the bench's scenario honest in
CI: every persist it times is an ALLOW whose 4 KiB landed in the scope (read
back by digest), a refusal would be counted (the bench then exits 2), the
repeated paths meet recorded verdicts (no new proof during a run), the stage
probes put SOP's methods back, and a whole tiny run goes through.
"""

from __future__ import annotations

import itertools
import json
import threading
import time
from collections.abc import Iterator
from functools import partial
from pathlib import Path

import bench_e2e
import pytest
from e2e_probes import Probes, categorize
from e2e_report import render
from e2e_scenario import Scenario, problem, run_clients, run_coroutines, sha256_hex

from sop_verified.core.request import Decision, Permission


@pytest.fixture
def scenario(tmp_path: Path) -> Iterator[Scenario]:
    s = Scenario(tmp_path, clients=2, names=2)
    s.warm()
    yield s
    s.close()


def _read_back(s: Scenario, data: bytes) -> bytes | None:
    request = {
        "request_id": f"read-{sha256_hex(data)[:16]}",
        "principal": "drac",
        "action": "artifact.read",
        "resource": f"artifacts/drac/sha256/{sha256_hex(data)}",
        "capability": s.token,
    }
    return s.sop.read(request).data


def test_concurrent_persists_are_allowed_and_written(scenario: Scenario) -> None:
    done: list[tuple[int, int, Decision]] = []
    lock = threading.Lock()

    def op(client: int, i: int) -> Decision:
        decision = scenario.persist("t", client, i)
        with lock:
            done.append((client, i, decision))
        return decision

    run = run_clients("t", 2, 3, op, effect=True)

    assert run.problems == []
    assert sorted((c, i) for c, i, _ in done) == [(c, i) for c in range(2) for i in range(3)]
    for client, i, decision in done:
        data = scenario.payload("t", client, i)
        assert decision.effect is Permission.ALLOW
        assert decision.write.outcome == "written"
        assert decision.write.digest == "sha256:" + sha256_hex(data)
        assert _read_back(scenario, data) == data
    summary = run.summary()
    assert summary["ops"] == 6
    assert summary["refused"] == 0
    assert summary["log_batches"] >= 1


def test_repeated_paths_meet_recorded_verdicts(scenario: Scenario) -> None:
    store = scenario.sop.store
    assert store is not None
    before = store.verdicts.digests()

    run = run_clients("r", 2, 4, lambda c, i: scenario.persist("r", c, i), effect=True)

    assert run.problems == []
    # no obligation was new: every verdict came from the record
    assert store.verdicts.digests() == before


def test_decision_only_run_allows_without_effect(scenario: Scenario) -> None:
    decision = scenario.submit("u", 0, 0)

    assert decision.effect is Permission.ALLOW
    assert decision.log_index is not None
    assert decision.write is None
    assert problem(decision, effect=False) is None


def test_denied_operation_is_counted_as_refused(scenario: Scenario) -> None:
    scenario.token = "sopcap1.forged.e30.AAAA"

    run = run_clients("d", 1, 2, lambda c, i: scenario.persist("d", c, i), effect=True)

    assert len(run.problems) == 2
    assert run.problems[0].startswith("DENY capability/")
    assert run.summary()["refused"] == 2


def test_allow_without_written_effect_is_a_problem() -> None:
    decision = Decision(Permission.ALLOW, (), "x", "cap", ("p",), 3)

    assert problem(decision, effect=True) is not None
    assert problem(decision, effect=False) is None


def test_probes_time_calls_and_restore_the_originals() -> None:
    class Target:
        def work(self, x: int) -> int:
            return x + 1

    original = vars(Target)["work"]
    probes = Probes()
    with probes.active([(Target, "work", "work")]):
        assert Target().work(1) == 2
        assert vars(Target)["work"] is not original

    assert vars(Target)["work"] is original
    assert len(probes.samples["work"]) == 1


def test_categorize_names_the_waits_and_the_cpu() -> None:
    wait = [
        "_client_loop (e2e_scenario.py:1)",
        "GroupCommit.submit (sop_verified/tools/group_commit.py:77)",
        "Condition.wait (threading.py:327)",
    ]
    jcs = ["_client_loop (e2e_scenario.py:1)", "dump (rfc8785/_impl.py:238)"]

    assert categorize(wait).startswith("waiting for its group commit")
    assert categorize(jcs).startswith("canonical JSON")


def test_open_loop_latency_counts_the_time_queued_behind_a_slow_system() -> None:
    # one submitter, an operation taking 20 ms, offered 1,000/s: each operation
    # is due 1 ms after the last but starts only when the last returned, so its
    # latency (from when it was due) grows by about 19 ms each time
    run = run_clients("slow", 1, 5, lambda c, i: time.sleep(0.02), effect=False, rate=1000)

    lat = run.latencies
    assert len(lat) == 5 and lat[0] >= 0.02
    assert all(b > a + 0.015 for a, b in itertools.pairwise(lat))
    assert run.summary()["offered_ops_per_s"] == 1000


def test_open_loop_submitters_wait_for_their_schedule() -> None:
    # 2 submitters, 6 instant operations offered at 100/s: the run lasts the
    # schedule (about 50 ms), and no operation waits for another
    run = run_clients("paced", 2, 3, lambda c, i: None, effect=False, rate=100)

    assert 0.045 <= run.seconds < 0.5
    assert max(run.latencies) < 0.02


def test_coroutine_submitters_are_allowed_written_and_paced(scenario: Scenario) -> None:
    closed = run_coroutines("c", 2, 4, partial(scenario.persist_async, "c"), effect=True)
    assert len(closed.latencies) == 8 and closed.problems == []
    assert closed.receipts == 16 and len(closed.tree_sizes) < 8  # writes shared batches

    async def instant(_c: int, _i: int) -> None:
        return None

    paced = run_coroutines("p", 2, 3, instant, effect=False, rate=100)
    assert 0.045 <= paced.seconds < 0.5  # the schedule's length: it waited for it
    assert max(paced.latencies) < 0.02


def test_tiny_whole_run_goes_through() -> None:
    result = bench_e2e.run(4, 2, profile=False)

    assert result["refused"] == 0
    assert {"seq", "thr", "sub", "fresh", "fs", "log", "open5000"} <= set(result["runs"])
    assert {"aio", "aopen1000", "aopen5000"} <= set(result["runs"])
    assert all(r["ops"] >= 2 for r in result["runs"].values())
    text = render(result)
    assert "total: sop.persist" in text
    assert "coroutine submitters, sop.persist_async 4 KiB" in text
    assert "FAIL" in text or "PASS" in text
    assert json.loads(json.dumps(result)) == result
