"""The optional second solver: cvc5 re-checks PROVED verdicts, inside the worker.

cvc5 parses the same normalized SMT-LIB text the filter printed (its
``InputParser``), with a pinned seed and a per-check resource limit. Only the
answer matters: a cross-check that is not ``unsat`` denies (the gate raises
the integrity alarm when cvc5 says ``sat``).
"""

from __future__ import annotations

from typing import Any

from sop_verified.core.contracts import ensure, require

__all__ = ["CVC5_OPTIONS", "cvc5_check", "cvc5_version"]

CVC5_OPTIONS: dict[str, str] = {"seed": "0", "sat-random-seed": "0"}
_MAX_DETAIL = 400


@ensure(lambda result: result is None or result != "")
def cvc5_version() -> str | None:
    """cvc5's version string, or None when it is not installed."""
    try:
        import cvc5  # noqa: PLC0415 - optional dependency

        return str(cvc5.__version__)
    except ImportError:
        return None


@require(lambda rlimit: rlimit > 0)
@ensure(lambda result: result.get("status") in ("unsat", "sat", "unknown", "error"))
def cvc5_check(script: str, rlimit: int) -> dict[str, Any]:
    """Run cvc5 on a complete, filtered SMT-LIB script.

    Args:
        script: the normalized script (``set-logic``, declarations, assertions, ``check-sat``).
        rlimit: cvc5's per-check resource limit (``rlimit-per``).

    Returns:
        ``{"status": "unsat"|"sat"|"unknown"|"error", "detail", "solver"}``.
    """
    try:
        import cvc5  # noqa: PLC0415 - optional dependency
    except ImportError:
        return {"status": "error", "code": "unavailable", "detail": "cvc5 is not installed"}
    solver_id = {
        "name": "cvc5",
        "version": str(cvc5.__version__),
        "rlimit": rlimit,
        "params": CVC5_OPTIONS,
    }
    try:
        answer = _run(cvc5, script, rlimit)
    except RuntimeError as exc:
        return {
            "status": "error",
            "code": "solver_parse",
            "detail": str(exc)[:_MAX_DETAIL],
            "solver": solver_id,
        }
    if answer in ("unsat", "sat"):
        return {"status": answer, "detail": "", "solver": solver_id}
    if answer.startswith("unknown"):
        return {
            "status": "unknown",
            "code": "solver unknown",
            "detail": answer[:_MAX_DETAIL],
            "solver": solver_id,
        }
    return {
        "status": "error",
        "code": "solver_parse",
        "detail": answer[:_MAX_DETAIL],
        "solver": solver_id,
    }


def _run(cvc5: Any, script: str, rlimit: int) -> str:
    tm = cvc5.TermManager()
    solver = cvc5.Solver(tm)
    for key, value in CVC5_OPTIONS.items():
        solver.setOption(key, value)
    solver.setOption("rlimit-per", str(rlimit))
    symbols = cvc5.SymbolManager(tm)
    parser = cvc5.InputParser(solver, symbols)
    parser.setStringInput(cvc5.InputLanguage.SMT_LIB_2_6, script, "obligation")
    answer = "unknown (no check-sat)"
    while True:
        command = parser.nextCommand()
        if command.isNull():
            return answer
        out = str(command.invoke(solver, symbols)).strip()
        if out.startswith("(error"):
            return out
        if out:
            answer = out
