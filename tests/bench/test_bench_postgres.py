"""The PostgreSQL bench still works: replicas, floor, cost split and verdicts all report.

No timing is asserted. The fast tests check the pieces that could silently
lie: the merged latency percentile, the floor's transaction, the cost split's
arithmetic and the verdicts. The slow one runs the whole bench for about a
second a run against the machine's PostgreSQL (it fails, never skips, when
the server is down: ``pg_server``).
"""

from __future__ import annotations

import json
from pathlib import Path

import bench_postgres
import pytest
from http_load import wrk_available
from pg_floor import pgbench_available, script
from pg_probe import LOCK_LABEL, REBUILD, TIMES
from pg_replicas import percentile
from pg_report import render, split_costs, targets
from pg_server import DSN, connect


def test_the_merged_percentile_is_the_nearest_rank_over_every_count() -> None:
    hist = {1000: 98, 2000: 1, 90000: 1}  # 100 requests: p99 is the 99th smallest

    assert percentile(hist, 50) == 1000
    assert percentile(hist, 99) == 2000
    assert percentile(hist, 100) == 90000


def test_the_floor_transaction_locks_the_head_inserts_the_batch_and_moves_it() -> None:
    lines = script(16, 640).splitlines()

    assert lines[:3] == [
        "\\set n 16",
        "BEGIN;",
        "SELECT size AS head FROM floor_head WHERE id = 1 FOR UPDATE \\gset",
    ]
    assert (
        lines[4].startswith("INSERT INTO floor_entries") and "repeat(md5(i::text), 20)" in lines[4]
    )
    assert "generate_series(:head::bigint, :next::bigint - 1)" in lines[4]
    assert lines[5:] == ["UPDATE floor_head SET size = :next::bigint WHERE id = 1;", "END;"]


def _attempt(
    outcome: str, entries: int, trips: int, held: float, rebuilt: bool
) -> dict[str, object]:
    times = dict.fromkeys(TIMES, 0.001)
    times.update(statements_s=held / 4, commit_s=held / 2, held_s=held)
    return {
        "outcome": outcome,
        "entries": entries,
        "round_trips": trips,
        "rebuild_round_trips": 4 if rebuilt else 0,
        "rebuilt": rebuilt,
        "wall_s": held + 0.002,
        "at": 11.0,
        **times,
    }


def test_the_cost_split_counts_per_committed_batch_over_every_replica(tmp_path: Path) -> None:
    one = {
        "log_batches": [
            [
                0.010,
                18,
                True,
                10.5,
                {LOCK_LABEL: [1, 0.001], REBUILD + "SELECT id, hashes": [1, 0.0005]},
            ],
            [0.012, 11, True, 11.0, {LOCK_LABEL: [2, 0.002]}],
            [0.3, 9, True, 9.0, {LOCK_LABEL: [5, 0.5]}],  # warm-up
        ],
        "attempts": [
            _attempt("committed", 10, 11, 0.004, rebuilt=True),
            _attempt("failed", 10, 3, 0.0, rebuilt=False),
            {**_attempt("committed", 99, 99, 0.5, rebuilt=False), "at": 9.5},  # warm-up
        ],
    }
    two = {
        "log_batches": [
            [0.020, 11, True, 11.5, {LOCK_LABEL: [1, 0.001]}],
            [0.09, 48, False, 11.9, {}],
        ],
        "attempts": [_attempt("committed", 20, 12, 0.006, rebuilt=False)],
    }
    files = []
    for k, data in enumerate((one, two)):
        files.append(tmp_path / f"{k}.json")
        files[-1].write_text(json.dumps(data))

    costs = split_costs(files, window=(10.0, 12.0))  # what ended before 10.0 is left out

    assert costs["committed"] == 2 and costs["failed"] == 1 and costs["failed_batches"] == 1
    assert costs["committed_per_s"] == 1.0 and costs["rebuilt_per_batch"] == 0.5
    assert costs["entries_per_batch"] == 15.0 and costs["round_trips_per_commit"] == 11.5
    assert costs["rebuild_round_trips_per_commit"] == 2.0
    assert costs["round_trips_per_batch"] == 22.0  # (18 + 11 + 11 + 48) / 4, the failed one too
    assert costs["median_ms"]["held_s"] == 5.0 and costs["mean_ms"]["commit_s"] == 2.5
    assert costs["statements"][LOCK_LABEL] == {"per_batch": 2.0, "mean_ms": 1.0}
    assert costs["statements"][REBUILD + "SELECT id, hashes"]["per_batch"] == 0.5


def test_the_verdicts_read_the_two_replica_run_and_miss_when_a_receipt_never_came() -> None:
    receipts = {"waits_s": [0.01] * 98 + [2.0] * 2, "missed": 0}  # p99 of 100: the 99th
    run = {"req_per_s": 2600.0, "p99_ms": 40.0, "receipts": receipts}

    def verdicts() -> list[str]:
        return [t["verdict"] for t in targets({"postgres": {"2": run}})]

    assert verdicts() == ["PASS", "PASS", "MISS"]
    receipts["waits_s"] = [0.01] * 99 + [2.0]
    assert verdicts() == ["PASS", "PASS", "PASS"]
    receipts["missed"] = 1  # a receipt never served is not averaged away
    assert verdicts() == ["PASS", "PASS", "MISS"]
    run.update(req_per_s=2499.0, p99_ms=50.1)
    assert verdicts()[:2] == ["MISS", "MISS"]


@pytest.mark.slow
@pytest.mark.skipif(not (wrk_available() and pgbench_available()), reason="needs wrk and pgbench")
def test_a_tiny_run_reports_every_table_and_target() -> None:
    connect().close()  # fails, saying how to start it, when the server is down

    result = bench_postgres.run(
        1, probe_seconds=1, floor_seconds=1, dsn=DSN, replicas=(2,), wider=(48,)
    )

    assert result["problems"] == []
    for x in (result["sqlite"], *result["postgres"].values(), result["wider"]["48"]):
        assert x["allow"] > 0 and x["deny"] > 0
        assert x["log_entries_added"] >= x["allow"] + x["deny"]
    two = result["postgres"]["2"]
    assert two["receipts"]["waits_s"] and two["receipts"]["error"] is None
    assert set(result["costs"]) == {"2"} and result["costs"]["2"]["committed"] > 0
    assert [f["batch"] for f in result["floor"]][1] == 1 and result["floor"][0]["tx_per_s"] > 0
    text = render(result)
    for target in result["targets"]:
        assert f"| {target['what']} |" in text
    assert text.count("| PostgreSQL, ") == 2 and "raw floor" in text
