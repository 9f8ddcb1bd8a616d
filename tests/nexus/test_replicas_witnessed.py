"""Two replicas on one PostgreSQL log publish through one witness: racing, never an alarm.

Both replicas (in this process, as in ``test_replicas.py``) submit their own
checkpoints of the shared log to the same `sop witness serve` process while both
decide at once. The witness sees one history, grown by either replica; a replica
it was moved ahead of by the other is no rollback, and a replica that loses a
race for it asks again. Neither raises the alarm, both publish, and every
published checkpoint is cosigned and extends the one before.
"""

from __future__ import annotations

import threading
import time
from pathlib import Path

from pg_server import DSN, scratch_schema
from served_witness import ServedWitness

from sop_verified.core.health import Health
from sop_verified.nexus.config import init_replica
from sop_verified.nexus.sop import SOP
from sop_verified.tools.cosignature import verify_cosignatures
from sop_verified.tools.witness_config import init_witness_dir

READ = {"principal": "drac", "action": "artifact.read", "resource": "artifacts/drac/x"}


def test_two_replicas_racing_to_one_witness_never_raise_the_alarm(tmp_path: Path) -> None:
    one, two = tmp_path / "one", tmp_path / "two"
    with scratch_schema() as schema:
        SOP.init(one, dsn=DSN, schema=schema)
        log_vkey = (one / "keys" / "checkpoint.vkey").read_text().strip()
        init_witness_dir(tmp_path / "w", "witness.example/w1", [(log_vkey, None)])
        witness = ServedWitness(tmp_path / "w")
        try:
            table = (
                f'[witnesses]\nwitness = [{{ url = "{witness.url}", vkey = "{witness.vkey}" }}]\n'
            )
            with (one / "sop.toml").open("a") as fh:
                fh.write("\n" + table + "max_backoff_seconds = 1\n")
            a = SOP.boot(one)
            init_replica(two, one)
            b = SOP.boot(two)
            try:
                assert a.health is b.health is Health.READY
                threads = [
                    threading.Thread(target=_decide, args=(sop, name))
                    for sop, name in ((a, "a"), (b, "b"))
                ]
                for t in threads:
                    t.start()
                for t in threads:
                    t.join()
                a.submit({**READ, "request_id": "last-a"})
                b.submit({**READ, "request_id": "last-b"})
                races = sum(  # answers that said another replica moved the witness
                    w.outcomes.get("old_size_mismatch", 0)
                    for sop in (a, b)
                    if sop.witnesses is not None
                    for w in sop.witnesses.stats()[1]
                )
                assert races >= 1
                for sop in (a, b):
                    _until(lambda sop=sop: _published(sop) == sop.log.size)
                    published = sop.witnesses.published if sop.witnesses else None
                    assert published is not None
                    verify_cosignatures(published.note, [witness.verifier], minimum=1)
                    assert sop.health is Health.READY, sop.status()["services"]["witness"]
                    sop.log.check_extends(published.note)
            finally:
                b.close()
                a.close()
        finally:
            assert witness.stop() == 0, witness.stderr()


def _decide(sop: SOP, name: str) -> None:
    for n in range(20):
        sop.submit({**READ, "request_id": f"{name}-{n}"})


def _published(sop: SOP) -> int:
    published = sop.witnesses.published if sop.witnesses else None
    return 0 if published is None else published.size


def _until(check: object, timeout: float = 10.0) -> None:
    assert callable(check)
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.02)
