"""`sop log verify` finds every kind of tampering, with the first bad index and exit status 1."""

from __future__ import annotations

import json
import shutil
import sqlite3
from collections.abc import Iterator
from pathlib import Path

import pytest
from attacker import drop_triggers
from typer.testing import CliRunner

from sop_verified.cli import app
from sop_verified.nexus.sop import SOP
from sop_verified.tools.checkpoint import Checkpoint, sign_checkpoint
from sop_verified.tools.merkle import leaf_hash
from sop_verified.tools.signed_note import Signer, generate

NOW = 1_800_000_000
runner = CliRunner()


@pytest.fixture(scope="module")
def pristine(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A data directory: boot entries, 12 single decisions, a bulk batch of 200, 6 more."""
    data = tmp_path_factory.mktemp("log") / "data"
    SOP.init(data)
    sop = SOP.boot(data, now=lambda: NOW)
    for i in range(12):
        sop.submit({"request_id": f"r-{i}", "principal": "drac", "action": "artifact.read"})
    assert sop.log is not None
    sop.log.append_many([b'{"bulk":%d}' % i for i in range(200)])
    for i in range(6):
        sop.submit({"request_id": f"s-{i}", "principal": "drac", "action": "artifact.read"})
    sop.close()
    return data


@pytest.fixture
def data(pristine: Path, tmp_path: Path) -> Path:
    copy = tmp_path / "data"
    shutil.copytree(pristine, copy)
    return copy


def _verify(data: Path, *extra: str) -> tuple[int, dict[str, object]]:
    result = runner.invoke(app, ["log", "verify", "--data-dir", str(data), "--json", *extra])
    return result.exit_code, json.loads(result.output)


@pytest.fixture
def db(data: Path) -> Iterator[sqlite3.Connection]:
    conn = sqlite3.connect(data / "sop.db")
    _drop_triggers(conn)
    yield conn
    conn.close()


def _drop_triggers(db: sqlite3.Connection) -> None:
    drop_triggers(db)  # the attacker's first move: the log's guards and the seal's upkeep


def _size(db: sqlite3.Connection) -> int:
    return int(db.execute("SELECT COUNT(*) FROM log_entries").fetchone()[0])


def _row(db: sqlite3.Connection, index: int) -> tuple[bytes, bytes]:
    leaf, payload = db.execute(
        "SELECT leaf_hash, payload FROM log_entries WHERE idx = ?", (index,)
    ).fetchone()
    return bytes(leaf), bytes(payload)


def _set(db: sqlite3.Connection, index: int, payload: bytes, *, rehash: bool = True) -> None:
    leaf = leaf_hash(payload) if rehash else _row(db, index)[0]
    db.execute(
        "UPDATE log_entries SET payload = ?, leaf_hash = ? WHERE idx = ?", (payload, leaf, index)
    )
    db.commit()


def test_untouched_log_verifies(data: Path) -> None:
    code, report = _verify(data)
    assert code == 0, report
    assert report["ok"] is True and report["first_bad_index"] is None
    assert report["entries"] == report["checkpoints"] + 199  # one checkpoint per batch
    assert report["verified_checkpoints"] == report["checkpoints"]


def test_flipped_byte_in_a_payload_is_found(data: Path, db: sqlite3.Connection) -> None:
    _, payload = _row(db, 5)
    _set(db, 5, payload[:-2] + bytes([payload[-2] ^ 1]) + payload[-1:], rehash=False)
    code, report = _verify(data)
    assert (code, report["first_bad_index"]) == (1, 5)
    assert report["findings"][0]["kind"] == "leaf_hash"


def test_flipped_byte_with_a_recomputed_leaf_hash_is_found(
    data: Path, db: sqlite3.Connection
) -> None:
    _, payload = _row(db, 100)
    _set(db, 100, payload.replace(b"bulk", b"bulK"))
    code, report = _verify(data)
    assert (code, report["first_bad_index"]) == (1, 100)  # the tile pins the leaf


def test_deleted_row_is_found(data: Path, db: sqlite3.Connection) -> None:
    db.execute("DELETE FROM log_entries WHERE idx = 7")
    db.commit()
    code, report = _verify(data)
    assert (code, report["first_bad_index"]) == (1, 7)
    assert report["findings"][0]["kind"] == "missing_entry"


def test_duplicated_row_is_found(data: Path, db: sqlite3.Connection) -> None:
    _set(db, 9, _row(db, 8)[1])  # row 9 becomes a copy of row 8
    code, report = _verify(data)
    assert (code, report["first_bad_index"]) == (1, 9)


def test_duplicate_appended_at_the_end_is_found(data: Path, db: sqlite3.Connection) -> None:
    n = _size(db)
    leaf, payload = _row(db, n - 1)
    db.execute("INSERT INTO log_entries VALUES (?, ?, ?)", (n, leaf, payload))
    db.commit()
    code, report = _verify(data)
    assert (code, report["first_bad_index"]) == (1, n)
    assert report["findings"][0]["kind"] == "unsigned_entries"


def test_reordered_rows_are_found(data: Path, db: sqlite3.Connection) -> None:
    (_, a), (_, b) = _row(db, 3), _row(db, 10)
    _set(db, 3, b)
    _set(db, 10, a)
    code, report = _verify(data)
    assert (code, report["first_bad_index"]) == (1, 3)


def test_checkpoint_replaced_by_a_foreign_key_is_found(data: Path, db: sqlite3.Connection) -> None:
    size, note = db.execute("SELECT size, note FROM log_checkpoints ORDER BY size").fetchall()[4]
    body = Checkpoint.from_text(note[: note.index("\n\n") + 1])
    forged = sign_checkpoint(body, Signer.from_string(generate(body.origin)[0]))
    db.execute("UPDATE log_checkpoints SET note = ? WHERE size = ?", (forged, size))
    db.commit()
    code, report = _verify(data)
    assert code == 1
    bad = [f for f in report["findings"] if f["kind"] == "checkpoint_signature"]  # type: ignore[union-attr]
    assert bad and bad[0]["message"].startswith(f"checkpoint `{size}`")
    assert report["first_bad_index"] == size - 1  # the entry that checkpoint added


def test_checkpoint_swapped_with_another_is_found(data: Path, db: sqlite3.Connection) -> None:
    rows = db.execute("SELECT size, note FROM log_checkpoints ORDER BY size").fetchall()
    (s1, _), (_, n2) = rows[2], rows[3]
    db.execute("UPDATE log_checkpoints SET note = ? WHERE size = ?", (n2, s1))
    db.commit()
    code, report = _verify(data)
    assert code == 1
    assert report["findings"][0]["kind"] == "checkpoint_size"
    assert report["first_bad_index"] == s1 - 1


def test_checkpoint_signing_a_wrong_root_is_found(data: Path, db: sqlite3.Connection) -> None:
    """A log that signed a forked tree (the real key, another root) is caught (INV-5)."""
    signer = Signer.from_string((data / "keys" / "checkpoint.key").read_text().strip())
    size = db.execute("SELECT size FROM log_checkpoints ORDER BY size").fetchall()[6][0]
    fork = sign_checkpoint(Checkpoint(signer.name, size, bytes(32)), signer)
    db.execute("UPDATE log_checkpoints SET note = ? WHERE size = ?", (fork, size))
    db.commit()
    code, report = _verify(data)
    assert code == 1
    assert report["findings"][0]["kind"] == "checkpoint_root"


def test_truncated_log_is_found(data: Path, db: sqlite3.Connection) -> None:
    n = _size(db)
    db.execute("DELETE FROM log_entries WHERE idx >= ?", (n - 3,))
    db.commit()
    code, report = _verify(data)
    assert (code, report["first_bad_index"]) == (1, n - 3)
    assert report["findings"][0]["kind"] == "truncated"


def test_tampered_tile_is_found(data: Path, db: sqlite3.Connection) -> None:
    key, tile = db.execute("SELECT id, hashes FROM log_tiles ORDER BY id LIMIT 1").fetchone()
    db.execute("UPDATE log_tiles SET hashes = ? WHERE id = ?", (bytes(len(tile)), key))
    db.commit()
    code, report = _verify(data)
    assert (code, report["first_bad_index"]) == (1, 0)
    assert report["findings"][0]["kind"] == "tile"


def test_wrong_trusted_key_fails_every_checkpoint(data: Path) -> None:
    other = Signer.from_string(generate("sop.local/log")[0]).verifier().vkey
    code, report = _verify(data, "--vkey", other)
    assert code == 1
    assert report["verified_checkpoints"] == 0


def test_human_output_names_the_first_bad_index(data: Path, db: sqlite3.Connection) -> None:
    db.execute("DELETE FROM log_entries WHERE idx = 2")
    db.commit()
    result = runner.invoke(app, ["log", "verify", "--data-dir", str(data)])
    assert result.exit_code == 1
    assert "first bad index 2" in " ".join(result.output.split())


def test_missing_data_dir_is_a_one_line_error(tmp_path: Path) -> None:
    result = runner.invoke(app, ["log", "verify", "--data-dir", str(tmp_path / "nope")])
    assert result.exit_code == 2
    assert "sop init" in result.output


def test_log_and_checkpoints_cut_back_are_found_with_a_held_receipt(
    data: Path, db: sqlite3.Connection, tmp_path: Path
) -> None:
    n = _size(db)
    receipt = tmp_path / "kept.tlog-proof"
    result = runner.invoke(
        app, ["log", "prove", str(n - 1), "--data-dir", str(data), "--out", str(receipt)]
    )
    assert result.exit_code == 0, result.output
    _drop_triggers(db)  # opening the store to prove put them back
    ((older,),) = db.execute("SELECT note FROM log_checkpoints WHERE size = ?", (n - 4,))
    db.execute("DELETE FROM log_entries WHERE idx >= ?", (n - 4,))
    db.execute("DELETE FROM log_checkpoints WHERE size > ?", (n - 4,))
    db.commit()
    code, report = _verify(data)
    assert (code, report["findings"][0]["kind"]) == (1, "anchor")  # the anchor shows the cut
    (data / "checkpoint.anchor").write_text(older)  # unless it is rolled back with the log
    code, report = _verify(data)
    assert code == 1  # spec: INV-11 — the state seal still names the longer log
    assert report["findings"][0]["kind"] == "derived_state"
    code, report = _verify(data, "--checkpoint", str(receipt))
    assert (code, report["first_bad_index"]) == (1, n - 4)
    assert report["findings"][0]["kind"] == "truncated"


def test_held_checkpoint_matching_the_log_passes(data: Path, tmp_path: Path) -> None:
    kept = tmp_path / "checkpoint.txt"
    result = runner.invoke(app, ["log", "checkpoint", "--data-dir", str(data)])
    kept.write_text(result.output)
    code, report = _verify(data, "--checkpoint", str(kept))
    assert code == 0, report


def test_held_checkpoint_of_a_fork_is_found(data: Path, tmp_path: Path) -> None:
    signer = Signer.from_string((data / "keys" / "checkpoint.key").read_text().strip())
    fork = tmp_path / "fork.txt"
    fork.write_text(sign_checkpoint(Checkpoint(signer.name, 5, bytes(32)), signer))
    code, report = _verify(data, "--checkpoint", str(fork))
    assert code == 1
    assert report["findings"][0]["kind"] == "held_checkpoint"
