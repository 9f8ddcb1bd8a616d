"""The blob-layout benchmark replays real writes through both layouts and checks what they kept."""

from __future__ import annotations

import bench_blob_layout
import pytest


@pytest.mark.parametrize("layout", bench_blob_layout.LAYOUTS)
def test_each_layout_keeps_one_row_per_blob_and_reports_its_cost(layout: str) -> None:
    got = bench_blob_layout.run_layout(layout, objects=40, batches=3, writes=4)
    assert got["layout"] == layout
    assert got["wall_us_per_write"] > 0 and got["cpu_us_per_write"] > 0
    assert got["median_batch_ms"] > 0


def test_a_layout_that_loses_blobs_is_reported(monkeypatch: pytest.MonkeyPatch) -> None:
    # the view's trigger stores a blob: one that keeps nothing must fail the replay, not report
    schema = bench_blob_layout.INLINE_SCHEMA.split("CREATE TRIGGER")[0] + (
        "CREATE TRIGGER persist_inline_in_insert INSTEAD OF INSERT ON persist_inline_in"
        " BEGIN SELECT 1; END;"
    )
    monkeypatch.setattr(bench_blob_layout, "INLINE_SCHEMA", schema)
    with pytest.raises(RuntimeError, match="kept 0 blobs"):
        bench_blob_layout.run_layout("effect index", objects=8, batches=1, writes=4)
