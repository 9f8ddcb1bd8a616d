"""C2SP tlog-witness without HTTP: every answer of add-checkpoint, rollbacks and forks refused.

The request body of the spec's example (tests/vectors/c2sp-tlog-witness/) is
parsed byte for byte; the rest runs against logs built here with SOP's
RFC 9162 tree functions and signed with fresh keys.
"""

from __future__ import annotations

import os
import sqlite3
import stat
import threading
from pathlib import Path

import pytest
from witness_log import ORIGIN, Log

from sop_verified.errors import ConfigError, InputError, StorageError
from sop_verified.tools.checkpoint import Checkpoint, sign_checkpoint
from sop_verified.tools.cosignature import CosignatureSigner, verify_cosignatures
from sop_verified.tools.merkle import consistency_proof, root_hash
from sop_verified.tools.signed_note import Signer, Verifier, generate, parse_note, sign_note
from sop_verified.tools.witness import (
    MAX_PROOF_LINES,
    Cosigned,
    Refused,
    Witness,
    format_add_checkpoint,
    parse_add_checkpoint,
)
from sop_verified.tools.witness_config import (
    CONFIG,
    KEY,
    add_log,
    init_witness_dir,
    load_witness_dir,
)
from sop_verified.tools.witness_store import Latest, WitnessStore

EXAMPLE = Path(__file__).parents[1] / "vectors" / "c2sp-tlog-witness" / "add-checkpoint-example.txt"
NOW = 1_800_000_000


WITNESS_SEED = bytes(range(32))


def make_witness(tmp_path: Path, *logs: Log) -> Witness:
    store = WitnessStore(tmp_path / "witness.db")
    keys = {log.origin: [log.signer.verifier()] for log in logs}
    return Witness(CosignatureSigner("w.example/w", WITNESS_SEED), keys, store, clock=lambda: NOW)


@pytest.fixture
def log() -> Log:
    return Log()


@pytest.fixture
def witness(tmp_path: Path, log: Log) -> Witness:
    return make_witness(tmp_path, log)


def cosigned(answer: Cosigned | Refused) -> Cosigned:
    assert isinstance(answer, Cosigned), answer
    return answer


def refused(answer: Cosigned | Refused, status: int, code: str) -> Refused:
    assert isinstance(answer, Refused), answer
    assert (answer.status, answer.code) == (status, code), answer
    return answer


# --- 200 -------------------------------------------------------------------------------


def test_first_checkpoint_is_cosigned_and_the_cosignature_verifies(
    witness: Witness, log: Log
) -> None:
    answer = cosigned(witness.add_checkpoint(log.body(0, 5)))
    note = log.note(5) + answer.lines
    found = verify_cosignatures(note, [witness.signer.verifier()], minimum=1, now=NOW)
    assert [c.timestamp for c in found] == [NOW]
    assert witness.store.latest(ORIGIN) == Latest(5, root_hash(log.leaves[:5]))


def test_consistent_growth_is_cosigned(witness: Witness, log: Log) -> None:
    cosigned(witness.add_checkpoint(log.body(0, 5)))
    for old, new in ((5, 8), (8, 16), (16, 17), (17, 40)):
        cosigned(witness.add_checkpoint(log.body(old, new)))
    assert witness.store.latest(ORIGIN).size == 40


def test_the_same_checkpoint_again_is_cosigned_again(witness: Witness, log: Log) -> None:
    cosigned(witness.add_checkpoint(log.body(0, 7)))
    cosigned(witness.add_checkpoint(log.body(7, 7)))
    assert witness.store.latest(ORIGIN).size == 7


def test_signatures_by_unknown_keys_are_ignored(witness: Witness, log: Log) -> None:
    stranger = Signer.from_string(generate("stranger.example")[0])
    text = Checkpoint(ORIGIN, 3, root_hash(log.leaves[:3])).to_text()
    note = sign_note(text, stranger, log.signer)
    cosigned(witness.add_checkpoint(format_add_checkpoint(0, [], note)))


def test_empty_tree_checkpoint_then_growth(witness: Witness, log: Log) -> None:
    cosigned(witness.add_checkpoint(log.body(0, 0)))
    cosigned(witness.add_checkpoint(log.body(0, 6)))
    assert witness.store.latest(ORIGIN).size == 6


def test_extension_lines_are_cosigned_too(witness: Witness, log: Log) -> None:
    cp = Checkpoint(ORIGIN, 4, root_hash(log.leaves[:4]), ("extension line",))
    note = sign_checkpoint(cp, log.signer)
    answer = cosigned(witness.add_checkpoint(format_add_checkpoint(0, [], note)))
    assert verify_cosignatures(note + answer.lines, [witness.signer.verifier()], minimum=1, now=NOW)
    shorn = note.replace("extension line\n", "")  # the log line no longer verifies; irrelevant
    with pytest.raises(Exception, match="verify"):
        verify_cosignatures(shorn + answer.lines, [witness.signer.verifier()], minimum=1, now=NOW)


# --- 404 / 403 -------------------------------------------------------------------------


def test_unknown_origin_is_404(witness: Witness) -> None:
    other = Log(origin="other.example/log")
    refused(witness.add_checkpoint(other.body(0, 3)), 404, "unknown_log")
    assert witness.store.latest("other.example/log") == Latest()


def test_checkpoint_signed_by_another_key_is_403(witness: Witness, log: Log) -> None:
    impostor = Signer.from_string(generate(ORIGIN)[0])  # same name, another key
    refused(witness.add_checkpoint(log.body(0, 3, signer=impostor)), 403, "bad_signature")
    assert witness.store.latest(ORIGIN) == Latest()


def test_checkpoint_altered_after_signing_is_403(witness: Witness, log: Log) -> None:
    note = log.note(3).replace("\n3\n", "\n4\n", 1)
    refused(witness.add_checkpoint(format_add_checkpoint(0, [], note)), 403, "bad_signature")


# --- 400 -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "body",
    [
        b"",
        b"old 0\n",
        b"old 0",
        b"old 01\n\n",
        b"old -1\n\n",
        b"old  1\n\n",
        b"old 18446744073709551616\n\n",
        b"OLD 0\n\n",
        b"old 0\nAAAA\n\n",
        b"old 0\n" + b"A" * 43 + b"=\n\n",
        b"old 0\n" + b"AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAB=\n\n",  # non-canonical base64
    ],
)
def test_malformed_bodies_are_400(witness: Witness, body: bytes) -> None:
    refused(witness.add_checkpoint(body), 400, "malformed")


def test_more_than_63_proof_lines_is_400(witness: Witness, log: Log) -> None:
    line = b"AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=\n"
    body = b"old 5\n" + line * (MAX_PROOF_LINES + 1) + b"\n" + log.note(9).encode()
    refused(witness.add_checkpoint(body), 400, "malformed")
    with pytest.raises(ValueError, match="proof"):
        format_add_checkpoint(5, [bytes(32)] * 64, log.note(9))


def test_malformed_checkpoint_note_is_400(witness: Witness) -> None:
    refused(witness.add_checkpoint(b"old 0\n\nnot a note\n"), 400, "malformed")
    refused(
        witness.add_checkpoint(b"old 0\n\n" + b"\xff\n\n\xe2\x80\x94 x AAAA\n"), 400, "malformed"
    )


def test_old_size_above_the_checkpoint_size_is_400(witness: Witness, log: Log) -> None:
    refused(witness.add_checkpoint(format_add_checkpoint(6, [], log.note(5))), 400, "malformed")


# --- 409 -------------------------------------------------------------------------------


def test_old_size_mismatch_is_409_with_the_witness_size(witness: Witness, log: Log) -> None:
    cosigned(witness.add_checkpoint(log.body(0, 5)))
    answer = refused(witness.add_checkpoint(log.body(0, 9)), 409, "old_size_mismatch")
    assert answer.size == 5
    answer = refused(witness.add_checkpoint(log.body(3, 9)), 409, "old_size_mismatch")
    assert answer.size == 5


def test_rollback_to_a_smaller_checkpoint_is_refused(witness: Witness, log: Log) -> None:
    cosigned(witness.add_checkpoint(log.body(0, 10)))
    refused(witness.add_checkpoint(log.body(10, 5)), 400, "malformed")  # old > size
    assert refused(witness.add_checkpoint(log.body(5, 5)), 409, "old_size_mismatch").size == 10
    assert refused(witness.add_checkpoint(log.body(0, 5)), 409, "old_size_mismatch").size == 10
    assert witness.store.latest(ORIGIN) == Latest(10, root_hash(log.leaves[:10]))


def test_fork_at_the_same_size_is_409_and_kept_as_evidence(witness: Witness, log: Log) -> None:
    cosigned(witness.add_checkpoint(log.body(0, 10)))
    forked = Log(seed="fork")
    forked.signer = log.signer  # the log's own key signs another tree: a split view
    answer = refused(witness.add_checkpoint(forked.body(10, 10)), 409, "fork")
    assert answer.size == 10
    assert witness.store.latest(ORIGIN) == Latest(10, root_hash(log.leaves[:10]))
    [kept] = witness.store.evidence()
    assert (kept.code, kept.old_size) == ("fork", 10)
    assert kept.checkpoint == forked.note(10)


def test_fork_of_the_empty_tree_is_409(witness: Witness, log: Log) -> None:
    cosigned(witness.add_checkpoint(log.body(0, 0)))
    refused(witness.add_checkpoint(log.body(0, 0, root=bytes(32))), 409, "fork")


# --- 422 -------------------------------------------------------------------------------


def test_fork_at_a_larger_size_fails_the_consistency_proof(witness: Witness, log: Log) -> None:
    cosigned(witness.add_checkpoint(log.body(0, 10)))
    forked = Log(seed="fork")
    forked.signer = log.signer
    forked.leaves[:9] = log.leaves[:9]  # shares 9 entries, rewrites the 10th, grows to 20
    refused(witness.add_checkpoint(forked.body(10, 20)), 422, "bad_proof")
    assert witness.store.latest(ORIGIN).size == 10
    assert [e.code for e in witness.store.evidence()] == ["bad_proof"]


def test_tampered_proof_is_422(witness: Witness, log: Log) -> None:
    cosigned(witness.add_checkpoint(log.body(0, 5)))
    proof = consistency_proof(log.leaves[:12], 5)
    proof[1] = bytes(b ^ 1 for b in proof[1])
    body = format_add_checkpoint(5, proof, log.note(12))
    refused(witness.add_checkpoint(body), 422, "bad_proof")
    body = format_add_checkpoint(5, proof[:-1], log.note(12))
    refused(witness.add_checkpoint(body), 422, "bad_proof")
    assert witness.store.latest(ORIGIN).size == 5


def test_a_proof_where_none_is_due_is_422(witness: Witness, log: Log) -> None:
    body = format_add_checkpoint(0, [bytes(32)], log.note(5))
    refused(witness.add_checkpoint(body), 422, "bad_proof")
    cosigned(witness.add_checkpoint(log.body(0, 5)))
    refused(
        witness.add_checkpoint(format_add_checkpoint(5, [bytes(32)], log.note(5))), 422, "bad_proof"
    )


# --- atomicity, durability ---------------------------------------------------------------


def test_the_specs_race_cannot_roll_the_record_back(witness: Witness, log: Log) -> None:
    """Spec: A (size N) checked, B (N+K) checked and stored, then A must not store N."""
    cosigned(witness.add_checkpoint(log.body(0, 5)))
    store = witness.store
    advance = store.advance
    answers: list[Cosigned | Refused] = []

    def b_overtakes_a(*args: object, **kw: object) -> Latest | None:
        store.advance = advance  # type: ignore[method-assign]
        answers.append(witness.add_checkpoint(log.body(5, 20)))  # request B, whole
        return advance(*args, **kw)  # type: ignore[arg-type]

    store.advance = b_overtakes_a  # type: ignore[method-assign]
    a = witness.add_checkpoint(log.body(5, 8))  # request A, checked against size 5
    cosigned(answers[0])
    assert refused(a, 409, "old_size_mismatch").size == 20
    assert store.latest(ORIGIN).size == 20


def test_concurrent_submissions_from_one_old_size_have_one_winner(
    witness: Witness, log: Log
) -> None:
    cosigned(witness.add_checkpoint(log.body(0, 5)))
    sizes = list(range(6, 26))
    answers: dict[int, Cosigned | Refused] = {}
    start = threading.Barrier(len(sizes))

    def submit(size: int) -> None:
        body = log.body(5, size)
        start.wait()
        answers[size] = witness.add_checkpoint(body)

    threads = [threading.Thread(target=submit, args=(s,)) for s in sizes]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    winners = [s for s, a in answers.items() if isinstance(a, Cosigned)]
    assert len(winners) == 1
    assert witness.store.latest(ORIGIN).size == winners[0]
    for size, answer in answers.items():
        if size != winners[0]:
            assert refused(answer, 409, "old_size_mismatch").size == winners[0]


def test_state_survives_a_restart(tmp_path: Path, log: Log) -> None:
    first = make_witness(tmp_path, log)
    cosigned(first.add_checkpoint(log.body(0, 9)))
    del first  # no close: what was answered was already committed
    second = make_witness(tmp_path, log)
    assert second.store.latest(ORIGIN) == Latest(9, root_hash(log.leaves[:9]))
    assert refused(second.add_checkpoint(log.body(0, 12)), 409, "old_size_mismatch").size == 9
    cosigned(second.add_checkpoint(log.body(9, 12)))


def test_a_storage_failure_cosigns_nothing(witness: Witness, log: Log) -> None:
    witness.store.close()
    with pytest.raises(StorageError):
        witness.add_checkpoint(log.body(0, 5))


def test_a_state_file_of_another_schema_is_refused(tmp_path: Path) -> None:
    WitnessStore(tmp_path / "w.db").close()
    with sqlite3.connect(tmp_path / "w.db") as db:
        db.execute("UPDATE meta SET value = '99' WHERE key = 'schema'")
    with pytest.raises(StorageError, match="schema"):
        WitnessStore(tmp_path / "w.db")


def test_state_file_is_private(tmp_path: Path) -> None:
    WitnessStore(tmp_path / "w.db").close()
    assert stat.S_IMODE(os.stat(tmp_path / "w.db").st_mode) == 0o600


# --- the request format ------------------------------------------------------------------


def test_the_specs_example_body_parses() -> None:
    request = parse_add_checkpoint(EXAMPLE.read_bytes())
    assert request.old_size == 20852014
    assert len(request.proof) == 4
    assert request.proof[0].hex().startswith("3e544d0a")
    text, sigs = parse_note(request.note)
    assert (
        text
        == b"example.com/behind-the-sofa\n20852163\nCsUYapGGPo4dkMgIAUqom/Xajj7h2fB2MPA3j2jxq2I=\n"
    )
    assert [s.name for s in sigs] == ["example.com/behind-the-sofa"] * 2
    assert (
        format_add_checkpoint(request.old_size, request.proof, request.note) == EXAMPLE.read_bytes()
    )


def test_the_specs_example_is_refused_for_what_it_is(tmp_path: Path) -> None:
    """The example's log is unknown here (404); known under a key that did not sign it, 403."""
    stranger = Log()
    witness = make_witness(tmp_path, stranger)
    refused(witness.add_checkpoint(EXAMPLE.read_bytes()), 404, "unknown_log")
    witness.logs["example.com/behind-the-sofa"] = (stranger.signer.verifier(),)
    refused(witness.add_checkpoint(EXAMPLE.read_bytes()), 403, "bad_signature")


# --- the witness directory ---------------------------------------------------------------


def test_witness_dir_is_private_and_loads(tmp_path: Path, log: Log) -> None:
    where = tmp_path / "w"
    vkey = init_witness_dir(where, "w.example/w1", [(log.vkey, None)])
    assert stat.S_IMODE(os.stat(where).st_mode) == 0o700
    assert stat.S_IMODE(os.stat(where / KEY).st_mode) == 0o600
    loaded = load_witness_dir(where)
    try:
        assert loaded.vkey == vkey
        assert [(x.origin, x.vkeys) for x in loaded.logs] == [(ORIGIN, (log.vkey,))]
        cosigned(loaded.witness().add_checkpoint(log.body(0, 3)))
    finally:
        loaded.close()


def test_witness_dir_refuses_a_key_others_can_read(tmp_path: Path, log: Log) -> None:
    init_witness_dir(tmp_path / "w", "w.example/w1", [(log.vkey, None)])
    os.chmod(tmp_path / "w" / KEY, 0o644)
    with pytest.raises(ConfigError, match="readable by others"):
        load_witness_dir(tmp_path / "w")


def test_witness_dir_is_never_made_over_another(tmp_path: Path, log: Log) -> None:
    init_witness_dir(tmp_path / "w", "w.example/w1", [])
    with pytest.raises(ConfigError, match="not an empty directory"):
        init_witness_dir(tmp_path / "w", "w.example/w1", [(log.vkey, None)])


def test_add_log_adds_origins_and_rotated_keys(tmp_path: Path, log: Log) -> None:
    init_witness_dir(tmp_path / "w", "w.example/w1", [(log.vkey, None)])
    rotated = Signer.from_string(generate(ORIGIN)[0]).verifier().vkey
    assert add_log(tmp_path / "w", rotated).vkeys == (log.vkey, rotated)
    other = Log(origin="other")
    add_log(tmp_path / "w", other.vkey, 'odd "origin" \\ here')
    loaded = load_witness_dir(tmp_path / "w")
    loaded.close()
    assert [x.origin for x in loaded.logs] == [ORIGIN, 'odd "origin" \\ here']


@pytest.mark.parametrize(
    "config",
    [
        "[[log]]\norigin = 'x'\n",
        "[[log]]\norigin = 'x'\nvkeys = []\n",
        "[[log]]\norigin = 'x'\nvkeys = ['not a key']\n",
        "name = 'x'\n",
        "[[log\n",
    ],
)
def test_bad_witness_config_is_refused(tmp_path: Path, config: str) -> None:
    init_witness_dir(tmp_path / "w", "w.example/w1", [])
    (tmp_path / "w" / CONFIG).write_text(config)
    with pytest.raises(InputError):
        load_witness_dir(tmp_path / "w")


def test_a_log_listed_twice_is_refused(tmp_path: Path, log: Log) -> None:
    init_witness_dir(tmp_path / "w", "w.example/w1", [])
    entry = f"[[log]]\norigin = '{ORIGIN}'\nvkeys = ['{log.vkey}']\n"
    (tmp_path / "w" / CONFIG).write_text(entry * 2)
    with pytest.raises(ConfigError, match="twice"):
        load_witness_dir(tmp_path / "w")


def test_verifier_keys_of_the_config_are_the_ones_used(tmp_path: Path, log: Log) -> None:
    init_witness_dir(tmp_path / "w", "w.example/w1", [(log.vkey, None)])
    loaded = load_witness_dir(tmp_path / "w")
    try:
        assert loaded.witness().logs == {ORIGIN: (Verifier.from_string(log.vkey),)}
    finally:
        loaded.close()


def test_every_commit_is_fsynced(tmp_path: Path) -> None:
    """kill -9 cannot show this (the page cache survives it); a power cut would."""
    store = WitnessStore(tmp_path / "w.db")
    try:
        assert store._db.execute("PRAGMA synchronous").fetchone() == (2,)  # FULL
        assert store._db.execute("PRAGMA journal_mode").fetchone() == ("wal",)
    finally:
        store.close()
