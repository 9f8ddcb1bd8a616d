"""A persist replayed from the log is completed with its effect: the write, or the refusal."""

from __future__ import annotations

from pathlib import Path

import pytest
from served import prepare, request

from sop_verified import SOP
from sop_verified.server.replay_effect import EffectNotLoggedError, with_effect


def test_a_written_persist_replays_with_its_write(tmp_path: Path) -> None:
    prepared = prepare(tmp_path, principals=())
    with SOP.boot(prepared.data_dir) as sop:
        first = sop.persist(request(prepared.token, 1), b"hello")
        assert first.allowed and first.write is not None
        replayed = with_effect({k: v for k, v in first.to_dict().items() if k != "write"}, sop)
    assert replayed["effect"] == "ALLOW"
    assert replayed["write"]["outcome"] == "written"
    assert replayed["write"]["index"] == first.write.index
    assert replayed["write"]["digest"] == first.write.digest
    assert replayed["write"]["receipt"]["leaf_hash"] == first.write.receipt.leaf_hash.hex()


def test_an_allow_whose_effect_was_aborted_replays_as_the_deny(tmp_path: Path) -> None:
    prepared = prepare(tmp_path, principals=())
    with SOP.boot(prepared.data_dir) as sop:
        decided = sop.submit(request(prepared.token, 2))  # an ALLOW no effect ever followed
        assert decided.allowed
        with pytest.raises(EffectNotLoggedError):
            with_effect(decided.to_dict(), sop)  # still pending: the server answers 503
    with SOP.boot(prepared.data_dir) as sop:  # boot repair aborts the pending decision
        replayed = with_effect(decided.to_dict(), sop)
    assert replayed["effect"] == "DENY"
    assert replayed["decision_index"] == decided.log_index
    assert replayed["log_index"] > (decided.log_index or 0)
    assert replayed["reasons"] and "boot repair" in replayed["reasons"][0]["message"]


def test_a_deny_replays_as_it_was(tmp_path: Path) -> None:
    prepared = prepare(tmp_path, principals=())
    with SOP.boot(prepared.data_dir) as sop:
        denied = sop.submit(request(prepared.token, 3, allow=False))
        assert with_effect(denied.to_dict(), sop) == denied.to_dict()
