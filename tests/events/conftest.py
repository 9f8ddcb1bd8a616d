"""Fixtures of the event tests: a data directory whose log holds every kind of entry SOP writes.

``rich_log`` runs ``sop demo`` (decisions, effects, DRAC, EMP and CSP records,
refusals, capabilities, policies, attestations), then the operator's other
logged acts on the same directory: a checkpoint-key rotation, retention, a
rollback authorisation, a snapshot revocation, a state-repair record, a
``sop config accept`` and a re-anchoring. Only ``persist.tombstone`` needs
versions a demo does not make; the projection tests build that one from
SOP's own entry function.
"""

from __future__ import annotations

from pathlib import Path

import orjson
import pytest

from sop_verified.nexus.demo import run_demo
from sop_verified.nexus.reanchor import unsafe_accept_current
from sop_verified.nexus.sop import SOP
from sop_verified.nexus.state_ops import accept_config

NOW = 1_800_100_000


def _clock() -> int:
    return NOW


def _logged_acts(data_dir: Path) -> None:
    with SOP.boot(data_dir, now=_clock) as sop:
        payloads = [p for _, _, p in sop.store.log.log_entries(0)]
        seal = next(e for e in map(orjson.loads, payloads) if e.get("type") == "csp.seal")
        sop.rotate_checkpoint_key()
        sop.apply_retention()
        sop.authorize_rollback(seal["session"], seal["snapshot"])
        sop.revoke_snapshot(seal["snapshot"], "superseded")
        services = sop.protocols
        assert services is not None
        sop.revoke_emp_key(services.emp_state.key_ids()[0], "rotated")  # the demo's EMP key
        sop.record_state_repair(
            {"ok": True, "log_verified": True, "total_mismatches": 0, "unauthenticated_rows": {}}
        )
        sop.registry.raise_alarm("witness", "witness `w1` refused the checkpoint: a fork")
    accept_config(data_dir)
    unsafe_accept_current(data_dir, NOW)


@pytest.fixture(scope="session")
def rich_log(tmp_path_factory: pytest.TempPathFactory) -> Path:
    data_dir = tmp_path_factory.mktemp("events") / "data"
    run_demo(data_dir)
    _logged_acts(data_dir)
    return data_dir
