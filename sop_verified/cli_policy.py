"""`sop policy test` and `sop policy fmt`: policy sets tried and tidied without a data directory.

Registered on the ``sop policy`` group by :func:`register` (called from
``sop_verified.cli``). Exit codes: 0 success, 1 a case failed or a file was
refused or would change (``--check``), 2 a missing or malformed file (named).
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.markup import escape

from sop_verified.cli_support import (
    JsonFlag,
    err,
    fail,
    guarded,
    out,
    plural,
    print_json,
    read_input,
)

__all__ = ["register"]

TEST_HELP = """Run policy test files (TOML) against a policy set, without a data directory.

DIR is a directory of *.toml test files (or one file). Each [[case]] is a request's
fields (principal, action, resource, channel, context, request_id) and what the policy
stage must answer: expect = "ALLOW" or "DENY", or expect = { effect = "DENY",
policies = ["forbid-x"], reason = "forbidden" } (reasons: permitted, forbidden,
no_permit, evaluation_error). An optional [defaults] table gives fields every case
shares. Only the policy stage runs, as the kernel runs it: capabilities, obligations
and health are not part of a policy test (`sop decide --dry-run` runs every stage).
docs/CLI.md has the format; docs/examples/policies/tests/ has examples.

Exit 0 when every case passes, 1 when one fails (with the request, expected and actual
answers and the policies that applied), 2 for a missing or malformed file.
"""

FMT_HELP = """Rewrite policy files in the canonical layout (comments kept where they can be).

PATH is a policy file or a directory of *.toml / *.json policy files. The layout: [roles]
first (sorted), then each [[policy]] in the order written with its keys in the
canonical order, lists sorted, "*" for any, channel always written, the condition
printed canonically. The policy digest is unchanged: a file is re-read after formatting
and must mean the same, or it is not written. A comment inside a value spread over
lines has no place in the layout: such a file is refused (exit 1) unless
--drop-comments. --check writes nothing and exits 1 listing the files that would
change. A file that does not parse is never rewritten (exit 2).
"""


def register(policy: typer.Typer) -> None:
    """Add ``test`` and ``fmt`` to the ``sop policy`` group."""
    # the help is text, not markup: `[roles]` and `[[case]]` must not be eaten
    policy.command("test", help=escape(TEST_HELP))(guarded(policy_test))
    policy.command("fmt", help=escape(FMT_HELP))(guarded(policy_fmt))


# ---- sop policy test ------------------------------------------------------------------------
def policy_test(
    tests: Annotated[
        Path, typer.Argument(metavar="DIR", help="A directory of *.toml test files, or one.")
    ],
    policies: Annotated[
        Path | None,
        typer.Option(
            help="The policy set (a file or directory); default: the directory holding DIR"
            " (tests in `policies/tests/` test `policies/`)."
        ),
    ] = None,
    json_output: JsonFlag = False,
) -> None:
    """Run policy test files against a policy set (the full help is TEST_HELP)."""
    from sop_verified.core.policy import PolicySet  # noqa: PLC0415 - keep `sop --help` fast
    from sop_verified.policy_cases import load_cases, run_cases  # noqa: PLC0415

    cases = load_cases(tests)  # the tests first: a missing DIR is named as such
    if policies is None:  # tests in `policies/tests/` test `policies/`
        policies = Path(os.path.normpath(tests / (".." if tests.is_dir() else "../..")))
    policy_set = PolicySet.from_path(policies)
    report = run_cases(policy_set, cases, str(policies))
    if json_output:
        print_json(report.to_dict())
    else:
        _render_report(report.to_dict())
    raise typer.Exit(0 if report.ok else 1)


def _render_report(data: dict[str, Any]) -> None:
    count = plural(data["policy_count"], "policy", "policies")
    out.print(
        f"policy set `{escape(data['policies'])}` ({count}, digest {data['policy_digest'][:23]}…)",
        highlight=False,
    )
    shown = None
    for case in data["cases"]:
        if case["file"] != shown:
            shown = case["file"]
            out.print(escape(shown), highlight=False)
        if case["ok"]:
            out.print(f"  [green]ok[/]    {escape(case['name'])}", highlight=False)
        else:
            _render_failure(case)
    failed = data["failed"]
    tally = f"{plural(len(data['cases']), 'case', 'cases')}: {data['passed']} passed"
    out.print(tally + (f", [red]{failed} failed[/]" if failed else ""), highlight=False)


def _answer(answer: dict[str, Any]) -> str:
    text = str(answer["effect"])
    if "reason" in answer:
        text += f", reason {answer['reason']}"
    if "policies" in answer:
        text += ", policies " + (", ".join(answer["policies"]) or "none")
    return text


def _render_failure(case: dict[str, Any]) -> None:
    line = f", line {case['line']}" if case["line"] is not None else ""
    out.print(
        f"  [red]FAIL[/]  {escape(case['name'])} (case {case['case']}{line}:"
        f" {escape(', '.join(case['mismatches']))} differ)",
        highlight=False,
    )
    request = {k: v for k, v in case["request"].items() if k != "obligations"}
    actual = case["actual"]
    got = {"effect": actual["effect"], "reason": actual["reason"], "policies": actual["policy_ids"]}
    rows = [
        ("request", json.dumps(request, ensure_ascii=False)),
        ("expected", _answer(case["expected"])),
        ("actual", f"{_answer(got)} — {actual['message']}"),
    ]
    applied = case["applied"] or [None]
    for i, a in enumerate(applied):
        if a is None:
            text = "none: no policy's scope covers the request (default deny)"
        else:
            said = "no condition" if a["condition"] == "none" else f"condition {a['condition']}"
            text = f"{a['id']} ({a['effect']}, {said}{': matched' if a['matched'] else ''})"
            text += f" — {a['error']}" if a.get("error") else ""
        rows.append(("applied" if i == 0 else "", text))
    for label, text in rows:  # one line each, however long: the terminal wraps it
        out.print(f"        {label:<9} {escape(text)}", highlight=False, soft_wrap=True)


# ---- sop policy fmt -------------------------------------------------------------------------
def policy_fmt(
    paths: Annotated[
        list[Path],
        typer.Argument(metavar="PATH", help="Policy files, or directories of them."),
    ],
    check: Annotated[
        bool, typer.Option("--check", help="Write nothing; exit 1 if a file would change.")
    ] = False,
    drop_comments: Annotated[
        bool,
        typer.Option(
            "--drop-comments", help="Rewrite a file even when some of its comments have no place."
        ),
    ] = False,
    json_output: JsonFlag = False,
) -> None:
    """Rewrite policy files in the canonical layout (the full help is FMT_HELP)."""
    from sop_verified.errors import PolicyError  # noqa: PLC0415 - keep `sop --help` fast
    from sop_verified.policy_format import Formatted, format_policy_file  # noqa: PLC0415

    files = [f for p in paths for f in _policy_files(p)]
    formatted: list[tuple[Path, bytes, Formatted]] = []
    errors: list[dict[str, str]] = []
    for f in files:
        data = _read(f)
        try:
            formatted.append((f, data, format_policy_file(data, source=str(f), fmt=f.suffix[1:])))
        except PolicyError as exc:
            errors.append({"path": str(f), "error": str(exc)})
    if errors:  # a file that does not parse: nothing is written at all
        if json_output:  # the CLI's error object, with every file's error
            first = f"{plural(len(errors), 'policy file')} did not parse, nothing was written"
            message = f"{first}: {errors[0]['error']}"
            error = {"ok": False, "exit": 2, "stage": "policy", "code": "invalid_policy_file"}
            print_json({**error, "message": message, "errors": errors})
        else:
            for e in errors:
                err.print(f"[bold red]error:[/] {escape(e['error'])}", highlight=False)
        raise typer.Exit(2)
    results = [_settle(f, data, fm, check=check, drop=drop_comments) for f, data, fm in formatted]
    bad = [r for r in results if r["refused"] or (check and r["changed"])]
    if json_output:
        print_json({"ok": not bad, "check": check, "files": results})
    else:
        _render_fmt(results, check=check)
    raise typer.Exit(1 if bad else 0)


def _policy_files(path: Path) -> list[Path]:
    if path.is_dir():
        found = sorted(p for p in path.iterdir() if p.suffix in (".toml", ".json") and p.is_file())
        if not found:
            fail(f"`{path}` holds no policy file; expected `*.toml` or `*.json` policy files")
        return found
    if not path.exists():
        fail(f"no policy file or directory at `{path}`; expected a `*.toml` or `*.json` file")
    if path.suffix not in (".toml", ".json"):
        fail(f"`{path}` is not a policy file; expected a `*.toml` or `*.json` file")
    return [path]


def _read(path: Path) -> bytes:
    return read_input(path, what="policy", accepted="a `*.toml` or `*.json` policy file")


def _settle(path: Path, data: bytes, fm: Any, *, check: bool, drop: bool) -> dict[str, Any]:
    new = fm.text.encode("utf-8")
    refused = bool(fm.dropped) and not drop
    entry: dict[str, Any] = {
        "path": str(path),
        "changed": new != data,
        "written": False,
        "refused": refused,
        "dropped_comments": list(fm.dropped),
    }
    if new != data and not check and not refused:
        _replace(path, new)
        entry["written"] = True
    return entry


def _replace(path: Path, data: bytes) -> None:
    """Write ``data`` over ``path`` atomically (a temporary file renamed), keeping its mode."""
    mode = path.stat().st_mode & 0o7777
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".fmt")
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _render_fmt(results: list[dict[str, Any]], *, check: bool) -> None:
    for r in results:
        path = escape(r["path"])
        if r["refused"]:
            n = plural(len(r["dropped_comments"]), "comment", "comments")
            out.print(
                f"[red]refused[/] {path}: {n} would be lost (inside a value spread over lines,"
                " or beside something the layout does not have); move them, or use"
                " --drop-comments",
                highlight=False,
                soft_wrap=True,
            )
            for c in r["dropped_comments"]:
                out.print(f"    {escape(c)}", highlight=False)
        elif r["changed"]:
            verb = "would reformat" if check else "formatted"
            lost = r["dropped_comments"]
            note = f" ({plural(len(lost), 'comment', 'comments')} dropped)" if lost else ""
            out.print(f"{verb} {path}{note}", highlight=False, soft_wrap=True)
    same = sum(not r["changed"] for r in results)
    if same:
        out.print(f"{plural(same, 'file', 'files')} already formatted", highlight=False)
