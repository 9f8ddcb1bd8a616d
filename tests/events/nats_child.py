"""A SOP process deciding without pause while its NATS sink publishes; the test kills it (-9).

Usage: ``python nats_child.py DATA run`` decides until killed, printing
``progress <log size> <acked> <the sink process's pid>`` every 20 ms;
``python nats_child.py DATA drain N`` decides N more times, waits until the broker
acknowledged every event, prints ``done <log size> <acked> <lag> <events>`` and exits 0.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

from nats_sop import Decider, decide

from sop_verified.core.health import Health
from sop_verified.nexus.sop import SOP


def main() -> None:
    data, mode = Path(sys.argv[1]), sys.argv[2]
    sop = SOP.boot(data)
    if sop.health is not Health.READY or sop.nats_sink is None:
        print(f"not ready: {sop.boot_report.detail}", flush=True)
        sys.exit(3)
    sink = sop.nats_sink
    if mode == "run":
        with Decider(sop, threads=2):
            while True:  # until SIGKILL
                stats = sink.stats()
                pid = getattr(sink, "pid", None) or 0  # the sink's own process, once started
                print(f"progress {stats.size} {stats.acked} {pid}", flush=True)
                time.sleep(0.02)
    for i in range(int(sys.argv[3])):
        decide(sop, "drain", i)
    deadline = time.monotonic() + 60
    while sink.stats().lag and time.monotonic() < deadline:
        time.sleep(0.02)
    stats = sink.stats()
    print(f"done {sop.log.size} {stats.acked} {stats.lag} {stats.size}", flush=True)
    sop.close()
    sys.exit(0 if stats.lag == 0 else 4)


if __name__ == "__main__":
    main()
