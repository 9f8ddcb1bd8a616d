"""icontract, enabled explicitly: the second line of defence, never the first.

icontract's default is ``enabled=__debug__``, which ``python -O`` strips. SOP
ships its contracts on (:data:`ENABLED`), and every check that enforces an
invariant also exists as plain code, so ``python -O`` still denies.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

import icontract

__all__ = ["ENABLED", "ensure", "invariant", "require"]

ENABLED = True

_F = TypeVar("_F", bound=Callable[..., Any])


def require(condition: Callable[..., Any], description: str | None = None) -> Callable[[_F], _F]:
    """A precondition that stays on under ``python -O``."""
    dec: Callable[[_F], _F] = icontract.require(condition, description, enabled=ENABLED)
    return dec


def ensure(condition: Callable[..., Any], description: str | None = None) -> Callable[[_F], _F]:
    """A postcondition that stays on under ``python -O``."""
    dec: Callable[[_F], _F] = icontract.ensure(condition, description, enabled=ENABLED)
    return dec


_C = TypeVar("_C", bound=type)


def invariant(condition: Callable[..., Any], description: str | None = None) -> Callable[[_C], _C]:
    """A class invariant that stays on under ``python -O``."""
    dec: Callable[[_C], _C] = icontract.invariant(condition, description, enabled=ENABLED)
    return dec
