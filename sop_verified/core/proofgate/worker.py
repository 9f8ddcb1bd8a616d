"""The proof worker's entry point: ``python -m sop_verified.core.proofgate.worker``.

Started only by the pool (:mod:`sop_verified.tools.workerpool`), which caps
its memory and CPU before the solver is loaded and talks to it over pipes.
"""

from __future__ import annotations

import os
from typing import Any

from sop_verified.core.contracts import ensure
from sop_verified.tools.workerproc import Handler, serve

__all__ = ["make_session"]


@ensure(lambda result: "solver" in result[1])
def make_session(init: dict[str, Any]) -> tuple[Handler, dict[str, Any]]:
    """Build the worker's solving session from the pool's ``init`` parameters.

    Args:
        init: ``{"rlimit": int, "memory_mb": int | None}``.

    Returns:
        The request handler and the hello object (the solver identity).
    """
    from sop_verified.core.proofgate.solver import SolverSession  # noqa: PLC0415 - load z3 after the caps

    session = SolverSession(int(init.get("rlimit", 1)), init.get("memory_mb"))
    return session.handle, session.hello()


if __name__ == "__main__":
    serve(make_session)
    # Nothing to flush (every reply went out with os.write on a raw descriptor): skip the
    # interpreter's teardown of z3's context and modules, which made every pool's close wait
    # 30 to 60 ms for its workers to exit.
    os._exit(0)
