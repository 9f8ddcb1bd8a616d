"""Every `sop` command against a matrix of bad inputs: the exit-code table holds.

The commands are enumerated from the typer app, so a new command is in the matrix the day it
is registered; a parameter the matrix does not know how to feed makes the test fail, naming it,
until it is added below. Each command's parameters are fed bad values by their role:

- a data directory (``--data-dir``, ``--replica-of``) or a witness directory (``--dir``):
  missing, a file, a path under a file, a dangling symbolic link, an empty directory, a copy
  whose ``sop.toml`` is empty or malformed, one whose checkpoint key files are wrong, and a
  read-only copy;
- an input file: missing, a directory, a path under a file, a dangling link, empty, malformed;
- a key (``--vkey``, ``--witness``, ``--log``): a mistyped path with ``+`` in it, a directory,
  an empty file, a file of garbage, a key of the wrong kind (the attestation PEM);
- an output path: under a file, or of the wrong kind (a directory for a file, and the reverse);
- a number out of its range, and an unknown flag.

Every run asserts: never exit 3 (an internal error); the exit status of the table (2 unless
an override below says otherwise, with its reason); the message names the path (or the flag)
and says what is expected or accepted. Commands with ``--json`` run twice, the second time
asserting one JSON error object ``{"ok": false, "exit", "stage", "code", "message"}``.

This machine runs the tests as root, for whom ``chmod`` denies nothing. The read-only copy is
made immutable with ``chattr +i`` instead (root cannot write it either), or with ``chmod`` when
not root; when neither works the case is skipped. A permission-denied directory is stood in
for by a path under a regular file and by a dangling symbolic link: the command gets the same
kind of refusal from the operating system (ENOTDIR, ENOENT) and must explain it the same way.
"""

from __future__ import annotations

import itertools
import json
import os
import re
import shutil
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import typer
from typer.testing import CliRunner

from sop_verified import cli

runner = CliRunner()
_FRESH = itertools.count()

POLICY = """\
[[policy]]
id = "drac-persists-its-artifacts"
effect = "permit"
principal = ["drac"]
action = ["artifact.persist"]
resource = ["artifacts/drac/**"]
channel = "bridge"
"""
POLICY_TEST = """\
[[case]]
name = "drac persists its plan"
principal = "drac"
action = "artifact.persist"
resource = "artifacts/drac/plan.json"
expect = "ALLOW"
"""
REQUEST = (
    '{"request_id": "r-1", "principal": "drac", "action": "artifact.persist",'
    ' "resource": "artifacts/drac/plan.json", "capability": "not-a-token"}'
)
OBLIGATION = "(set-logic QF_LIA)\n(declare-const x Int)\n(assert (> x 2))\n(assert (< x 1))\n"
MALFORMED = 'principal = "[a-z][a-z0-9_-]{0,63}" [[ {not: "valid"\n\x00\xff'

# A parameter's role, by its Python name; a Path parameter not named here fails the test.
ROLES = {
    "data_dir": "data_dir",
    "replica_of": "data_dir",
    "directory": "witness_dir",
    "path": "input",
    "bundle": "input",
    "payload": "input",
    "checkpoint": "input",
    "anchor": "input",
    "source": "input",
    "tests": "input",
    "policies": "input",
    "paths": "input",
    "files": "input",
    "pem": "input",
    "out_file": "output_file",
    "report_out": "output_file",
    "decision_log": "output_file",
    "out_dir": "output_dir",
    "vkey": "key",
    "witness": "key",
    "log": "key",
}
CREATORS = {("init", "data_dir"), ("demo", "data_dir"), ("witness init", "directory")}
"""Parameters naming a directory the command makes: nothing there, or an empty directory, is
what they expect (those cases are not errors and are left out)."""
DIRECTORY_TOO = {
    ("policy check", "path"),
    ("policy activate", "path"),
    ("policy test", "tests"),
    ("policy test", "policies"),
    ("policy fmt", "paths"),
}
"""Input paths that may be a directory as well as a file (a directory of policy files)."""
NEGATIVE_OK = {"from_index"}
"""`sop events tail --from -10`: the last ten entries."""
POSITIVE = {"rlimit", "days", "expires_in", "queue", "index"}
"""Numbers whose 0 is out of range too (`log prove 0` is entry 0: only -1 is bad)."""

BROKEN_CONFIG = ("empty_config", "malformed_config")
BROKEN_KEYS = ("wrong_key", "empty_key")
EXIT_OVERRIDES: dict[tuple[str, str, str], set[int]] = {
    # A receipt that does not parse fails its `format` check, exit 1: one altered on its way
    # cannot be told from one that never was a receipt (an empty or missing file is exit 2).
    # The same holds for a rollback anchor given with --anchor: the audit reports it.
    ("receipt verify", "bundle", "malformed"): {1},
    ("log verify", "anchor", "malformed"): {1},
    # any bytes are a payload: the receipt then fails its `payload` check, exit 1
    ("receipt verify", "payload", "malformed"): {1},
    ("receipt verify", "payload", "empty"): {1},
    # `sop status` boots what it can and reports FAILED with the reason: exit 1 unless READY
    **{("status", "data_dir", case): {1} for case in BROKEN_CONFIG + BROKEN_KEYS},
    # `sop serve` starts on a data directory whose boot FAILED and answers 503 `not_ready`
    # (docs/HTTP_OPERATIONS.md): the stub below stops it where it would listen, exit 0
    **{("serve", "data_dir", case): {0} for case in BROKEN_CONFIG + BROKEN_KEYS},
    # commands that do not read the broken file do their work
    **{("keys export", "data_dir", case): {0} for case in BROKEN_CONFIG},  # reads keys/ only
    **{("attest export", "data_dir", case): {0} for case in BROKEN_KEYS},  # reads the log only
    **{  # reads the CA in keys/tls/ only, writes to --out
        ("certs issue", "data_dir", case): {0} for case in (*BROKEN_CONFIG, *BROKEN_KEYS)
    },
    ("witness add-log", "directory", "empty_key"): {0},  # writes witness.toml, signs nothing
    # a SOP that is not READY decides DENY (INV-2): `sop decide` prints why, and exits 1
    **{("decide", "data_dir", case): {1} for case in (*BROKEN_CONFIG, *BROKEN_KEYS)},
}
BASE_FLAGS = {"log anchor": ["--accept-current"]}
"""Flags a command needs to get past its own first check to the parameters under test."""
READ_ONLY_EXITS = {0, 1, 2}
"""On a read-only copy a command that only reads may succeed (0), report (1) or refuse (2),
naming the path; it never fails with an internal error."""


@dataclass(frozen=True)
class World:
    """Valid things to fill the parameters that are not under test."""

    tmp: Path
    data_dir: Path
    witness_dir: Path
    vkey: str
    receipt: Path
    policies: Path
    obligation: Path
    request: Path
    envelope: Path
    broken: dict[str, Path]


def _chattr(path: Path, flag: str) -> bool:
    tool = shutil.which("chattr")
    if tool is None:
        return False
    done = subprocess.run([tool, "-R", flag, str(path)], capture_output=True, check=False)
    return done.returncode == 0


def _read_only(path: Path) -> bool:
    """Make ``path`` read-only, for root too when chattr works; whether it worked."""
    if os.getuid() == 0:
        if not _chattr(path, "+i"):
            return False
    else:
        for p in [path, *path.rglob("*")]:
            p.chmod(p.stat().st_mode & ~0o222)
    probe = path / "probe"
    try:
        probe.write_text("x")
    except OSError:
        return True
    probe.unlink()
    return False


def _writable_again(path: Path) -> None:
    if os.getuid() == 0:
        _chattr(path, "-i")
    else:
        for p in [path, *path.rglob("*")]:
            p.chmod(p.stat().st_mode | 0o200)


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    tmp = tmp_path_factory.mktemp("exits")
    data = tmp / "data"
    made = runner.invoke(cli.app, ["init", "--data-dir", str(data)])
    assert made.exit_code == 0, made.output
    (tmp / "afile").write_text("not a directory\n")
    (tmp / "empty").mkdir()
    (tmp / "empty-file").write_text("")
    (tmp / "malformed-file").write_bytes(MALFORMED.encode("utf-8", "surrogateescape"))
    (tmp / "dangling").symlink_to(tmp / "gone")
    (tmp / "policies").mkdir()
    (tmp / "policies" / "policies.toml").write_text(POLICY)
    (tmp / "policies" / "tests").mkdir()
    (tmp / "policies" / "tests" / "t.toml").write_text(POLICY_TEST)
    (tmp / "request.json").write_text(REQUEST)
    (tmp / "ob.smt2").write_text(OBLIGATION)
    receipt = tmp / "r.tlog-proof"
    proved = runner.invoke(cli.app, ["log", "prove", "0", "--data-dir", str(data)])
    assert proved.exit_code == 0, proved.output
    receipt.write_text(proved.stdout)
    exported = runner.invoke(
        cli.app, ["attest", "export", str(tmp / "envs"), "--data-dir", str(data)]
    )
    assert exported.exit_code == 0, exported.output
    envelope = sorted((tmp / "envs").glob("*.json"))[0]
    witness = tmp / "witness"
    made = runner.invoke(cli.app, ["witness", "init", "--dir", str(witness)])
    assert made.exit_code == 0, made.output
    broken = _broken_copies(tmp, data, witness)
    yield World(
        tmp=tmp,
        data_dir=data,
        witness_dir=witness,
        vkey=(data / "keys" / "checkpoint.vkey").read_text().strip(),
        receipt=receipt,
        policies=tmp / "policies",
        obligation=tmp / "ob.smt2",
        request=tmp / "request.json",
        envelope=envelope,
        broken=broken,
    )
    for path in broken.values():
        _writable_again(path)


def _wrong_keys(data: Path) -> None:
    """Every key file holds a key of another kind (the attestation PEM)."""
    pem = (data / "keys" / "attestation.pub").read_text()
    for key in (data / "keys").glob("*.*key"):
        key.write_text(pem)


def _empty_keys(data: Path) -> None:
    for key in (data / "keys").glob("*.*key"):
        key.write_text("")


def _broken_copies(tmp: Path, data: Path, witness: Path) -> dict[str, Path]:
    """Copies of the data and witness directories, each broken in one way."""
    out = {}
    for name, source, edit in [
        ("empty_config", data, lambda d: (d / "sop.toml").write_text("")),
        ("malformed_config", data, lambda d: (d / "sop.toml").write_text(MALFORMED)),
        ("wrong_key", data, _wrong_keys),
        ("empty_key", data, _empty_keys),
        ("witness_malformed", witness, lambda d: (d / "witness.toml").write_text(MALFORMED)),
        ("witness_empty_key", witness, lambda d: (d / "witness.key").write_text("")),
        ("read_only", data, lambda d: None),
        ("witness_read_only", witness, lambda d: None),
    ]:
        copy = tmp / f"copy-{name}"
        shutil.copytree(source, copy, symlinks=True)
        edit(copy)
        out[name] = copy
    for name in ("read_only", "witness_read_only"):
        if not _read_only(out[name]):
            out.pop(name)
    return out


# ---- the commands ---------------------------------------------------------------------------
def _commands() -> list[tuple[str, Any]]:
    root = typer.main.get_command(cli.app)
    ctx = typer.Context(root)
    found = []

    def walk(command: Any, path: list[str]) -> None:
        if hasattr(command, "list_commands"):
            for name in command.list_commands(ctx):
                walk(command.get_command(ctx, name), [*path, name])
        else:
            found.append((" ".join(path), command))

    walk(root, [])
    return found


COMMANDS = _commands()


def _annotation(param: Any) -> str:
    described = getattr(param, "type_descriptor", None)
    if described is not None:
        return str(described.annotation)
    return str(getattr(param.type, "name", param.type))


def _is_path(param: Any) -> bool:
    return "Path" in _annotation(param) or "path" in _annotation(param).lower()


def _is_number(param: Any) -> bool:
    text = _annotation(param)
    return not getattr(param, "is_flag", False) and ("int" in text or "float" in text)


def _flag(param: Any) -> str | None:
    """The option's name (``--data-dir``), or None for an argument."""
    return next((o for o in param.opts if o.startswith("--")), None)


VALID: dict[str, Any] = {
    "principal": "drac",
    "action": "artifact.persist",
    "resource": "artifacts/drac/**",
    "token": "not-a-token",
    "cap_id": "cap-0",
    "index": "0",
    "name": "alice",
    "key_id": "key-0",
}


def _valid(world: World, command: str, param: Any) -> str:
    name = param.name
    role = ROLES.get(name)
    if role == "data_dir":
        return str(
            world.tmp / f"new-{command.replace(' ', '-')}"
            if (command, name) in CREATORS
            else world.data_dir
        )
    if role == "witness_dir":
        if (command, name) in CREATORS:
            return str(world.tmp / "new-witness")
        return str(world.witness_dir)
    if name in ("path", "paths", "policies"):
        return str(world.policies if command.startswith("policy") else world.obligation)
    if name == "tests":
        return str(world.policies / "tests")
    if name == "source":
        return str(world.request)
    if name == "bundle":
        return str(world.receipt)
    if name == "files":
        return str(world.envelope)
    if name == "pem":
        return str(world.data_dir / "keys" / "attestation.pub")
    if name == "vkey":
        return world.vkey
    if name == "out_dir":
        return str(world.tmp / "out" / str(next(_FRESH)))
    if name in VALID:
        return str(VALID[name])
    raise AssertionError(
        f"`sop {command}` needs a valid value for its required parameter `{name}`: add one to"
        " VALID in tests/test_cli_exits.py"
    )


def _base_args(world: World, command: str, params: list[Any], skip: str) -> list[str]:
    """The command line with every required parameter valid (and a valid data directory)."""
    args: list[str] = []
    for param in params:
        if param.name == skip or getattr(param, "hidden", False):
            continue
        wanted = param.required or param.name in ("data_dir", "out_dir", "source")
        if not wanted:
            continue
        value = _valid(world, command, param)
        flag = _flag(param)
        args += [flag, value] if flag else [value]
    return args


# ---- the bad inputs -------------------------------------------------------------------------
@dataclass(frozen=True)
class Case:
    """One bad value of one parameter."""

    command: str
    param: str
    case: str
    value: str
    names: str  # what the message must name (the path, the flag)
    expected: set[int]


def _dir_cases(
    world: World, command: str, name: str, witness: bool
) -> Iterator[tuple[str, str, str]]:
    tmp = world.tmp
    yield "missing", str(tmp / "absent"), str(tmp / "absent")
    yield "file", str(tmp / "afile"), str(tmp / "afile")
    yield "under_file", str(tmp / "afile" / "sub"), str(tmp / "afile")
    yield "dangling_symlink", str(tmp / "dangling"), str(tmp / "dangling")
    yield "empty_dir", str(tmp / "empty"), str(tmp / "empty")
    prefix = "witness_" if witness else ""
    kinds = (
        ["malformed", "empty_key", "read_only"]
        if witness
        else ["empty_config", "malformed_config", "wrong_key", "empty_key", "read_only"]
    )
    for kind in kinds:
        copy = world.broken.get(prefix + kind)
        if copy is not None:
            yield kind, str(copy), str(copy)


def _cases(world: World) -> Iterator[tuple[Case, list[str], bool]]:
    for command, click_command in COMMANDS:
        params = [p for p in click_command.params if not getattr(p, "hidden", False)]
        has_json = any(_flag(p) == "--json" for p in params)
        head = [*command.split(), *BASE_FLAGS.get(command, [])]
        for param in params:
            name, flag = param.name, _flag(param)
            role = ROLES.get(name)
            if param.required and role is None and name not in VALID:
                raise AssertionError(
                    f"`sop {command}` has a required parameter `{name}` the matrix does not know:"
                    " give it a role in ROLES or a valid value in VALID (tests/test_cli_exits.py)"
                )
            if name == "vkey" and "bool" in _annotation(param):
                role = None  # `keys export --vkey`: a flag choosing which key to print
            values: list[tuple[str, str, str]] = []
            if role in ("data_dir", "witness_dir"):
                values = list(_dir_cases(world, command, name, role == "witness_dir"))
                if (command, name) in CREATORS:
                    values = [v for v in values if v[0] not in ("missing", "empty_dir")]
            elif role == "input":
                values = _input_cases(world, command, name)
            elif role == "key":
                values = _key_cases(world)
            elif role in ("output_file", "output_dir"):
                wrong = world.tmp / ("empty" if role == "output_file" else "afile")
                values = [
                    ("under_file", str(world.tmp / "afile" / "x"), str(world.tmp / "afile")),
                    ("wrong_kind", str(wrong), str(wrong)),
                ]
            elif _is_path(param):
                raise AssertionError(
                    f"`sop {command}` has a path parameter `{name}` the matrix does not know:"
                    " give it a role in ROLES (tests/test_cli_exits.py)"
                )
            elif _is_number(param) and name not in NEGATIVE_OK:
                bad = ["-1"] + (["0"] if name in POSITIVE and name != "index" else [])
                if "float" in _annotation(param):
                    bad = ["-1", "200"]
                values = [(f"number {v}", v, flag or "") for v in bad]
            for case, value, names in values:
                expected = EXIT_OVERRIDES.get((command, name, case), {2})
                if case == "read_only":
                    expected = READ_ONLY_EXITS
                for json_output in (False, True) if has_json else (False,):
                    base = _base_args(world, command, params, skip=name)  # fresh --out each
                    args = [*head, *base, *([flag, value] if flag else [value])]
                    yield Case(command, name, case, value, names, expected), args, json_output
        unknown = Case(command, "--no-such-flag", "unknown flag", "", "--no-such-flag", {2})
        for json_output in (False, True) if has_json else (False,):
            yield unknown, [*head, "--no-such-flag"], json_output


def _input_cases(world: World, command: str, name: str) -> list[tuple[str, str, str]]:
    tmp = world.tmp
    cases = [
        ("missing", str(tmp / "absent.toml"), str(tmp / "absent.toml")),
        ("under_file", str(tmp / "afile" / "x.json"), str(tmp / "afile")),
        ("dangling_symlink", str(tmp / "dangling"), str(tmp / "dangling")),
        ("empty", str(tmp / "empty-file"), str(tmp / "empty-file")),
        ("malformed", str(tmp / "malformed-file"), str(tmp / "malformed-file")),
    ]
    if (command, name) not in DIRECTORY_TOO:
        cases.append(("directory", str(tmp / "empty"), str(tmp / "empty")))
    else:
        cases.append(("empty directory", str(tmp / "empty"), str(tmp / "empty")))
    return cases


def _key_cases(world: World) -> list[tuple[str, str, str]]:
    tmp = world.tmp
    pem = world.data_dir / "keys" / "attestation.pub"
    mistyped = str(tmp / "keys" / "checkpoint+vkey")
    return [
        ("mistyped path", mistyped, mistyped),
        ("directory", str(tmp / "empty"), str(tmp / "empty")),
        ("empty file", str(tmp / "empty-file"), str(tmp / "empty-file")),
        ("malformed file", str(tmp / "malformed-file"), str(tmp / "malformed-file")),
        ("wrong key", str(pem), str(pem)),
    ]


# ---- running them ---------------------------------------------------------------------------
@pytest.fixture(autouse=True)
def _never_serve(monkeypatch: pytest.MonkeyPatch) -> None:
    """`sop serve` and `sop witness serve` exit 0 where they would start listening: what they
    check before (the data or witness directory, booting, flags) runs as it does for real."""
    from sop_verified.server import serve, witness
    from sop_verified.tools.witness_config import load_witness_dir

    def reached(settings: Any, sop: Any, lock: Any) -> Any:
        sop.close()
        lock.release()
        raise typer.Exit(0)

    def witness_reached(directory: Path, *args: Any, **kwargs: Any) -> int:
        load_witness_dir(directory).close()
        raise typer.Exit(0)

    monkeypatch.setattr(serve, "Server", reached)
    monkeypatch.setattr(witness, "serve_witness", witness_reached)


@pytest.fixture(autouse=True)
def _command_built_once(monkeypatch: pytest.MonkeyPatch, world: World) -> None:
    """typer builds the click command of the app on every invoke (26 ms of 34): build it once
    (the matrix runs it ~800 times); and run from a scratch directory, since some commands
    write beside the current directory by default (`sop certs issue`: ./NAME-cert/)."""
    import typer.testing

    built = typer.main.get_command(cli.app)
    monkeypatch.setattr(typer.testing, "_get_command", lambda app: built)
    monkeypatch.chdir(world.tmp)


ERROR_KEYS = {"ok", "exit", "stage", "code", "message"}


def _one_line(text: str) -> str:
    return " ".join(text.split())


def _check(case: Case, args: list[str], json_output: bool) -> list[str]:
    """What is wrong with one run (nothing: an empty list)."""
    result = runner.invoke(cli.app, [*args, *(["--json"] if json_output else [])])
    code, shown = result.exit_code, f"`sop {' '.join(args)}`{' --json' if json_output else ''}"
    problems = []
    if code == 3 or code not in case.expected:
        problems.append(f"{shown}: exit {code}, expected {sorted(case.expected)}: {result.output}")
        return problems
    if code == 0:
        return problems
    message = result.output
    if json_output:
        try:
            error = json.loads(result.stdout)
        except ValueError:
            return [f"{shown}: stdout is not one JSON object: {result.stdout!r}"]
        is_error = isinstance(error, dict) and "exit" in error
        if is_error:
            message = error.get("message", "")
            if not set(error) >= ERROR_KEYS or error["exit"] != code or error["ok"] is not False:
                problems.append(f"{shown}: the JSON error is not {sorted(ERROR_KEYS)}: {error}")
        elif code == 2:
            problems.append(f"{shown}: exit 2 without the JSON error object: {error}")
        else:
            return problems  # exit 1 with the command's own report (`"ok": false`)
    flat = _one_line(message)
    if case.names and case.names not in flat and code == 2:
        problems.append(f"{shown}: the message does not name `{case.names}`: {flat}")
    if code == 2 and not re.search(r"expected|accepted|should be|no such option", flat, re.I):
        problems.append(f"{shown}: the message does not say what is expected: {flat}")
    return problems


def test_every_command_meets_the_exit_code_table_on_bad_input(world: World) -> None:
    problems: list[str] = []
    runs = 0
    for case, args, json_output in _cases(world):
        runs += 1
        problems += _check(case, args, json_output)
    assert runs > 400, runs
    assert not problems, f"{len(problems)} of {runs} runs:\n" + "\n".join(problems)
