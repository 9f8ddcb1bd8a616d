"""`sop status`, `sop cap list`, `sop attest verify`, `sop --version`, completion, `-` for stdin.

Exit statuses: 0 success, 1 a check failed, 2 bad input (the message names the
path and what is expected); ``--json`` prints one object, errors included.
"""

from __future__ import annotations

import base64
import json
import os
import shutil
import subprocess
import sys
from hashlib import sha256
from importlib import metadata
from pathlib import Path
from typing import Any

import pytest
from attacker import attacker_db
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import load_pem_public_key
from inspected import LISTED_AT, make_data_dir
from securesystemslib.dsse import Envelope
from securesystemslib.exceptions import VerificationError as SslibVerificationError
from securesystemslib.signer import SSlibKey
from typer.testing import CliRunner

from sop_verified.cli import app
from sop_verified.nexus.keys import public_pem
from sop_verified.storage.sqlite_log import LOG_SCHEMA
from sop_verified.storage.sqlite_seal import SEAL_SCHEMA

ROOT = Path(__file__).resolve().parents[1]
runner = CliRunner()


def _run(*args: str, stdin: bytes | None = None) -> tuple[int, str]:
    result = runner.invoke(app, list(args), input=stdin)
    return result.exit_code, result.output


def _flat(text: str) -> str:
    return " ".join(text.split())


@pytest.fixture(scope="module")
def made(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, str]]:
    data = tmp_path_factory.mktemp("inspect") / "data"
    return data, make_data_dir(data)


@pytest.fixture
def listed_at(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("sop_verified.nexus.sop.wall_clock", lambda: LISTED_AT)


# ---- sop status ------------------------------------------------------------------------------
def test_status_ready_exit_0_text_and_json(made: tuple[Path, dict[str, str]]) -> None:
    data, _ = made
    code, output = _run("status", "--data-dir", str(data))
    assert code == 0, output
    assert "SOP READY (read-only checks)" in output and "NOT_CHECKED" in output
    code, output = _run("status", "--data-dir", str(data), "--json")
    assert code == 0 and json.loads(output)["health"] == "READY"


def test_status_on_an_edited_entry_2_is_failed_exit_1_with_the_reason(
    made: tuple[Path, dict[str, str]], tmp_path: Path
) -> None:  # spec: INV-5
    copy = tmp_path / "data"
    shutil.copytree(made[0], copy)
    db = attacker_db(copy / "sop.db")
    db.execute("UPDATE log_entries SET payload = CAST('{}' AS BLOB) WHERE idx = 2")
    db.executescript(LOG_SCHEMA + SEAL_SCHEMA)
    db.close()
    code, output = _run("status", "--data-dir", str(copy))
    assert code == 1, output
    assert "FAILED: log:" in _flat(output) and "first at index 2" in _flat(output)
    code, output = _run("status", "--data-dir", str(copy), "--json")
    status = json.loads(output)
    assert code == 1 and status["health"] == "FAILED" and "index 2" in status["reason"]


@pytest.mark.parametrize("json_flag", [[], ["--json"]])
def test_status_without_a_data_directory_is_exit_2_naming_it(
    tmp_path: Path, json_flag: list[str]
) -> None:
    afile = tmp_path / "afile"
    afile.write_text("x")
    for path, says in ((tmp_path / "missing", "nothing is at"), (afile, "is a file")):
        code, output = _run("status", "--data-dir", str(path), *json_flag)
        assert code == 2, output
        if json_flag:
            error = json.loads(output)
            assert error["ok"] is False and error["exit"] == 2
            assert error["stage"] == "path" and error["code"] in ("not_found", "not_a_directory")
            assert says in error["message"] and str(path) in error["message"]
        else:
            assert says in _flat(output) and str(path) in _flat(output)


# ---- sop cap list ----------------------------------------------------------------------------
def test_cap_list_shows_live_capabilities_as_a_tree(
    made: tuple[Path, dict[str, str]], listed_at: None
) -> None:
    data, ids = made
    code, output = _run("cap", "list", "--data-dir", str(data))
    assert code == 0, output
    lines = output.splitlines()
    at = {
        label: next(i for i, line in enumerate(lines) if cap_id in line)
        for label, cap_id in ids.items()
        if cap_id in output
    }
    assert set(at) == {"drac", "drac.child", "drac.grandchild", "late"}  # revoked, expired hidden
    assert at["drac"] < at["drac.child"] < at["drac.grandchild"]
    assert "└── " + ids["drac.grandchild"] in lines[at["drac.grandchild"]]
    assert "not yet valid" in lines[at["late"]]
    flat = _flat(output)
    assert "7 capabilities admitted: 3 active, 1 not yet valid, 1 expired, 2 revoked" in flat
    assert "3 revoked or expired not shown (`--all` shows them)" in flat


def test_cap_list_all_shows_revoked_through_their_ancestor(
    made: tuple[Path, dict[str, str]], listed_at: None
) -> None:
    data, ids = made
    code, output = _run("cap", "list", "--all", "--data-dir", str(data))
    assert code == 0, output
    lines = output.splitlines()
    at = next(i for i, line in enumerate(lines) if ids["emp.child"] in line)
    assert lines[at].endswith("emp  revoked")
    assert _flat(lines[at + 3]).endswith(f"revoked 2027-01-15T08:00:00Z with {ids['emp']}")


def test_cap_list_json(made: tuple[Path, dict[str, str]], listed_at: None) -> None:
    data, ids = made
    code, output = _run("cap", "list", "--all", "--json", "--data-dir", str(data))
    assert code == 0, output
    listing = json.loads(output)
    assert listing["now"] == LISTED_AT and listing["all"] is True
    rows = {r["id"]: r for r in listing["capabilities"]}
    assert set(rows) == set(ids.values())
    assert rows[ids["drac.grandchild"]]["depth"] == 2
    assert rows[ids["csp"]]["status"] == "expired"
    code, output = _run("cap", "list", "--json", "--data-dir", str(data))
    assert {r["status"] for r in json.loads(output)["capabilities"]} == {"active", "not_yet_valid"}


def test_cap_list_on_a_tampered_store_is_exit_1_with_json_error(
    made: tuple[Path, dict[str, str]], tmp_path: Path
) -> None:  # spec: INV-11
    copy = tmp_path / "data"
    shutil.copytree(made[0], copy)
    db = attacker_db(copy / "sop.db")
    db.execute("DELETE FROM revocations")
    db.executescript(LOG_SCHEMA + SEAL_SCHEMA)
    db.close()
    code, output = _run("cap", "list", "--json", "--data-dir", str(copy))
    assert code == 1, output
    error = json.loads(output)
    assert error == {**error, "ok": False, "exit": 1, "stage": "integrity"}
    assert "table `revocations`" in error["message"]
    code, output = _run("cap", "list", "--data-dir", str(copy))
    assert code == 1 and "error:" in output


# ---- sop attest verify -----------------------------------------------------------------------
@pytest.fixture(scope="module")
def envelopes(
    made: tuple[Path, dict[str, str]], tmp_path_factory: pytest.TempPathFactory
) -> list[Path]:
    out = tmp_path_factory.mktemp("envelopes")
    code, output = _run("attest", "export", str(out), "--data-dir", str(made[0]), "--json")
    assert code == 0, output
    return [Path(p) for p in json.loads(output)["written"]]


def _pem(made: tuple[Path, dict[str, str]]) -> str:
    return str(made[0] / "keys" / "attestation.pub")


def _reference_accepts(envelope: dict[str, Any], pem: bytes) -> bool:
    """securesystemslib's DSSE verification (the reference implementation) of ``envelope``."""
    public = load_pem_public_key(pem)
    raw = public.public_bytes_raw()  # type: ignore[union-attr]  # an Ed25519 key
    key = SSlibKey.from_crypto(public, keyid=sha256(raw).hexdigest())
    try:
        Envelope.from_dict(envelope).verify([key], 1)
    except SslibVerificationError:
        return False
    return True


def test_attest_verify_accepts_every_exported_envelope(
    made: tuple[Path, dict[str, str]], envelopes: list[Path]
) -> None:
    code, output = _run("attest", "verify", *map(str, envelopes), "--pem", _pem(made), "--json")
    assert code == 0, output
    result = json.loads(output)
    assert result["ok"] is True and len(result["files"]) == len(envelopes) >= 3
    kinds = {f["predicate_type"].rsplit("/", 2)[-2] for f in result["files"]}
    assert {"boot-manifest", "proof-verdict"} <= kinds
    pem = Path(_pem(made)).read_bytes()
    assert all(_reference_accepts(json.loads(p.read_text()), pem) for p in envelopes)
    code, output = _run("attest", "verify", str(envelopes[0]), "--pem", _pem(made))
    assert code == 0 and "verified" in output


def test_attest_verify_refuses_a_tampered_statement_as_the_reference_does(
    made: tuple[Path, dict[str, str]], envelopes: list[Path], tmp_path: Path
) -> None:
    envelope = json.loads(envelopes[0].read_text())
    statement = json.loads(base64.b64decode(envelope["payload"]))
    statement["subject"][0]["digest"]["sha256"] = "00" * 32
    envelope["payload"] = base64.b64encode(json.dumps(statement).encode()).decode()
    bad = tmp_path / "tampered.json"
    bad.write_text(json.dumps(envelope))
    assert not _reference_accepts(envelope, Path(_pem(made)).read_bytes())
    files = (str(envelopes[1]), str(bad))
    code, output = _run("attest", "verify", *files, "--pem", _pem(made), "--json")
    assert code == 1, output
    good, failed = json.loads(output)["files"]
    assert good["ok"] is True
    assert failed["ok"] is False and failed["exit"] == 1 and failed["stage"] == "verification"


def test_attest_verify_with_another_key_is_exit_1(envelopes: list[Path], tmp_path: Path) -> None:
    other = tmp_path / "other.pub"
    other.write_text(public_pem(Ed25519PrivateKey.generate()))
    code, output = _run("attest", "verify", str(envelopes[0]), "--pem", str(other))
    assert code == 1 and "not verified" in output


def test_attest_verify_bad_input_is_exit_2_naming_the_file(
    made: tuple[Path, dict[str, str]], envelopes: list[Path], tmp_path: Path
) -> None:
    junk = tmp_path / "junk.json"
    junk.write_text("not json")
    code, output = _run("attest", "verify", str(junk), "--pem", _pem(made), "--json")
    assert code == 2 and json.loads(output)["files"][0]["stage"] == "input"
    code, output = _run("attest", "verify", str(tmp_path / "none.json"), "--pem", _pem(made))
    missing = f"nothing is at `{tmp_path / 'none.json'}`; expected a DSSE envelope"
    assert code == 2 and "".join(missing.split()) in "".join(output.split())  # a long path folds
    code, output = _run("attest", "verify", str(envelopes[0]), "--pem", str(junk), "--json")
    error = json.loads(output)
    assert code == 2 and error["exit"] == 2 and "is not a PEM public key" in error["message"]


def test_attest_verify_reads_standard_input(
    made: tuple[Path, dict[str, str]], envelopes: list[Path]
) -> None:
    stdin = envelopes[0].read_bytes()
    code, output = _run("attest", "verify", "-", "--pem", _pem(made), stdin=stdin)
    assert code == 0 and "verified standard input" in _flat(output)
    code, output = _run("attest", "verify", "-", "--pem", "-", stdin=b"")
    assert code == 2 and "can be read once" in output


# ---- --version, completion, `-` in the older commands ----------------------------------------
def test_version_comes_from_the_package_metadata() -> None:
    code, output = _run("--version")
    assert code == 0
    assert output.strip() == f"sop-verified {metadata.version('sop-verified')}"


def _as_sop(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    """The `sop` console script as a shell runs it (argv[0] `sop`: completion is keyed on it)."""
    code = "import sys; sys.argv[0] = 'sop'; from sop_verified.cli import main; main()"
    return subprocess.run(
        [sys.executable, "-c", code, *args],
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": str(ROOT), **env},
        timeout=60,
        check=False,
    )


def test_shell_completion_is_enabled_and_completes_sub_commands() -> None:
    # The shell named, as docs/CLI.md shows: `--show-completion` alone detects it from the
    # parent processes, which a test run (a background job, CI) need not have.
    script = _as_sop(env={"_SOP_COMPLETE": "source_bash"})
    assert script.returncode == 0 and "_SOP_COMPLETE=complete_bash" in script.stdout
    assert "#compdef sop" in _as_sop(env={"_SOP_COMPLETE": "source_zsh"}).stdout
    words = {"COMP_WORDS": "sop log ", "COMP_CWORD": "2", "_SOP_COMPLETE": "complete_bash"}
    completed = _as_sop(env=words)
    assert {"verify", "show", "prove"} <= set(completed.stdout.split())
    words = {"COMP_WORDS": "sop cap l", "COMP_CWORD": "2", "_SOP_COMPLETE": "complete_bash"}
    assert _as_sop(env=words).stdout.split() == ["list"]


def test_prove_reads_standard_input_and_says_the_format_it_sniffed() -> None:
    smt = b"(set-logic QF_LIA)\n(declare-const x Int)\n(assert (> x x))\n"
    result = runner.invoke(app, ["prove", "-", "--json"], input=smt)
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["verdict"] == "PROVED"
    assert "reading standard input as `smt2` (sniffed" in result.stderr
    result = runner.invoke(app, ["prove", "-", "--format", "smt2"], input=smt)
    assert result.exit_code == 0 and "sniffed" not in result.stderr
    result = runner.invoke(app, ["prove", "-"], input=b"hello")
    assert result.exit_code == 2
    assert "cannot tell the format of standard input" in _flat(result.stderr)
    assert "--format smt2" in _flat(result.stderr)


def test_receipt_verify_reads_the_bundle_from_standard_input(
    made: tuple[Path, dict[str, str]],
) -> None:
    data, _ = made
    code, bundle = _run("log", "prove", "3", "--data-dir", str(data))
    assert code == 0, bundle
    vkey = str(data / "keys" / "checkpoint.vkey")
    code, output = _run("receipt", "verify", "-", "--vkey", vkey, stdin=bundle.encode())
    assert code == 0 and "receipt verified" in output
    code, output = _run("receipt", "verify", str(data / "none"), "--vkey", vkey)
    assert code == 2 and "nothing is at" in _flat(output) and "tlog-proof" in _flat(output)
