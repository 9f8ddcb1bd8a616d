"""Switch SOP's contracts on or off for a bench run, before SOP's contracted modules load.

:mod:`sop_verified.core.contracts` reads ``ENABLED`` when a decorator is
applied, that is when a module declaring contracts is imported. The bench
imports this module first; with ``SOP_BENCH_CONTRACTS=off`` in the
environment it sets ``ENABLED = False`` and refuses to do so if a contracted
module has already been imported (the switch would silently do nothing).
"""

from __future__ import annotations

import os
import sys
from typing import Any, Final

import sop_verified.core.contracts as _contracts

__all__ = ["CONTRACTS_ON", "ENV", "HELPERS", "contracted"]

ENV: Final = "SOP_BENCH_CONTRACTS"


def _apply(setting: str) -> bool:
    if setting not in ("on", "off"):
        raise SystemExit(f"`{ENV}` is `{setting}`; accepted: `on` or `off`")
    if setting == "off":
        loaded = sorted(
            m
            for m in sys.modules
            if m.startswith("sop_verified.core.") and m != "sop_verified.core.contracts"
        )
        if loaded:
            raise SystemExit(f"contracts must be switched off before `{loaded[0]}` is imported")
        _contracts.ENABLED = False
    return _contracts.ENABLED


CONTRACTS_ON: Final = _apply(os.environ.get(ENV, "on"))
"""Whether SOP's contracts are on in this process (the shipped setting is on)."""

HELPERS: Final = _contracts.HELPERS
"""Whether the helper tier is on too (``SOP_CONTRACTS=all``; shipped: off, ADR 0007)."""


def contracted(method: Any) -> bool:
    """Whether icontract wrapped ``method`` (a check that the switch took effect).

    Args:
        method: a function or method, or a class.

    Returns:
        True when the method carries icontract pre/postconditions or an invariant check,
        or the class carries an icontract invariant.
    """
    if isinstance(method, type):
        return bool(getattr(method, "__invariants__", None))
    marks = ("__preconditions__", "__postconditions__", "__is_invariant_check__")
    return any(hasattr(method, m) for m in marks)
