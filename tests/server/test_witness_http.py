"""`sop witness serve` over real HTTP: every C2SP tlog-witness answer, kill -9, the client.

Each test starts ``python3 -m sop_verified.cli witness serve`` on an ephemeral
port (the JSON line it prints says where), talks to it with httpx or with
:func:`~sop_verified.tools.witness_client.submit_checkpoint`, and stops it.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from served_witness import ServedWitness
from witness_log import ORIGIN, Log

from sop_verified.tools.cosignature import CosignatureVerifier, verify_cosignatures
from sop_verified.tools.signed_note import Signer, generate
from sop_verified.tools.witness import format_add_checkpoint
from sop_verified.tools.witness_client import (
    WitnessRefusal,
    asubmit_checkpoint,
    submit_checkpoint,
)
from sop_verified.tools.witness_config import init_witness_dir


@pytest.fixture
def log() -> Log:
    return Log()


@pytest.fixture
def directory(tmp_path: Path, log: Log) -> Path:
    init_witness_dir(tmp_path / "w", "witness.example/w1", [(log.vkey, None)])
    return tmp_path / "w"


@pytest.fixture
def served(directory: Path) -> Iterator[ServedWitness]:
    server = ServedWitness(directory)
    yield server
    assert server.stop() == 0, server.stderr()


def _problem(answer: httpx.Response, status: int, code: str) -> None:
    assert answer.status_code == status, answer.text
    assert answer.headers["content-type"] == "application/problem+json"
    assert answer.json()["code"] == code


def _size(answer: httpx.Response) -> int:
    assert answer.status_code == 409, answer.text
    assert answer.headers["content-type"] == "text/x.tlog.size"
    assert answer.text.endswith("\n")
    return int(answer.text)


def test_every_answer_of_the_spec_over_http(served: ServedWitness, log: Log) -> None:
    first = served.post(log.body(0, 5))  # 200
    assert first.status_code == 200, first.text
    assert first.text.startswith("— witness.example/w1 ") and first.text.endswith("\n")
    note = log.note(5) + first.text
    assert verify_cosignatures(note, [served.verifier], minimum=1)
    _problem(served.post(b"old 01\n\n" + log.note(6).encode()), 400, "malformed")  # 400
    impostor = Signer.from_string(generate(ORIGIN)[0])
    _problem(served.post(log.body(5, 6, signer=impostor)), 403, "bad_signature")  # 403
    _problem(served.post(Log(origin="other.example").body(0, 1)), 404, "unknown_log")  # 404
    assert _size(served.post(log.body(0, 9))) == 5  # 409: old size mismatch
    bad = log.proof(5, 9)
    bad[0] = bytes(32)
    _problem(served.post(format_add_checkpoint(5, bad, log.note(9))), 422, "bad_proof")  # 422
    assert served.post(log.body(5, 9)).status_code == 200


def test_rollback_and_fork_are_refused_over_http(served: ServedWitness, log: Log) -> None:
    assert served.post(log.body(0, 10)).status_code == 200
    _problem(served.post(log.body(10, 4)), 400, "malformed")  # a smaller checkpoint
    assert _size(served.post(log.body(4, 4))) == 10
    forked = Log(seed="fork")
    forked.signer = log.signer
    assert _size(served.post(forked.body(10, 10))) == 10  # same size, another root
    forked.leaves[:9] = log.leaves[:9]
    _problem(served.post(forked.body(10, 15)), 422, "bad_proof")  # grown from another tree
    assert served.post(log.body(10, 11)).status_code == 200  # the honest log goes on


def test_oversized_body_wrong_method_and_about(served: ServedWitness) -> None:
    _problem(served.post(b"old 0\n\n" + b"x" * (2 << 20)), 413, "body_too_large")
    answer = httpx.get(served.url + "/add-checkpoint", timeout=30)
    assert answer.status_code == 405
    about = httpx.get(served.url + "/", timeout=30).text
    assert f"vkey {served.verifier.vkey}" in about and f"log {ORIGIN}" in about


def test_state_survives_kill_9_between_requests(directory: Path, log: Log) -> None:
    first = ServedWitness(directory)
    try:
        assert first.post(log.body(0, 7)).status_code == 200
    finally:
        first.kill()  # kill -9 right after the answer
    second = ServedWitness(directory)
    try:
        assert _size(second.post(log.body(0, 12))) == 7  # it remembers size 7
        forked = Log(seed="fork")
        forked.signer = log.signer
        assert _size(second.post(forked.body(7, 7))) == 7  # and its root
        assert second.post(log.body(7, 12)).status_code == 200
    finally:
        second.kill()
    third = ServedWitness(directory)
    try:
        assert _size(third.post(log.body(7, 12))) == 12
    finally:
        assert third.stop() == 0, third.stderr()


def test_client_returns_verified_lines_and_names_refusals(served: ServedWitness, log: Log) -> None:
    lines = submit_checkpoint(served.url, 0, [], log.note(5), witness=served.verifier)
    assert isinstance(lines, str)
    assert verify_cosignatures(log.note(5) + lines, [served.verifier], minimum=1)
    stale = submit_checkpoint(served.url, 0, [], log.note(8))
    assert stale == WitnessRefusal(409, "old_size_mismatch", stale.detail, 5)  # type: ignore[union-attr]
    lines = submit_checkpoint(served.url, 5, log.proof(5, 8), log.note(8), witness=served.verifier)
    assert isinstance(lines, str)
    forked = Log(seed="fork")
    forked.signer = log.signer
    fork = submit_checkpoint(served.url, 8, [], forked.note(8))
    assert isinstance(fork, WitnessRefusal) and (fork.code, fork.size) == ("fork", 8)
    forked.leaves[:7] = log.leaves[:7]
    bad = submit_checkpoint(served.url, 8, forked.proof(8, 12), forked.note(12))
    assert isinstance(bad, WitnessRefusal) and (bad.status, bad.code) == (422, "bad_proof")
    other = Log(origin="other.example")
    unknown = submit_checkpoint(served.url, 0, [], other.note(1))
    assert isinstance(unknown, WitnessRefusal) and unknown.code == "unknown_log"
    impostor = Signer.from_string(generate(ORIGIN)[0])
    forged = submit_checkpoint(served.url, 8, [], log.note(8, signer=impostor))
    assert isinstance(forged, WitnessRefusal) and forged.code == "bad_signature"


def test_client_refuses_a_cosignature_by_another_key(served: ServedWitness, log: Log) -> None:
    other = CosignatureVerifier("witness.example/w1", bytes(range(32)))
    answer = submit_checkpoint(served.url, 0, [], log.note(3), witness=other)
    assert isinstance(answer, WitnessRefusal) and answer.code == "bad_cosignature"


def test_async_client(served: ServedWitness, log: Log) -> None:
    async def both() -> tuple[object, object]:
        async with httpx.AsyncClient() as client:
            a = await asubmit_checkpoint(
                served.url, 0, [], log.note(2), witness=served.verifier, client=client
            )
            b = await asubmit_checkpoint(served.url, 0, [], log.note(3), client=client)
        return a, b

    a, b = asyncio.run(both())
    assert isinstance(a, str) and a.startswith("— witness.example/w1 ")
    assert isinstance(b, WitnessRefusal) and (b.code, b.size) == ("old_size_mismatch", 2)


def test_client_unreachable_witness(log: Log) -> None:
    answer = submit_checkpoint("http://127.0.0.1:9", 0, [], log.note(1), timeout=2)
    assert isinstance(answer, WitnessRefusal) and (answer.status, answer.code) == (
        None,
        "unreachable",
    )
