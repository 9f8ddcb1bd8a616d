"""The README's NATS consumer (docs/examples/nats_consumer.py) receives SOP's events as written."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from nats_broker import Broker
from raw_events import ListEvents
from test_nats_sink import caught_up, config, wait_for

from sop_verified.events.nats_sink import NatsSink

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "docs" / "examples" / "nats_consumer.py"


def test_the_readme_shows_the_consumer_verbatim() -> None:
    body = SCRIPT.read_text().split('"""', 2)[2].strip()
    assert body in (ROOT / "README.md").read_text()


def test_the_consumer_receives_every_event_in_log_order(tmp_path: Path) -> None:
    with Broker(tmp_path / "nats") as broker:
        source = ListEvents("sop.local/log", 25)
        sink = NatsSink(source, config(broker.url), tmp_path / "cursor")
        sink.start()
        try:
            wait_for(caught_up(sink, 25))
        finally:
            sink.close()
        done = subprocess.run(
            [sys.executable, str(SCRIPT), broker.url, "25"],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines == [f"sop.local/log/{i} sop.test.v1" for i in range(25)]
