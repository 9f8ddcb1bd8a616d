"""Solving inside a worker process: one warm Z3 context, reused solvers, push/pop.

Runs only in the isolated worker (see :mod:`sop_verified.core.proofgate.worker`).
Determinism: the verdict depends only on the script, z3's full version, the
``rlimit`` and the pinned parameters of :data:`PINNED_PARAMS` (seeds fixed,
one thread, no core minimization). Two solvers are kept warm:

* ``plain`` — a tactic solver (``simplify``, ``propagate-values``, ``smt``;
  with ``qe`` before ``smt`` for the quantified arithmetic logics LIA and LRA)
  for scripts without ``:named`` assertions (the fast path of SOP's own
  obligations);
* ``tracked`` — the incremental SMT solver with ``assert_and_track``, for
  scripts with ``:named`` assertions, whose unsat core is the PROVED evidence.

The choice is a function of the script and its logic, so it is part of the determinism
contract, not a source of variation.
"""

from __future__ import annotations

from typing import Any

import z3

from sop_verified.core.contracts import ensure, invariant, require

__all__ = ["PINNED_PARAMS", "QE_LOGICS", "SolverSession", "solver_identity"]

PINNED_PARAMS: dict[str, Any] = {
    "smt.random_seed": 0,
    "sat.random_seed": 0,
    "nlsat.seed": 0,
    "fp.spacer.random_seed": 0,
    "smt.threads": 1,
    "sat.threads": 1,
}
_SOLVER_PARAMS: dict[str, Any] = {"random_seed": 0, "core.minimize": False}
_PLAIN_TACTICS = ("simplify", "propagate-values", "smt")
_QE_TACTICS = ("simplify", "propagate-values", "qe", "smt")
QE_LOGICS = frozenset({"LIA", "LRA"})
_TRACKER = "sop!track!"
_MAX_MODEL_ENTRIES = 64
_MAX_VALUE_CHARS = 512
_MAX_DETAIL = 400
_RESOURCE_REASONS = ("canceled", "resource limit", "max. resource", "rlimit")
_MEMORY_REASONS = ("memory",)


@require(lambda rlimit: rlimit > 0)
def solver_identity(rlimit: int) -> dict[str, Any]:
    """The solver identity a verdict depends on (besides the obligation digest)."""
    return {
        "name": "z3",
        "version": z3.get_full_version(),
        "rlimit": rlimit,
        "params": {**PINNED_PARAMS, **_SOLVER_PARAMS},
        "engines": {
            "plain": "+".join(_PLAIN_TACTICS),
            "plain-qe": "+".join(_QE_TACTICS) + " for " + ",".join(sorted(QE_LOGICS)),
            "tracked": "smt incremental",
        },
    }


def _classify_unknown(reason: str) -> str:
    low = reason.lower()
    if any(word in low for word in _MEMORY_REASONS):
        return "memory"
    if any(word in low for word in _RESOURCE_REASONS):
        return "resource limit"
    return "solver unknown"


def _value(text: str) -> str:
    return text if len(text) <= _MAX_VALUE_CHARS else text[:_MAX_VALUE_CHARS] + "..."


def _function(interp: Any) -> dict[str, Any]:
    entries = []
    for i in range(min(interp.num_entries(), _MAX_MODEL_ENTRIES)):
        entry = interp.entry(i)
        args = [_value(entry.arg_value(j).sexpr()) for j in range(entry.num_args())]
        entries.append([*args, _value(entry.value().sexpr())])
    return {"entries": entries, "else": _value(interp.else_value().sexpr())}


def _symbols(formulas: Any) -> tuple[dict[str, Any], bool]:
    """The uninterpreted constants and functions these formulas mention, by name.

    The model is reported over these only: a reused context may hold other
    obligations' symbols, which must never show up in this one's evidence.
    """
    found: dict[str, Any] = {}
    seen: set[int] = set()
    stack = list(formulas)
    while stack:
        term = stack.pop()
        if term.get_id() in seen:
            continue
        seen.add(term.get_id())
        if z3.is_app(term):
            decl = term.decl()
            if decl.kind() == z3.Z3_OP_UNINTERPRETED and not decl.name().startswith(_TRACKER):
                found.setdefault(decl.name(), decl)
                if len(found) > _MAX_MODEL_ENTRIES:
                    return found, True
            stack.extend(term.children())
        elif z3.is_quantifier(term):
            stack.append(term.body())
    return found, False


def _model(model: Any, formulas: Any) -> dict[str, Any]:
    """The counterexample as JSON-ready data: name -> value (or function table)."""
    symbols, truncated = _symbols(formulas)
    values: dict[str, Any] = {}
    for name in sorted(symbols)[:_MAX_MODEL_ENTRIES]:
        decl = symbols[name]
        if decl.arity() == 0:
            values[name] = _value(model.eval(decl(), model_completion=True).sexpr())
            continue
        interp = model.get_interp(decl)
        if interp is not None:
            values[name] = _function(interp)
    return {"values": values, "truncated": truncated}


@invariant(lambda self: self.rlimit > 0)
class SolverSession:
    """The worker's solving state: a warm context and two reused solvers."""

    def __init__(self, rlimit: int, memory_mb: int | None = None) -> None:
        """Pin the parameters and warm the solvers.

        Args:
            rlimit: the default resource limit per check.
            memory_mb: z3's own memory ceiling (below the process cap), or None.
        """
        for key, value in PINNED_PARAMS.items():
            z3.set_param(key, value)
        if memory_mb is not None:
            z3.set_param("memory_max_size", memory_mb)
        self.rlimit = rlimit
        self.ctx = z3.main_ctx()
        self._plain = z3.Then(*_PLAIN_TACTICS, ctx=self.ctx).solver()
        self._plain_qe = z3.Then(*_QE_TACTICS, ctx=self.ctx).solver()
        self._tracked = z3.Solver(ctx=self.ctx)
        for solver in (self._plain, self._plain_qe, self._tracked):
            for key, value in _SOLVER_PARAMS.items():
                solver.set(key, value)
        self._trackers: list[Any] = []
        warm = "(declare-const sop_warm Bool)\n(assert (and sop_warm (not sop_warm)))\n"
        for logic in ("QF_UF", "LIA"):
            self.solve(warm, [None], rlimit, logic)
        self.solve(warm, ["warm"], rlimit, "QF_UF")

    @ensure(lambda result: "solver" in result)
    def hello(self) -> dict[str, Any]:
        """What the worker tells the pool when it starts (its solver identity)."""
        return {"solver": solver_identity(self.rlimit)}

    @ensure(lambda result: result.get("status") in ("unsat", "sat", "unknown", "error"))
    def handle(self, request: dict[str, Any]) -> dict[str, Any]:
        """Answer one pool request ``{"op": "solve", "script", "names", "rlimit", "logic"}``.

        Args:
            request: the decoded request frame.

        Returns:
            ``{"status": "unsat", "core"}``, ``{"status": "sat", "model"}``,
            ``{"status": "unknown", "code", "detail"}`` or
            ``{"status": "error", "code", "detail"}``.
        """
        if request.get("op") == "cvc5":
            from sop_verified.core.proofgate.cross_check import cvc5_check  # noqa: PLC0415 - optional, lazy

            return cvc5_check(
                str(request.get("script", "")), int(request.get("rlimit", self.rlimit))
            )
        script, names = request.get("script"), request.get("names")
        rlimit, logic = request.get("rlimit", self.rlimit), request.get("logic", "")
        if not isinstance(script, str) or not isinstance(names, list) or not isinstance(logic, str):
            return {"status": "error", "code": "protocol", "detail": "malformed solve request"}
        if type(rlimit) is not int or rlimit < 1:
            return {"status": "error", "code": "protocol", "detail": "malformed solve request"}
        return self.solve(script, names, rlimit, logic)

    @require(lambda rlimit: rlimit > 0)
    @ensure(lambda result: result.get("status") in ("unsat", "sat", "unknown", "error"))
    def solve(
        self, script: str, names: list[str | None], rlimit: int, logic: str = ""
    ) -> dict[str, Any]:
        """Decide whether ``script``'s assertions are unsatisfiable.

        Args:
            script: filtered declarations and ``(assert ...)`` commands only.
            names: one label (or None) per assertion, in order.
            rlimit: the resource limit of this check.
            logic: the script's logic (selects quantifier elimination for LIA/LRA).

        Returns:
            The reply object (see :meth:`handle`).
        """
        try:
            formulas = z3.parse_smt2_string(script, ctx=self.ctx)
        except z3.Z3Exception as exc:
            return {"status": "error", "code": "solver_parse", "detail": _detail(exc)}
        if len(formulas) != len(names):
            detail = f"the solver read {len(formulas)} assertions, the filter {len(names)}"
            return {"status": "error", "code": "internal", "detail": detail}
        tracked = any(n is not None for n in names)
        solver = self._solver_for(tracked, logic)
        solver.set("rlimit", rlimit)
        solver.push()
        try:
            reply = self._check(solver, formulas, names, tracked)
        except z3.Z3Exception as exc:
            detail = _detail(exc)
            reply = {"status": "unknown", "code": _classify_unknown(detail), "detail": detail}
        finally:
            solver.pop()
        if reply.get("code") == "memory":
            reply["_retire"] = True  # z3's state after memory exhaustion is not trusted
        return reply

    def _solver_for(self, tracked: bool, logic: str) -> Any:
        if tracked:
            return self._tracked
        return self._plain_qe if logic in QE_LOGICS else self._plain

    def _tracker(self, index: int) -> Any:
        while len(self._trackers) <= index:
            self._trackers.append(z3.Bool(f"{_TRACKER}{len(self._trackers)}", ctx=self.ctx))
        return self._trackers[index]

    def _check(
        self, solver: Any, formulas: Any, names: list[str | None], tracked: bool
    ) -> dict[str, Any]:
        for i, formula in enumerate(formulas):
            if tracked and names[i] is not None:
                solver.assert_and_track(formula, self._tracker(i))
            else:
                solver.add(formula)
        answer = solver.check()
        if answer == z3.unsat:
            core: list[str] = []
            if tracked:
                hit = {str(t) for t in solver.unsat_core()}
                core = [
                    n for i, n in enumerate(names) if n is not None and str(self._tracker(i)) in hit
                ]
            return {"status": "unsat", "core": core}
        if answer == z3.sat:
            return {"status": "sat", "model": _model(solver.model(), formulas)}
        reason = solver.reason_unknown()
        return {
            "status": "unknown",
            "code": _classify_unknown(reason),
            "detail": reason[:_MAX_DETAIL],
        }


def _detail(exc: Exception) -> str:
    value = getattr(exc, "value", exc)
    text = value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)
    return text.strip()[:_MAX_DETAIL]
