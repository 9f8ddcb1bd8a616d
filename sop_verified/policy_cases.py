"""Policy test files: requests and the decisions a policy set must give them (`sop policy test`).

A test file is TOML. Each ``[[case]]`` is one request, written as its fields
(those of SOP's request schema that a policy reads), and what the policy
stage must answer: the effect, and optionally the deciding policies and the
reason code. An optional ``[defaults]`` table gives fields every case shares
(a case's own field replaces the default's, ``context`` included)::

    [defaults]
    principal = "drac"

    [[case]]
    name = "DRAC persists a small artifact"
    action = "artifact.persist"
    resource = "artifacts/drac/session-7/plan.json"
    context = { size_bytes = 4096 }
    expect = { effect = "ALLOW", policies = ["drac-persist-artifacts"], reason = "permitted" }

    [[case]]
    name = "nothing permits EMP here"
    principal = "emp"
    action = "artifact.persist"
    resource = "artifacts/drac/x.json"
    expect = "DENY"                      # the effect alone

A case is run through the policy stage exactly as the kernel runs it: the
request is parsed by the kernel's parser (``channel`` defaults to ``bridge``,
``request_id`` to ``case-<n>``) and evaluated by the compiled
:class:`~sop_verified.core.policy.PolicySet`. Capabilities, obligations and
SOP's health are not part of a policy test (``capability`` and ``obligations``
are refused); ``sop decide --dry-run`` runs every stage against a data directory.
"""

from __future__ import annotations

import re
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

from sop_verified.core.policy import PolicyReason, PolicyResult, PolicySet
from sop_verified.core.policy.explain import Applied, explain
from sop_verified.core.request import Request, parse_request
from sop_verified.errors import InputError

__all__ = ["Case", "CaseReport", "CaseResult", "Expected", "case_files", "load_cases", "run_cases"]

MAX_TEST_FILE_BYTES: Final = 1024 * 1024
REQUEST_KEYS: Final = (
    "request_id",
    "principal",
    "action",
    "resource",
    "channel",
    "context",
    "content_digest",
)
CASE_KEYS: Final = ("name", "expect", *REQUEST_KEYS)
EXPECT_KEYS: Final = ("effect", "policies", "reason")
EFFECTS: Final = ("ALLOW", "DENY")
REASONS: Final = tuple(str(r) for r in PolicyReason)
_NOT_TESTED: Final = {
    "capability": "capabilities are not part of a policy test",
    "obligations": "proof obligations are not part of a policy test",
}
_CASE_HEADER = re.compile(r"^\s*\[\[\s*case\s*\]\]")


def _keys(keys: tuple[str, ...]) -> str:
    return ", ".join(f"`{k}`" for k in keys)


@dataclass(frozen=True, slots=True)
class Expected:
    """What a case expects of the policy stage (None: not checked)."""

    effect: str
    policies: tuple[str, ...] | None = None
    reason: str | None = None

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form (unchecked parts left out)."""
        out: dict[str, Any] = {"effect": self.effect}
        if self.policies is not None:
            out["policies"] = list(self.policies)
        if self.reason is not None:
            out["reason"] = self.reason
        return out


@dataclass(frozen=True, slots=True)
class Case:
    """One test case: where it is, its request, what it expects."""

    file: str
    number: int
    line: int | None
    name: str
    request: Request
    expected: Expected

    @property
    def where(self) -> str:
        """``file: case n (line l)``, for messages."""
        at = f", line {self.line}" if self.line is not None else ""
        return f"{self.file}: case {self.number}{at}"


@dataclass(frozen=True, slots=True)
class CaseResult:
    """A case run: the policy stage's answer and the policies that applied."""

    case: Case
    actual: PolicyResult
    applied: tuple[Applied, ...]

    def mismatches(self) -> list[str]:
        """What differs from the expectation (empty: the case passed)."""
        exp, got = self.case.expected, self.actual
        out = []
        if exp.effect != str(got.effect):
            out.append("effect")
        if exp.policies is not None and sorted(exp.policies) != sorted(got.policy_ids):
            out.append("policies")
        if exp.reason is not None and exp.reason != str(got.reason):
            out.append("reason")
        return out

    @property
    def ok(self) -> bool:
        """True when the answer is what the case expects."""
        return not self.mismatches()

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form: where, the request, expected, actual, what applied."""
        return {
            "file": self.case.file,
            "case": self.case.number,
            "line": self.case.line,
            "name": self.case.name,
            "ok": self.ok,
            "mismatches": self.mismatches(),
            "request": self.case.request.to_dict(),
            "expected": self.case.expected.to_dict(),
            "actual": self.actual.to_dict(),
            "applied": [a.to_dict() for a in self.applied],
        }


@dataclass(frozen=True, slots=True)
class CaseReport:
    """Every case of a run against one policy set."""

    policies: str
    digest: str
    policy_count: int
    results: tuple[CaseResult, ...]

    @property
    def passed(self) -> int:
        """How many cases passed."""
        return sum(r.ok for r in self.results)

    @property
    def ok(self) -> bool:
        """True when every case passed."""
        return self.passed == len(self.results)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form: the set, the counts and every case."""
        return {
            "ok": self.ok,
            "policies": self.policies,
            "policy_digest": self.digest,
            "policy_count": self.policy_count,
            "passed": self.passed,
            "failed": len(self.results) - self.passed,
            "cases": [r.to_dict() for r in self.results],
        }


def case_files(path: Path) -> list[Path]:
    """The test files at ``path``: the file itself, or a directory's ``*.toml`` in name order.

    Raises:
        InputError: ``path`` is missing, not TOML, or a directory with no ``*.toml``.
    """
    if path.is_file():
        if path.suffix != ".toml":
            raise InputError(
                "a policy test file is TOML", where=str(path), accepted="a `*.toml` file"
            )
        return [path]
    if not path.is_dir():
        raise InputError(
            "no such test file or directory",
            where=str(path),
            accepted="a directory of `*.toml` policy test files, or one such file",
        )
    files = sorted(p for p in path.iterdir() if p.suffix == ".toml" and p.is_file())
    if not files:
        raise InputError(
            "the directory holds no test file",
            where=str(path),
            accepted="one or more `*.toml` files of `[[case]]` tables",
        )
    return files


def load_cases(path: Path) -> list[Case]:
    """Read every case of the test files at ``path`` (see the module docstring).

    Raises:
        InputError: a file is unreadable, not TOML (its line named), or a case is
            malformed (its file, number, line and what is accepted named).
    """
    cases: list[Case] = []
    for file in case_files(path):
        cases.extend(_file_cases(file))
    return cases


def run_cases(policy_set: PolicySet, cases: list[Case], source: str) -> CaseReport:
    """Run each case through the policy stage of ``policy_set``.

    Args:
        policy_set: the compiled set under test.
        cases: the cases, from :func:`load_cases`.
        source: where the set was read from, for the report.

    Returns:
        The report, one result per case in order.
    """
    results = tuple(
        CaseResult(c, policy_set.evaluate(c.request), explain(policy_set.document, c.request))
        for c in cases
    )
    return CaseReport(source, policy_set.digest, len(policy_set.document), results)


def _file_cases(file: Path) -> list[Case]:
    text = _read(file)
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise InputError(
            f"malformed TOML: {exc}", where=str(file), accepted="a TOML policy test file"
        ) from None
    unknown = sorted(set(data) - {"defaults", "case"})
    if unknown:
        raise InputError(
            f"unknown top-level key `{unknown[0][:80]}`",
            where=str(file),
            accepted="a `[defaults]` table and `[[case]]` tables",
        )
    defaults = data.get("defaults", {})
    entries = data.get("case", [])
    if not isinstance(defaults, dict):
        raise InputError("`defaults` is not a table", where=str(file), accepted="`[defaults]`")
    _check_keys(defaults, REQUEST_KEYS, f"{file}: defaults")
    if not isinstance(entries, list) or not entries:
        raise InputError(
            "the file holds no `[[case]]` table",
            where=str(file),
            accepted="one or more `[[case]]` tables, each a request and `expect`",
        )
    lines = [i + 1 for i, line in enumerate(text.splitlines()) if _CASE_HEADER.match(line)]
    if len(lines) != len(entries):  # cases written another way: no line numbers
        lines = []
    return [
        _case(file, n + 1, lines[n] if lines else None, defaults, raw)
        for n, raw in enumerate(entries)
    ]


def _read(file: Path) -> str:
    try:
        with file.open("rb") as fh:
            data = fh.read(MAX_TEST_FILE_BYTES + 1)
    except OSError as exc:
        raise InputError(f"cannot read the file: {exc.strerror}", where=str(file)) from None
    if len(data) > MAX_TEST_FILE_BYTES:
        raise InputError(
            "the file is too large",
            where=str(file),
            accepted=f"at most {MAX_TEST_FILE_BYTES} bytes",
        )
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise InputError(f"not UTF-8 at byte {exc.start}", where=str(file)) from None


def _check_keys(raw: dict[str, Any], allowed: tuple[str, ...], where: str) -> None:
    for key in sorted(raw):
        if key in _NOT_TESTED:
            raise InputError(
                f"`{key}`: {_NOT_TESTED[key]}",
                where=where,
                accepted=f"{_keys(allowed)}; `sop decide --dry-run` checks every stage",
            )
        if key not in allowed:
            raise InputError(f"unknown key `{key[:80]}`", where=where, accepted=_keys(allowed))


def _case(file: Path, number: int, line: int | None, defaults: dict[str, Any], raw: Any) -> Case:
    at = f"{file}: case {number}" + (f", line {line}" if line is not None else "")
    if not isinstance(raw, dict):
        raise InputError("a case is not a table", where=at, accepted="`[[case]]` tables")
    name = raw.get("name", f"case {number}")
    if not isinstance(name, str):
        raise InputError("`name` is not a string", where=at, accepted="a string")
    at = f"{at} ({name[:80]})" if "name" in raw else at
    _check_keys(raw, CASE_KEYS, at)
    if "expect" not in raw:
        raise InputError(
            "missing `expect`",
            where=at,
            accepted='`expect = "ALLOW"` or `"DENY"`, or a table of ' + _keys(EXPECT_KEYS),
        )
    expected = _expected(raw["expect"], at)
    fields = {**defaults, **{k: v for k, v in raw.items() if k in REQUEST_KEYS}}
    fields.setdefault("request_id", f"case-{number}")
    try:
        request = parse_request(fields)
    except InputError as exc:
        raise InputError(f"the case's request is malformed: {exc}", where=at) from None
    return Case(str(file), number, line, name, request, expected)


def _expected(raw: Any, at: str) -> Expected:
    if isinstance(raw, str):
        raw = {"effect": raw}
    if not isinstance(raw, dict):
        raise InputError(
            "`expect` is neither an effect nor a table",
            where=at,
            accepted='`"ALLOW"`, `"DENY"`, or a table of ' + _keys(EXPECT_KEYS),
        )
    _check_keys(raw, EXPECT_KEYS, f"{at}: expect")
    effect = raw.get("effect")
    if effect not in EFFECTS:
        raise InputError(
            f"expected effect `{str(effect)[:80]}`", where=f"{at}: expect", accepted=_keys(EFFECTS)
        )
    policies = raw.get("policies")
    if policies is not None and (
        not isinstance(policies, list) or not all(isinstance(p, str) for p in policies)
    ):
        raise InputError(
            "`policies` is not a list of policy ids",
            where=f"{at}: expect",
            accepted='a list of ids, e.g. `["drac-persist-artifacts"]` (`[]`: none decided)',
        )
    reason = raw.get("reason")
    if reason is not None and reason not in REASONS:
        raise InputError(
            f"unknown reason `{str(reason)[:80]}`", where=f"{at}: expect", accepted=_keys(REASONS)
        )
    return Expected(effect, None if policies is None else tuple(policies), reason)
