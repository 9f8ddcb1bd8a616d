"""The fault test of issue 15 (item 5): three replicas on one PostgreSQL log, through faults.

The harness is :mod:`replicas_crash` (by hand: ``PYTHONPATH=. python3
tests/slow/replicas_crash.py --kills 20 --pg-restarts 5 --cuts 5``, which prints
the counts). Here, under load from 12 mutual-TLS clients spread over three
`sop serve` processes on a private PostgreSQL cluster, with a witness they all
publish through: 20 replicas killed with SIGKILL and restarted, 5 PostgreSQL
restarts (fast and immediate in turn; the last one down 25 s, past every wait of a
replica's), 5 replicas' sessions terminated. The seed
is printed; ``SOP_FAULTS_SEED`` replays it, ``SOP_FAULTS_KILLS`` changes the
number of kills. The counts, the recoveries and the refusals print with ``-s``.

The fast tests check the harness's own checks on made-up input: a witness
alarm in ``/metrics`` is found, a cosigned checkpoint of another tree is found,
a refusal outside every fault is found.
"""

from __future__ import annotations

import os
import secrets
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from crash_outages import Refusal
from replicas_crash import (
    LONG_OUTAGE,
    RECOVERY_TIMEOUT,
    VERIFY_EVERY,
    attribute,
    format_report,
    run_faults,
)
from replicas_fleet import Fleet, witness_alarms

from sop_verified.tools import merkle
from sop_verified.tools.checkpoint import Checkpoint, sign_checkpoint
from sop_verified.tools.cosignature import CosignatureSigner, generate_cosigner
from sop_verified.tools.signed_note import Signer, generate, parse_note

KILLS = int(os.environ.get("SOP_FAULTS_KILLS", "20"))
PG_RESTARTS = 5
CUTS = 5


@pytest.mark.slow
def test_replicas_lose_nothing_acknowledged_through_kills_restarts_and_cut_sessions(
    tmp_path: Path,
) -> None:
    seed = int(os.environ.get("SOP_FAULTS_SEED") or secrets.randbits(32))
    print(f"\nreplicas faults seed {seed} (replay with SOP_FAULTS_SEED={seed})")
    report = run_faults(
        tmp_path, kills=KILLS, pg_restarts=PG_RESTARTS, cuts=CUTS, seed=seed, progress=print
    )
    text = format_report(report)
    print(text)
    assert not report.failures, text
    assert (report.kills, report.pg_restarts, report.cuts) == (KILLS, PG_RESTARTS, CUTS), text
    assert report.allowed > 0 and report.denied > 0, text
    # every request answered once, each key one decision entry, at the index its client holds
    assert report.acknowledged == report.sent == report.entries, text
    assert report.persists_refused == 0, text  # small writes commit with their decision
    assert report.receipts_verified >= report.acknowledged, text
    assert report.retried > 0, f"no kill caught a request in flight: {text}"
    assert report.refused > 0, f"no fault refused anything: the outages were not exercised: {text}"
    faults = KILLS + PG_RESTARTS + CUTS
    assert report.log_verifies == faults // VERIFY_EVERY + 1, text
    assert report.log_checks == faults + KILLS + 1, text  # after each, after each kill, at the end
    for r in report.recoveries:
        assert float(r["recovered_s"]) < RECOVERY_TIMEOUT, text  # type: ignore[arg-type]
    longest = max(float(r.get("down_s", 0)) for r in report.recoveries)  # type: ignore[arg-type]
    assert longest >= LONG_OUTAGE, text  # the replicas came back after the long outage too
    assert report.published_checked > 0, text  # the witness cosigned, and it was all checked


# ---- the harness's own checks, on input made up for the purpose ------------------------------
def test_a_witness_alarm_or_refusal_in_metrics_is_found() -> None:
    quiet = (
        'sop_witness_alarm{witness="w"} 0.0\n'
        'sop_witness_submissions_total{outcome="cosigned",witness="w"} 40.0\n'
        'sop_witness_submissions_total{outcome="old_size_mismatch",witness="w"} 7.0\n'
        "# HELP sop_witness_submissions a refusal code (`unreachable`, `fork`, `bad_proof`)\n"
    )
    assert witness_alarms(quiet) == []  # replicas racing to the witness: a 409, retried
    for line in (
        'sop_witness_alarm{witness="w"} 1.0',
        'sop_witness_submissions_total{outcome="fork",witness="w"} 1.0',
        'sop_witness_submissions_total{outcome="bad_proof",witness="w"} 1.0',
    ):
        assert witness_alarms(quiet + line + "\n") == [line]


def _cosigned(signer: Signer, cosigner: CosignatureSigner, payloads: list[bytes]) -> str:
    checkpoint = Checkpoint("sop.local/log", len(payloads), merkle.root_hash(payloads))
    note = sign_checkpoint(checkpoint, signer)
    return note + cosigner.cosign(parse_note(note)[0], 1_700_000_000)


def test_a_cosigned_checkpoint_of_another_tree_is_found() -> None:
    skey, vkey = generate("sop.local/log")
    signer = Signer.from_string(skey)
    cosigner = CosignatureSigner.from_string(generate_cosigner("witness.example/w")[0])
    log = [b"e-%d" % i for i in range(5)]
    leaves = {i: merkle.leaf_hash(p).hex() for i, p in enumerate(log)}
    fleet: Any = Fleet(None, [], "", vkey)  # type: ignore[arg-type]
    fleet.witness = SimpleNamespace(verifier=cosigner.verifier())
    fleet.published = {3: _cosigned(signer, cosigner, log[:3]), 5: _cosigned(signer, cosigner, log)}
    found = SimpleNamespace(failures=[], rounds=0)
    assert fleet.check_published(leaves, found) == 2
    assert found.failures == []  # both are the log's own tree at their sizes
    fleet.published[4] = _cosigned(signer, cosigner, [*log[:3], b"forked"])
    assert fleet.check_published(leaves, found) == 3
    assert len(found.failures) == 1 and "cosigned a fork" in found.failures[0]
    other = CosignatureSigner.from_string(generate_cosigner("witness.example/w")[0])
    fleet.published = {3: _cosigned(signer, other, log[:3])}  # not the witness's cosignature
    fleet.check_published(leaves, found)
    assert len(found.failures) == 2 and "does not verify" in found.failures[1]


def test_a_refusal_outside_every_fault_is_found() -> None:
    def refusal(at: float) -> Refusal:
        return Refusal(at, 0, 200, "log_append_failed", False, "the decision could not be logged")

    windows = [(10.0, 12.0), (15.0, 20.0)]
    per, outside = attribute([refusal(t) for t in (5.0, 10.5, 13.0, 16.0, 19.0, 21.0)], windows)
    assert [[r.at for r in w] for w in per] == [[10.5], [16.0, 19.0]]
    assert [r.at for r in outside] == [5.0, 13.0, 21.0]  # before, between, after the faults
