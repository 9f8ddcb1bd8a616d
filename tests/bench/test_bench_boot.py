"""The boot bench still works: it builds a real data directory and times READY boots.

No timing is asserted. The tests keep the bench honest in CI: the log really
holds the entries asked for, the bulk entries leave the derived tables as the
writes left them (no pending row that boot repair would act on), every boot
is READY with the state check among the timed services, and the probes put
the composition root's steps back.
"""

from __future__ import annotations

from pathlib import Path

import bench_boot

from sop_verified.nexus import root as composition


def test_a_tiny_run_builds_the_log_and_times_ready_boots(tmp_path: Path) -> None:
    steps = composition._STEPS
    data = tmp_path / "data"
    built = bench_boot.build(data, entries=600, objects=12, names=3, capabilities=10)
    assert built["entries_by_sop"] + built["entries_in_bulk"] == 600
    assert built["revoked"] == 1

    boot = bench_boot.time_boots(data, 2)

    rows = boot["rows"]
    assert rows["log_entries"] >= 600  # a boot logs its own entries after the bulk ones
    assert rows["persist_effects"] == rows["persist_inline"] == 12
    assert rows["persist_versions"] == 3 and rows["persist_pending"] == 0
    assert rows["capabilities"] == 11 and rows["revocations"] == 1
    assert set(boot["services_median_s"]) == set(composition.SERVICE_GRAPH)
    assert boot["services_median_s"]["state"] > 0
    assert composition._STEPS is steps  # the probes are gone


def test_the_report_names_the_target_and_a_kept_directory_boots_again(tmp_path: Path) -> None:
    result = bench_boot.run(400, [4], boots=1, names=None, capabilities=0, keep=tmp_path)
    text = bench_boot.render(result)
    assert "<= 2 s" in text and "| state (start + self-test, s) |" in text
    assert result["configs"][0]["built"]["names"] == 1  # 4 writes, 8 versions kept per name

    again = bench_boot.run(400, [4], boots=1, names=None, capabilities=0, keep=tmp_path, reuse=True)

    assert again["configs"][0]["built"] == result["configs"][0]["built"]  # not built twice
    assert again["configs"][0]["boot"]["rows"]["persist_effects"] == 4
