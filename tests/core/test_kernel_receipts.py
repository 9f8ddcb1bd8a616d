"""The kernel takes the receipt a log gives; a log answering garbage is DENY (INV-9)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import pytest
from test_kernel import REQ, FakeCaps, FakePolicy, ProvingGate

from sop_verified.core.health import Health
from sop_verified.core.kernel import OpsKernel
from sop_verified.core.request import Permission, Stage
from sop_verified.tools.merkle import leaf_hash
from sop_verified.tools.tlog_store import LinkedPart, Receipt


class ReceiptingLog:
    def __init__(self, answer: Any = None) -> None:
        self.entries: list[bytes] = []
        self.answer = answer

    def append(self, payload: bytes) -> int:
        raise AssertionError("the kernel must record a decision with append_receipt")

    def append_receipt(self, payload: bytes) -> Any:
        self.entries.append(payload)
        if self.answer is not None:
            return self.answer
        index = len(self.entries) - 1
        return Receipt(index, leaf_hash(payload), index + 1, "origin\n1\nAAAA\n\n— k x\n")

    def append_parts(self, parts: Sequence[LinkedPart]) -> list[tuple[Receipt, Receipt | None]]:
        return [(self.append_receipt(part.first), None) for part in parts]


class IndexLog:
    """A log whose receipt names ``answer`` as the entry's index."""

    def __init__(self, answer: Any) -> None:
        self.answer = answer

    def append(self, payload: bytes) -> Any:
        return self.answer

    def append_receipt(self, payload: bytes) -> Receipt:
        return Receipt(self.answer, leaf_hash(payload), 1)

    def append_parts(self, parts: Sequence[LinkedPart]) -> list[tuple[Receipt, Receipt | None]]:
        return [(self.append_receipt(part.first), None) for part in parts]


def _kernel(log: Any) -> OpsKernel:
    return OpsKernel(
        capabilities=FakeCaps(),
        policy=FakePolicy,
        proof_gate=ProvingGate(),
        log=log,
        health=lambda: Health.READY,
        now=lambda: 1_700_000_000,
    )


def test_allow_carries_the_logs_receipt() -> None:
    log = ReceiptingLog()
    d = _kernel(log).submit(REQ)
    assert d.effect is Permission.ALLOW
    assert d.receipt is not None and d.log_index == d.receipt.index == 0
    assert d.receipt.leaf_hash == leaf_hash(log.entries[0])
    out = d.to_dict()
    assert out["receipt"]["leaf_hash"] == leaf_hash(log.entries[0]).hex()
    assert out["receipt"]["tree_size"] == 1


def test_denial_carries_a_receipt_too() -> None:
    d = _kernel(ReceiptingLog()).submit({"request_id": "x"})
    assert d.effect is Permission.DENY and d.receipt is not None


@pytest.mark.parametrize("answer", ["7", object(), -1])
def test_log_answering_no_receipt_is_deny(answer: Any) -> None:
    log = ReceiptingLog(answer) if not isinstance(answer, int) else IndexLog(answer)
    d = _kernel(log).submit(REQ)
    assert d.effect is Permission.DENY
    assert d.reasons[-1].stage is Stage.LOG
    assert d.reasons[-1].code == "log_append_failed"
    assert d.log_index is None


@pytest.mark.parametrize("answer", [None, True, 1.0])
def test_log_answering_no_index_is_deny(answer: Any) -> None:
    d = _kernel(IndexLog(answer)).submit(REQ)
    assert (d.effect, d.reasons[-1].code) == (Permission.DENY, "log_append_failed")
