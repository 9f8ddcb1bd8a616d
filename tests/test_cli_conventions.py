"""The CLI's conventions: one exit-code table, errors as JSON under --json, one JSON style,
text that keeps brackets, shows no None and says "1 policy".

Issue 17's defects each have a test here, named after what must hold now; the matrix of bad
inputs over every command is tests/test_cli_exits.py.
"""

from __future__ import annotations

import errno
import json
import re
import sqlite3
from pathlib import Path

import orjson
import pytest
import typer
from typer.testing import CliRunner

from sop_verified import cli_support, errors
from sop_verified.cli import app
from sop_verified.cli_support import ERROR_EXITS, ExitCode, classify, fail, json_mode
from sop_verified.server.admin_client import AdminRefusedError

runner = CliRunner()

BRACKETS = "principal `[a-z][a-z0-9_-]{0,63}` in {`args`: [sort]} [/] [bold]x[/bold]"
"""Text rich would eat as markup: a character class, a closing tag, a style."""

POLICY = """\
[[policy]]
id = "drac-persists-its-artifacts"
effect = "permit"
principal = ["drac"]
action = ["artifact.persist"]
resource = ["artifacts/drac/**"]
channel = "bridge"
"""
SAT = "(set-logic QF_LIA)(declare-const x Int)(assert (> x 1))(assert (< x 3))(check-sat)"
BAD_PRINCIPAL = POLICY.replace('["drac"]', '["Not A Principal!"]')
UNSOUND = POLICY.replace("artifacts/drac/**", "**")


def _run(*args: str) -> tuple[int, str]:
    result = runner.invoke(app, list(args))
    return result.exit_code, result.output


def _flat(text: str) -> str:
    return " ".join(text.split())


def _policies(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.mkdir()
    (path / "p.toml").write_text(text)
    return path


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("conventions") / "data"
    code, output = _run("init", "--data-dir", str(path))
    assert code == 0, output
    return path


@pytest.fixture
def scratch(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.chdir(tmp_path)  # no ./sop-data, and nothing written beside the repository
    (tmp_path / "afile").write_text("a file, not a directory\n")
    return tmp_path


# ---- the table, in one place --------------------------------------------------------------
def test_every_error_class_of_sop_is_named_in_the_exit_table() -> None:
    named = {n for n in errors.__all__ if isinstance(getattr(errors, n), type)}
    assert named <= set(ERROR_EXITS), sorted(named - set(ERROR_EXITS))
    assert all(code != ExitCode.INTERNAL for code, _ in ERROR_EXITS.values())


@pytest.mark.parametrize(
    ("exc", "status"),
    [
        (errors.InputError("bad"), 2),
        (errors.ConfigError("bad"), 2),
        (errors.PolicyParseError("bad"), 2),
        (errors.StorageError("locked"), 2),
        (errors.IntegrityError("edited"), 1),
        (errors.VerificationError("no"), 1),
        (errors.AttenuationError("wider", code="attenuation"), 1),
        (errors.ReceiptError("signature", "no"), 1),
        (FileNotFoundError(errno.ENOENT, "No such file or directory", "x"), 2),
        (NotADirectoryError(errno.ENOTDIR, "Not a directory", "x"), 2),
        (PermissionError(errno.EACCES, "Permission denied", "x"), 2),
        (OSError(errno.EROFS, "Read-only file system", "x"), 2),
        (IsADirectoryError(errno.EISDIR, "Is a directory", "x"), 2),
        (FileExistsError(errno.EEXIST, "File exists", "x"), 2),
        (sqlite3.OperationalError("attempt to write a readonly database"), 2),
        (ValueError("a bug"), 3),
        (KeyError("a bug"), 3),
        (sqlite3.ProgrammingError("a bug"), 3),
    ],
)
def test_errors_take_their_place_in_the_table(exc: BaseException, status: int) -> None:
    assert classify(exc)[0] == status


def test_a_server_answer_exits_as_the_same_command_run_locally() -> None:
    refused = AdminRefusedError(422, {"detail": "wider", "error": "AttenuationError"})
    bad = AdminRefusedError(422, {"detail": "no such capability", "error": "InputError"})
    old = AdminRefusedError(422, {"detail": "no class named"})
    assert [classify(e)[0] for e in (refused, bad, old)] == [1, 2, 2]


def test_a_permission_error_names_the_path_and_what_is_expected() -> None:
    said = cli_support.describe(PermissionError(errno.EACCES, "Permission denied", "/x/sop.db"))
    assert "`/x/sop.db`" in said and "permission denied" in said and "expected" in said
    said = cli_support.describe(OSError(errno.EROFS, "Read-only file system", "/ro/sop.db"))
    assert "read-only file system" in said and "expected a writable" in said


def test_the_exit_table_is_in_sop_help_and_in_docs() -> None:
    code, output = _run("--help")
    flat = _flat(output)
    assert code == 0
    for line in ("0 success", "1 refused", "2 usage or input error", "3 internal error only"):
        assert line in flat, line
    doc = (Path(__file__).resolve().parents[1] / "docs" / "CLI.md").read_text()
    table = doc.split("## Exit codes", 1)[1].split("\n## ", 1)[0]
    for code in ExitCode:
        assert f"| {int(code)} |" in table
    for name in ERROR_EXITS:
        assert f"`{name}`" in table, f"docs/CLI.md's exit table does not name `{name}`"


# ---- issue 17's defects -------------------------------------------------------------------
def test_init_on_a_file_is_an_input_error_naming_it(scratch: Path) -> None:
    code, output = _run("init", "--data-dir", "afile")
    assert code == 2 and "`afile` is a file, not a directory" in _flat(output)
    assert "Traceback" not in output and "internal error" not in output


def test_log_verify_on_a_file_is_an_input_error_naming_it(scratch: Path) -> None:
    code, output = _run("log", "verify", "--data-dir", "afile")
    assert code == 2 and "`afile` is a file, not a directory" in _flat(output)


def test_status_on_a_file_does_not_suggest_an_init_that_would_fail(scratch: Path) -> None:
    code, output = _run("status", "--data-dir", "afile")
    assert code == 2 and "expected a data directory" in _flat(output)
    assert "sop init" not in output.replace("made by `sop init`", "")
    code, output = _run("status", "--data-dir", "absent")
    assert code == 2 and "`sop init --data-dir absent` creates one" in _flat(output)


def test_a_path_under_a_file_names_the_file_in_the_way(scratch: Path) -> None:
    code, output = _run("log", "verify", "--data-dir", "afile/data")
    assert code == 2 and "`afile` is a file, not a directory, so `afile/data`" in _flat(output)


def test_rlimit_zero_is_a_usage_error_naming_the_range(scratch: Path) -> None:
    (scratch / "ob.smt2").write_text("(assert true)")
    code, output = _run("prove", "--rlimit", "0", "ob.smt2")
    assert code == 2 and "--rlimit" in output and "greater than or equal to 1" in _flat(output)


def test_a_mistyped_vkey_path_says_no_file_is_there(data: Path, scratch: Path) -> None:
    mistyped = "keys/checkpoint+genesis.vkey"  # a `+` in it: once read as a malformed key
    code, output = _run("log", "verify", "--data-dir", str(data), "--vkey", mistyped)
    assert code == 2 and f"no verifier key file at `{mistyped}`" in _flat(output)
    assert "malformed" not in output


def test_a_missing_policy_path_is_exit_2_for_check_and_activate(data: Path, scratch: Path) -> None:
    for verb in ("check", "activate"):
        code, output = _run("policy", verb, "absent", "--data-dir", str(data))
        assert code == 2 and "nothing is at `absent`" in _flat(output), (verb, output)


def test_an_unloadable_policy_set_is_exit_2_for_check_and_activate(
    data: Path, scratch: Path
) -> None:
    bad = _policies(scratch, "bad", BAD_PRINCIPAL)
    for verb in ("check", "activate"):
        code, output = _run("policy", verb, str(bad), "--data-dir", str(data), "--json")
        error = json.loads(output)
        assert (code, error["exit"], error["code"]) == (2, 2, "invalid_policy_set"), verb


def test_a_refused_policy_set_is_exit_1_for_check_and_activate(data: Path, scratch: Path) -> None:
    unsound = _policies(scratch, "unsound", UNSOUND)
    for verb in ("check", "activate"):
        code, output = _run("policy", verb, str(unsound), "--data-dir", str(data), "--json")
        assert code == 1 and json.loads(output)["ok"] is False, verb


def test_a_missing_obligation_file_is_exit_2_not_an_internal_error(scratch: Path) -> None:
    code, output = _run("prove", "absent.smt2")
    assert code == 2 and "nothing is at `absent.smt2`" in _flat(output)
    code, output = _run("prove", "absent.smt2", "--json")
    assert json.loads(output)["exit"] == 2


def test_prove_exits_1_for_refuted_and_2_for_a_file_that_is_not_an_obligation(
    scratch: Path,
) -> None:
    (scratch / "sat.smt2").write_text(SAT)
    (scratch / "x.txt").write_text("(assert true)")
    assert _run("prove", "sat.smt2")[0] == 1
    code, output = _run("prove", "x.txt", "--json")
    error = json.loads(output)
    assert code == 2 and error["ok"] is False and error["exit"] == 2
    assert error["verdict"] == "REJECTED" and "`x.txt`" in error["message"]


# ---- --json: errors included, one style ---------------------------------------------------
def test_errors_under_json_are_one_object_on_stdout(scratch: Path) -> None:
    result = runner.invoke(app, ["status", "--data-dir", "afile", "--json"])
    error = json.loads(result.stdout)
    assert set(error) == {"ok", "exit", "stage", "code", "message"}
    assert (error["ok"], error["exit"], error["stage"], error["code"]) == (
        False,
        2,
        "path",
        "not_a_directory",
    )
    assert "`afile`" in error["message"]


def test_a_usage_error_under_json_is_the_json_error_too() -> None:
    result = runner.invoke(app, ["status", "--no-such-flag", "--json"])
    error = json.loads(result.stdout)
    assert result.exit_code == 2 and error["exit"] == 2 and error["stage"] == "usage"
    assert "--no-such-flag" in error["message"]


def test_a_stream_prints_its_json_error_on_one_line(scratch: Path) -> None:
    result = runner.invoke(app, ["events", "tail", "--data-dir", "afile", "--json"])
    lines = result.stdout.splitlines()
    assert result.exit_code == 2 and len(lines) == 1 and json.loads(lines[0])["exit"] == 2


def test_log_prove_and_keys_export_have_json(data: Path) -> None:
    code, output = _run("log", "prove", "0", "--data-dir", str(data), "--json")
    proved = json.loads(output)
    assert code == 0 and proved["index"] == 0 and proved["receipt"].startswith("c2sp.org/")
    code, output = _run("keys", "export", "--data-dir", str(data), "--json")
    key = json.loads(output)
    assert code == 0 and key["kind"] == "checkpoint_vkey" and "+" in key["key"]
    code, output = _run("keys", "export", "--pem", "--data-dir", str(data), "--json")
    assert json.loads(output)["key"].startswith("-----BEGIN PUBLIC KEY-----")


def _documents(data: Path, policies: Path, scratch: Path) -> list[list[str]]:
    (scratch / "ob.smt2").write_text(SAT.replace("(< x 3)", "(< x 0)"))
    d = ["--data-dir", str(data)]
    return [
        ["status", *d],
        ["prove", "ob.smt2"],
        ["policy", "check", str(policies), *d],
        ["log", "verify", *d],
        ["log", "checkpoint", *d],
        ["log", "prove", "0", *d],
        ["keys", "export", *d],
        ["state", "check", *d],
        ["attest", "export", str(scratch / "envelopes"), *d],
        ["cap", "list", *d],
        ["attest", "verify", *_envelopes(data, scratch), "--pem", _pem(data)],
    ]


def _envelopes(data: Path, scratch: Path) -> list[str]:
    where = scratch / "exported"
    if not where.exists():
        assert _run("attest", "export", str(where), "--data-dir", str(data))[0] == 0
    return [str(p) for p in sorted(where.glob("*.json"))[:2]]


def _pem(data: Path) -> str:
    return str(data / "keys" / "attestation.pub")


def test_json_is_one_style_everywhere_indented_with_sorted_keys(data: Path, scratch: Path) -> None:
    policies = _policies(scratch, "one", POLICY)
    for args in _documents(data, policies, scratch):
        result = runner.invoke(app, [*args, "--json"])
        value = json.loads(result.stdout)
        style = orjson.dumps(value, option=orjson.OPT_INDENT_2 | orjson.OPT_SORT_KEYS)
        assert result.stdout == style.decode() + "\n", args


# ---- text output --------------------------------------------------------------------------
def test_fail_prints_brackets_and_braces_intact(capsys: pytest.CaptureFixture[str]) -> None:
    token = json_mode("")
    try:
        with pytest.raises(typer.Exit):
            fail(BRACKETS)
    finally:
        cli_support._JSON_MODE.reset(token)
    assert BRACKETS in _flat(capsys.readouterr().err)


def test_a_bad_principal_prints_the_pattern_intact(scratch: Path) -> None:
    bad = _policies(scratch, "bad", BAD_PRINCIPAL)
    code, output = _run("policy", "check", str(bad))
    assert code == 2 and "`[a-z][a-z0-9_-]{0,63}`" in _flat(output)


def test_prove_on_an_empty_json_file_prints_its_message_intact(scratch: Path) -> None:
    (scratch / "empty.json").write_text("")
    code, output = _run("prove", "empty.json")
    flat = _flat(output.replace("│", " "))
    assert code == 2  # the reason and the evidence both quote the accepted form, intact
    assert flat.count("{`args`: [sort], `result`: sort}}") == 2
    assert flat.count("`assumptions`: [term]") == 2


def test_an_error_quoting_the_input_keeps_its_brackets(data: Path, scratch: Path) -> None:
    (scratch / "[x]{y}.vkey").write_text("[bold]not[/bold] a {key}\n")
    code, output = _run("log", "verify", "--data-dir", str(data), "--vkey", "[x]{y}.vkey")
    assert code == 2 and "`[x]{y}.vkey`" in _flat(output)


PLURAL_ERRORS = re.compile(
    r"(?<![\d.])1 (policies|entries|envelopes|rows|findings|keys|capabilities|cases|files"
    r"|comments|checkpoints|log entries)\b|\(s\)"
)


def test_text_output_shows_no_none_and_agrees_in_number(data: Path, scratch: Path) -> None:
    policies = _policies(scratch, "one", POLICY)
    broken = scratch / "broken"
    broken.mkdir()
    (broken / "sop.toml").write_text("")  # a data directory that boots FAILED
    outputs = []
    streams = [
        ["log", "show", "--data-dir", str(data)],
        ["events", "tail", "--data-dir", str(data)],
    ]
    commands = [*_documents(data, policies, scratch), *streams]
    for args in [*commands, ["status", "--data-dir", str(broken)]]:
        outputs.append((args, runner.invoke(app, args).output))
    for args, output in outputs:
        assert not re.search(r"\bNone\b", output), (args, output)
        assert not PLURAL_ERRORS.search(output), (args, output)
    check = next(o for a, o in outputs if a[:2] == ["policy", "check"])
    assert "1 policy," in check
