"""icontract, enabled explicitly: the second line of defence, never the first.

icontract's default is ``enabled=__debug__``, which ``python -O`` strips. SOP
ships its contracts on (:data:`ENABLED`), and every check that enforces an
invariant also exists as plain code, so ``python -O`` still denies.

Two tiers (docs/adr/0007-linked-effects-and-hot-path.md): *boundary*
contracts (the kernel, the controller, the registry, the policy set, the
proof gate: where a request crosses a component) are always on. *Helper*
contracts, on small functions called several times per operation
(``helper=True``: path and scope helpers, entry encoders, ``to_dict``), cost
about a third of a gated operation's CPU; they are on when
``SOP_CONTRACTS=all`` is in the environment when SOP is imported (the test
suite sets it) and off otherwise. Neither tier enforces anything alone.

A contract states an invariant or a relation between a function's inputs and
its result; one that only restates a type ``mypy --strict`` proves is not
written (issue 12). An invariant of a class whose state is set once in
``__init__`` is declared ``immutable=True``: it is checked when an instance is
built and on any later attribute assignment, not around every method call.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any, TypeVar

import icontract

__all__ = ["ENABLED", "HELPERS", "ensure", "invariant", "require"]

ENABLED = True
"""Boundary contracts (and, with :data:`HELPERS`, helper contracts) are applied."""

HELPERS = os.environ.get("SOP_CONTRACTS", "boundary") == "all"
"""Helper contracts too (``SOP_CONTRACTS=all``; the test suite runs with it)."""

_F = TypeVar("_F", bound=Callable[..., Any])


def _on(helper: bool) -> bool:
    return ENABLED and (HELPERS or not helper)


def require(
    condition: Callable[..., Any], description: str | None = None, *, helper: bool = False
) -> Callable[[_F], _F]:
    """A precondition that stays on under ``python -O`` (a helper's: ``SOP_CONTRACTS=all``)."""
    dec: Callable[[_F], _F] = icontract.require(condition, description, enabled=_on(helper))
    return dec


def ensure(
    condition: Callable[..., Any], description: str | None = None, *, helper: bool = False
) -> Callable[[_F], _F]:
    """A postcondition that stays on under ``python -O`` (a helper's: ``SOP_CONTRACTS=all``)."""
    dec: Callable[[_F], _F] = icontract.ensure(condition, description, enabled=_on(helper))
    return dec


_C = TypeVar("_C", bound=type)


def invariant(
    condition: Callable[..., Any],
    description: str | None = None,
    *,
    helper: bool = False,
    immutable: bool = False,
) -> Callable[[_C], _C]:
    """A class invariant that stays on under ``python -O`` (a helper's: ``SOP_CONTRACTS=all``).

    Args:
        condition: the invariant, a function of ``self``.
        description: what it states.
        helper: the helper tier (on with ``SOP_CONTRACTS=all``).
        immutable: the class sets its state in ``__init__`` only: check the invariant
            after construction and on every attribute assignment, not around each call.

    Returns:
        The class decorator.
    """
    check_on = (
        icontract.InvariantCheckEvent.SETATTR if immutable else icontract.InvariantCheckEvent.CALL
    )
    dec: Callable[[_C], _C] = icontract.invariant(
        condition, description, enabled=_on(helper), check_on=check_on
    )
    return dec
