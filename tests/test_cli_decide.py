"""`sop decide`: a request in, its decision out; a dry run changes no byte, a decision logs one."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path
from typing import Any

import pytest
from dir_snapshot import snapshot
from typer.testing import CliRunner

from sop_verified.cli import app
from sop_verified.nexus.sop import SOP
from sop_verified.server.serve_lock import ServeLock

ROOT = Path(__file__).resolve().parents[1]
runner = CliRunner()


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    """A data directory with the example policies and a capability for DRAC."""
    data = tmp_path_factory.mktemp("decide") / "data"
    SOP.init(data)
    with SOP.boot(data) as sop:
        sop.activate_policy(ROOT / "docs" / "examples" / "policies")
        _, token = sop.admit(
            "drac", ["artifact.persist"], ["artifacts/drac/**"], expires=sop.now() + 86_400
        )
    return data, token


def _request(token: str, request_id: str = "r-1", **extra: Any) -> dict[str, Any]:
    return {
        "request_id": request_id,
        "principal": "drac",
        "action": "artifact.persist",
        "resource": "artifacts/drac/plan.json",
        "capability": token,
        "context": {"size_bytes": 5},
        **extra,
    }


def _file(tmp_path: Path, body: Any, name: str = "req.json") -> Path:
    path = tmp_path / name
    path.write_text(body if isinstance(body, str) else json.dumps(body))
    return path


def _decide(*args: str, stdin: str | None = None) -> tuple[int, str]:
    result = runner.invoke(app, ["decide", *args], input=stdin)
    return result.exit_code, result.output


def _flat(text: str) -> str:
    """The output with the console's line wrapping undone."""
    return " ".join(text.split())


def _entries(data: Path) -> list[dict[str, Any]]:
    uri = f"{(data / 'sop.db').resolve().as_uri()}?mode=ro&immutable=1"
    db = sqlite3.connect(uri, uri=True)
    try:
        rows = db.execute("SELECT payload FROM log_entries ORDER BY idx").fetchall()
    finally:
        db.close()
    return [json.loads(bytes(r[0])) for r in rows]


def test_dry_run_changes_no_byte_and_says_so(setup: tuple[Path, str], tmp_path: Path) -> None:
    data, token = setup
    req = _file(tmp_path, _request(token, "dry-1"))
    before = snapshot(data)
    code, text = _decide(str(req), "--data-dir", str(data), "--dry-run")
    assert code == 0, text
    assert "DRY RUN — not logged" in text and "ALLOW" in text
    assert "a dry run records nothing" in text
    code, out = _decide(str(req), "--data-dir", str(data), "--dry-run", "--json")
    assert code == 0, out
    decision = json.loads(out)
    assert decision["dry_run"] is True
    assert decision["log_index"] is None and "receipt" not in decision
    assert decision["policy_ids"] == ["drac-persists-its-artifacts"]
    assert snapshot(data) == before  # not a byte changed, no file added or removed


def test_a_decision_grows_the_log_by_exactly_one_decision_entry(
    setup: tuple[Path, str], tmp_path: Path
) -> None:
    data, token = setup
    before = _entries(data)
    code, out = _decide(
        "--data-dir", str(data), "--json", stdin=json.dumps(_request(token, "real-1"))
    )
    assert code == 0, out
    decision = json.loads(out)
    after = _entries(data)
    assert after[: len(before)] == before
    added = after[len(before) :]
    decisions = [e for e in added if e["type"] == "decision"]
    assert len(decisions) == 1
    assert decisions[0]["request"]["request_id"] == "real-1"
    assert {e["type"] for e in added} - {"decision"} <= {"boot", "attestation"}  # the boot's
    index = decision["log_index"]
    assert after[index] == decisions[0]
    assert decision["receipt"]["index"] == index and decision["receipt"]["checkpoint"]


def test_a_deny_exits_1_with_its_reasons(setup: tuple[Path, str], tmp_path: Path) -> None:
    data, token = setup
    req = _file(tmp_path, _request(token, "deny-1", resource="artifacts/emp/x.json"))
    code, text = _decide(str(req), "--data-dir", str(data))
    assert code == 1, text
    assert "DENY" in text and "capability: resource_not_covered" in _flat(text)
    code, out = _decide("-", "--data-dir", str(data), "--json", "--dry-run", stdin=req.read_text())
    assert code == 1
    reasons = json.loads(out)["reasons"]
    assert reasons and reasons[0]["stage"] == "capability"


@pytest.mark.parametrize(
    ("body", "says"),
    [
        ('{"request_id": ', "is not JSON"),
        ("", "is empty"),
        ("[1, 2]", "holds a JSON list"),
        ('{"request_id": "a", "request_id": "b"}', "duplicate key `request_id`"),
        ('{"request_id": "x", "principal": "drac"}', "is not a SOP request"),
        (
            '{"request_id": "x", "principal": "drac", "action": "artifact.delete",'
            ' "resource": "a/b"}',
            "unknown operation",
        ),
    ],
)
def test_a_malformed_request_file_exits_2_naming_it(
    setup: tuple[Path, str], tmp_path: Path, body: str, says: str
) -> None:
    data, _ = setup
    req = _file(tmp_path, body)
    before = snapshot(data)
    code, text = _decide(str(req), "--data-dir", str(data))
    assert code == 2, text
    assert str(req) in text.replace("\n", "")  # the path, whatever the console wrapped
    assert says in _flat(text)
    assert snapshot(data) == before  # refused before anything was booted or logged


def test_missing_paths_exit_2_naming_them(setup: tuple[Path, str], tmp_path: Path) -> None:
    data, token = setup
    code, text = _decide(str(tmp_path / "nope.json"), "--data-dir", str(data))
    assert code == 2 and "nothing is at" in _flat(text) and "expected one JSON" in _flat(text)
    assert str(tmp_path / "nope.json") in text.replace("\n", "")
    code, text = _decide(str(tmp_path), "--data-dir", str(data))
    assert code == 2 and "is a directory" in _flat(text)
    req = _file(tmp_path, _request(token))
    code, text = _decide(str(req), "--data-dir", str(tmp_path / "no-data"))
    assert code == 2 and "nothing is at" in _flat(text) and "sop init" in _flat(text)
    code, text = _decide(str(req), "--data-dir", str(req))
    assert code == 2 and "is a file, not a directory; expected a data directory" in _flat(text)


def test_refuses_while_a_server_holds_the_data_directory(
    setup: tuple[Path, str], tmp_path: Path
) -> None:
    data, token = setup
    req = _file(tmp_path, _request(token))
    lock = ServeLock.acquire(data)
    try:
        for extra in ([], ["--dry-run"]):
            code, text = _decide(str(req), "--data-dir", str(data), *extra)
            assert code == 2, text
            assert "bridge plane" in _flat(text) and "POST /v1/decide" in _flat(text)
    finally:
        lock.release()


def test_a_dry_run_of_a_postgresql_data_directory_exits_2(tmp_path: Path) -> None:
    from sop_verified.nexus.config import postgres_config

    data = tmp_path / "pg"
    data.mkdir()
    (data / "sop.toml").write_text(postgres_config("postgresql://127.0.0.1:1/none", "sop"))
    req = _file(tmp_path, _request("t"))
    code, text = _decide(str(req), "--data-dir", str(data), "--dry-run")
    assert code == 2 and "keeps its state in PostgreSQL" in _flat(text)
