"""The crash test's checks through a restarted server (:mod:`serve_crash`): receipts, reads.

Run after a restart, before the clients are let back in:

- each acknowledged decision's tlog-proof, fetched from the restarted
  server's ``/v1/receipts/{index}``, verifies offline under the log key and
  proves the leaf hash its client was given, and the entry is the key's
  decision; an acknowledged write's effect entry (``write.receipt``) the same
  way, and it is the effect of that decision, of the bytes sent;
- a sample of the persisted objects, read back through ``POST /v1/read`` (a
  decision of its own), are the bytes sent.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Protocol

import httpx
from crash_clients import Ack
from served import Prepared, Served

from sop_verified import Verifier, verify_receipt
from sop_verified.errors import SOPError
from sop_verified.server.certs import client_ssl_context

__all__ = ["Tally", "check_receipts", "read_back"]


class Tally(Protocol):
    """What these checks count, and where they put what they find."""

    rounds: int
    receipts_verified: int
    writes_verified: int
    read_back: int
    failures: list[str]


def check_receipts(server: Served, vkey: str, acks: Sequence[Ack], report: Tally) -> None:
    """Every acknowledged decision is still in the restarted log, at its index, same leaf."""
    verifier = Verifier.from_string(vkey)
    with httpx.Client(base_url=server.read, timeout=60) as http:
        for ack in acks:
            answer = http.get(f"/v1/receipts/{ack.log_index}")
            if answer.status_code != 200:
                report.failures.append(
                    f"acknowledged decision `{ack.log_index}` (key `{ack.key}`) is not in the"
                    f" restarted log: `{answer.status_code}` {answer.text[:200]}"
                )
                continue
            try:
                got = verify_receipt(
                    answer.text, [verifier], expected_leaf=bytes.fromhex(ack.leaf_hash)
                )
                entry = json.loads(got.payload or b"{}")
            except (SOPError, ValueError) as exc:
                report.failures.append(
                    f"the receipt of acknowledged decision `{ack.log_index}` does not verify: {exc}"
                )
                continue
            said = (entry.get("transport") or {}).get("idempotency_key"), entry.get("effect")
            if got.index != ack.log_index or said != (ack.key, ack.effect):
                report.failures.append(
                    f"entry `{got.index}` holds `{said}`, acknowledged `{(ack.key, ack.effect)}`"
                    f" at `{ack.log_index}`"
                )
                continue
            report.receipts_verified += 1
            _check_write_receipt(http, verifier, ack, report)


def _check_write_receipt(http: httpx.Client, verifier: Verifier, ack: Ack, report: Tally) -> None:
    """An acknowledged write's effect entry: at its index, same leaf, its decision's, its bytes."""
    persisted = ack.persisted
    if persisted is None or persisted.write_index is None or persisted.write_leaf is None:
        return
    index = persisted.write_index
    answer = http.get(f"/v1/receipts/{index}")
    try:
        if answer.status_code != 200:
            raise ValueError(f"`{answer.status_code}` {answer.text[:200]}")
        got = verify_receipt(
            answer.text, [verifier], expected_leaf=bytes.fromhex(persisted.write_leaf)
        )
        entry = json.loads(got.payload or b"{}")
    except (SOPError, ValueError) as exc:
        report.failures.append(f"the write receipt `{index}` of key `{ack.key}`: {exc}")
        return
    said = (got.index, entry.get("type"), entry.get("decision_index"), entry.get("digest"))
    if said != (index, "persist.effect", ack.log_index, persisted.digest):
        report.failures.append(
            f"write `{index}` of key `{ack.key}` holds {said}, acknowledged as the effect of"
            f" `{ack.log_index}` storing `{persisted.digest}`"
        )
        return
    report.writes_verified += 1


def read_back(
    server: Served, prepared: Prepared, acks: Sequence[Ack], n: int, report: Tally
) -> None:
    """The first ``n`` allowed persists in ``acks``, read through ``POST /v1/read``: same bytes."""
    chosen = [a for a in acks if a.persisted is not None and a.effect == "ALLOW"][:n]
    if not chosen:
        return
    ctx = client_ssl_context(*prepared.client("drac"))
    with httpx.Client(base_url=server.bridge, verify=ctx, timeout=60) as http:
        for ack in chosen:
            assert ack.persisted is not None
            read = {
                "request_id": f"read-{report.rounds}-{ack.key}",
                "principal": "drac",
                "action": "artifact.read",
                "resource": ack.persisted.resource,
                "capability": prepared.token,
            }
            got = http.post("/v1/read", json=read)
            if got.status_code != 200 or got.content != ack.persisted.data:
                report.failures.append(
                    f"key `{ack.key}`: reading `{ack.persisted.resource}` back after round"
                    f" {report.rounds} gave `{got.status_code}`, {len(got.content)} bytes"
                    f" {'(other bytes)' if got.status_code == 200 else got.text[:300]}"
                )
                continue
            report.read_back += 1
