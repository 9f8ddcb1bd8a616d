"""What ``sop policy check DIR [--json]`` and ``sop policy activate DIR`` run and print.

:func:`check_directory` loads a set, runs every analysis and returns a
:class:`PolicyCheckReport`: errors (an invalid set, a governance violation,
an undecided governance check) make ``ok`` false and activation must be
refused; warnings (a set that denies everything, a set that allows more than
the active one, an undecided comparison) and infos are shown, not blocking.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sop_verified.core.contracts import ensure
from sop_verified.core.policy.analysis import (
    DEFAULT_TIMEOUT_MS,
    AnalysisResult,
    always_denies,
    implies,
)
from sop_verified.core.policy.evaluator import PolicySet
from sop_verified.core.policy.governance import Finding, Severity, approved_globs, governance_check
from sop_verified.errors import PolicyError

__all__ = ["PolicyCheckReport", "check_directory", "check_policy_set"]


@dataclass(frozen=True)
class PolicyCheckReport:
    """The outcome of checking one policy set; ``ok`` means it may be activated."""

    source: str
    digest: str | None
    policy_count: int
    findings: tuple[Finding, ...]
    analyses: tuple[AnalysisResult, ...] = ()

    @property
    def ok(self) -> bool:
        """True when no finding is an error."""
        return not any(f.severity is Severity.ERROR for f in self.findings)

    @property
    def errors(self) -> tuple[Finding, ...]:
        """The findings that refuse activation."""
        return tuple(f for f in self.findings if f.severity is Severity.ERROR)

    @ensure(lambda self, result: result["ok"] == self.ok, "JSON-ready")
    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form for ``--json``.

        Returns:
            ``{"source", "digest", "policy_count", "ok", "findings", "analyses"}``.
        """
        return {
            "source": self.source,
            "digest": self.digest,
            "policy_count": self.policy_count,
            "ok": self.ok,
            "findings": [f.to_dict() for f in self.findings],
            "analyses": [a.to_dict() for a in self.analyses],
        }


def _always_denies(s: PolicySet, timeout_ms: int) -> tuple[AnalysisResult, list[Finding]]:
    result = always_denies(s, timeout_ms=timeout_ms)
    if result.holds is True:
        return result, [
            Finding(
                "always_denies",
                Severity.WARNING,
                "the set allows no request at all (everything is denied)",
            )
        ]
    if result.holds is None:
        return result, [
            Finding(
                "analysis_unknown",
                Severity.WARNING,
                f"`always_denies` could not be decided: {result.detail}",
            )
        ]
    return result, []


def _compare(
    s: PolicySet, active: PolicySet, timeout_ms: int
) -> tuple[list[AnalysisResult], list[Finding]]:
    wider = implies(s, active, timeout_ms=timeout_ms)
    narrower = implies(active, s, timeout_ms=timeout_ms)
    findings: list[Finding] = []
    if wider.holds is False:
        findings.append(
            Finding(
                "widens_active",
                Severity.WARNING,
                "the new set allows a request the active set denies",
                counterexample=wider.counterexample,
                confirmed=wider.confirmed,
            )
        )
    if narrower.holds is False:
        findings.append(
            Finding(
                "narrows_active",
                Severity.INFO,
                "the new set denies a request the active set allows",
                counterexample=narrower.counterexample,
                confirmed=narrower.confirmed,
            )
        )
    if wider.holds is None or narrower.holds is None:
        findings.append(
            Finding(
                "analysis_unknown",
                Severity.WARNING,
                "the comparison with the active set could not be decided",
            )
        )
    if wider.holds is True and narrower.holds is True:
        findings.append(
            Finding(
                "equivalent_to_active",
                Severity.INFO,
                f"the new set allows exactly what the active set `{active.digest}` allows",
            )
        )
    return [wider, narrower], findings


@ensure(lambda s, result: result.digest == s.digest, "reports on this set")
def check_policy_set(
    s: PolicySet,
    approved_scopes: Sequence[str],
    active: PolicySet | None = None,
    *,
    source: str = "",
    timeout_ms: int = DEFAULT_TIMEOUT_MS,
) -> PolicyCheckReport:
    """Run every analysis on a compiled set.

    Args:
        s: the set to check.
        approved_scopes: resource globs persist actions may write under.
        active: the currently active set, to compare with (``implies`` both ways).
        source: where the set came from, for the report.
        timeout_ms: the solver's backstop per analysis.

    Returns:
        The report; ``ok`` is false on a governance violation or an undecided one.

    Raises:
        ConfigError: an approved scope is not a well-formed glob.
    """
    analyses: list[AnalysisResult] = []
    findings = governance_check(s, approved_scopes, timeout_ms=timeout_ms)
    result, more = _always_denies(s, timeout_ms)
    analyses.append(result)
    findings += more
    if active is not None:
        results, more = _compare(s, active, timeout_ms)
        analyses += results
        findings += more
    return PolicyCheckReport(source, s.digest, len(s.document), tuple(findings), tuple(analyses))


@ensure(lambda path, result: result.source == str(path), "reports on this path")
def check_directory(
    path: str | Path,
    approved_scopes: Sequence[str],
    active: PolicySet | None = None,
    *,
    timeout_ms: int = DEFAULT_TIMEOUT_MS,
) -> PolicyCheckReport:
    """Load a policy file or directory and run every analysis (``sop policy check``).

    A set that does not load is reported as an ``invalid_policy_set`` error
    finding (not raised), so the CLI prints one kind of report.

    Args:
        path: a policy file or a directory of ``*.toml`` / ``*.json`` files.
        approved_scopes: resource globs persist actions may write under.
        active: the currently active set, if any.
        timeout_ms: the solver's backstop per analysis.

    Returns:
        The report.

    Raises:
        ConfigError: an approved scope is not a well-formed glob.
    """
    approved_globs(approved_scopes)  # a configuration error is raised, not reported
    try:
        s = PolicySet.from_path(path)
    except PolicyError as exc:
        finding = Finding("invalid_policy_set", Severity.ERROR, str(exc))
        return PolicyCheckReport(str(path), None, 0, (finding,))
    return check_policy_set(s, approved_scopes, active, source=str(path), timeout_ms=timeout_ms)
