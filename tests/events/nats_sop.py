"""A SOP data directory whose ``sop.toml`` sends events to a test broker, and decisions to log.

Decisions are requests without a capability: each is denied and logged (one log
entry per decision), which is all the sink's tests need from the decision path.
"""

from __future__ import annotations

import sqlite3
import threading
import time
from pathlib import Path

from sop_verified.core.request import Decision
from sop_verified.nexus.sop import SOP

__all__ = ["Decider", "checkpoint_sizes", "decide", "nats_data_dir"]


def nats_data_dir(data: Path, url: str, **settings: object) -> Path:
    """``SOP.init(data)`` with an ``[events.nats]`` table for ``url`` (and ``settings``)."""
    SOP.init(data)
    lines = ["", "[events.nats]", f'servers = ["{url}"]']
    for key, value in settings.items():
        lines.append(f"{key} = {str(value).lower() if isinstance(value, bool) else value!r}")
    with (data / "sop.toml").open("a", encoding="utf-8") as f:
        f.write("\n".join(lines).replace("'", '"') + "\n")
    return data


def checkpoint_sizes(data: Path) -> list[int]:
    """The sizes of the checkpoints ``data``'s SQLite log holds (read-only)."""
    db = sqlite3.connect(f"file:{data / 'sop.db'}?mode=ro", uri=True)
    try:
        return [int(r[0]) for r in db.execute("SELECT size FROM log_checkpoints ORDER BY size")]
    finally:
        db.close()


def decide(sop: SOP, tag: str, i: int) -> Decision:
    """One decision, logged (a DENY: no capability)."""
    return sop.submit(
        {
            "request_id": f"nats-{tag}-{i}",
            "principal": "drac",
            "action": "artifact.read",
            "resource": f"artifacts/drac/{tag}/{i}.bin",
        }
    )


class Decider:
    """``threads`` threads deciding without pause until stopped; records each latency."""

    def __init__(self, sop: SOP, threads: int = 4) -> None:
        self._sop = sop
        self._stop = threading.Event()
        self.latencies: list[float] = []
        self.unlogged = 0
        self._threads = [
            threading.Thread(target=self._loop, args=(k,), daemon=True) for k in range(threads)
        ]

    def _loop(self, k: int) -> None:
        i = 0
        while not self._stop.is_set():
            t0 = time.perf_counter()
            decision = decide(self._sop, f"t{k}", i)
            self.latencies.append(time.perf_counter() - t0)
            if decision.log_index is None:
                self.unlogged += 1
            i += 1

    def __enter__(self) -> Decider:
        for t in self._threads:
            t.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        for t in self._threads:
            t.join()
