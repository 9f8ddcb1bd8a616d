"""The HTTP bench still works: it serves, drives every target and reports every row.

No timing is asserted. A tiny run keeps the bench honest in CI: ``sop serve``
starts in a child process and stops cleanly, ``/v1/decide`` gets both effects
and logs every decision, the report has every row and every target verdict.
"""

from __future__ import annotations

import bench_http
import pytest
from http_load import lua_script, wrk_available
from http_report import ROWS, render

pytestmark = pytest.mark.skipif(not wrk_available(), reason="wrk is not installed")


def test_the_bodies_alternate_effects_and_take_a_fresh_request_id() -> None:
    cases = bench_http.bodies("tok")
    assert [effect for effect, _ in cases] == [bench_http.ALLOW, bench_http.DENY] * 4
    for _, (prefix, suffix) in cases:
        assert prefix.endswith('"request_id":"bench-') and suffix.startswith('"')
    script = lua_script("/v1/decide", [b for _, b in cases])
    assert script.count("[====[") == 2 * len(cases) + 1 and "done = function" in script


@pytest.mark.slow
def test_a_tiny_run_reports_every_row_and_target() -> None:
    result = bench_http.run(1, 1, 100, tls=False)

    assert result["problems"] == [] and result["server_exit_status"] == 0
    runs = result["runs"]
    assert set(runs) == {key for key, _, _ in ROWS}
    for key in ("decide", "open_decide"):
        assert runs[key]["allow"] > 0 and runs[key]["deny"] > 0
        assert runs[key]["log_entries_added"] >= runs[key]["allow"] + runs[key]["deny"]
    assert "unavailable" in runs["tls"]
    text = render(result)
    assert len(result["targets"]) == 5
    for target in result["targets"]:
        assert f"| {target['what']} |" in text
    assert text.count("| closed |") == 4 and text.count("| open |") == 4
