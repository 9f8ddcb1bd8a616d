"""The differential check of the policy benchmark: every engine must decide as SOP does.

Decisions are compared on every request; where both engines report their
determining policies (SOP and Cedar: the matching permits on allow, the
matching forbids on deny), those are compared too. Any difference raises
:class:`DisagreementError` with the first offending requests.
"""

from __future__ import annotations

import hashlib
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from policy_corpus import Case
from policy_engines import Verdict

__all__ = ["Agreement", "DisagreementError", "check_agreement", "verdict_digest"]

_SHOWN = 5


class DisagreementError(AssertionError):
    """Two engines decided a request differently: the scenario renderings are not equivalent."""


@dataclass(frozen=True, slots=True)
class Agreement:
    """What was compared, and the reference engine's decision mix."""

    compared: dict[str, int]  # engine -> requests compared with the reference
    ids_compared: dict[str, bool]  # engine -> whether determining policy ids were compared
    reasons: dict[str, int]  # the reference's reasons: permitted, forbidden, no_permit


def _describe(case: Case, ref: Verdict, other: Verdict, name: str) -> str:
    ref_ids, other_ids = sorted(ref.policy_ids or ()), sorted(other.policy_ids or ())
    return (
        f"`{case.request_id}` {case.principal} {case.action} {case.resource} ({case.channel}) "
        f"context={case.context}: reference allowed={ref.allowed} ids={ref_ids}, "
        f"{name} allowed={other.allowed} ids={other_ids}"
    )


def _differs(ref: Verdict, other: Verdict) -> bool:
    if ref.allowed != other.allowed:
        return True
    both = ref.policy_ids is not None and other.policy_ids is not None
    return both and ref.policy_ids != other.policy_ids


def check_agreement(
    cases: Sequence[Case], reference: Sequence[Verdict], others: Mapping[str, Sequence[Verdict]]
) -> Agreement:
    """Compare every engine's verdicts with the reference's, request by request.

    Args:
        cases: the corpus (for the error message).
        reference: SOP's verdicts, one per case.
        others: engine name to its verdicts for the first ``len(verdicts)`` cases.

    Returns:
        What was compared and the reference's decision mix.

    Raises:
        DisagreementError: some engine decided some request differently, or
            named other determining policies; the message lists the first ones.
    """
    problems: list[str] = []
    for name, verdicts in others.items():
        if len(verdicts) > len(reference):
            raise DisagreementError(f"{name} has {len(verdicts)} verdicts for {len(reference)}")
        bad = [i for i, v in enumerate(verdicts) if _differs(reference[i], v)]
        problems += [f"{name} differs on {len(bad)} of {len(verdicts)} requests"] if bad else []
        problems += [_describe(cases[i], reference[i], verdicts[i], name) for i in bad[:_SHOWN]]
    if problems:
        raise DisagreementError("engines disagree:\n  " + "\n  ".join(problems))
    return Agreement(
        compared={name: len(v) for name, v in others.items()},
        ids_compared={name: all(x.policy_ids is not None for x in v) for name, v in others.items()},
        reasons=dict(Counter(v.reason for v in reference)),
    )


def verdict_digest(verdicts: Sequence[Verdict]) -> str:
    """A SHA-256 over decisions, determining ids and reasons (to compare two runs).

    Args:
        verdicts: one engine's verdicts.

    Returns:
        The hex digest.
    """
    h = hashlib.sha256()
    for v in verdicts:
        h.update(f"{v.allowed}:{','.join(sorted(v.policy_ids or ()))}:{v.reason}\n".encode())
    return h.hexdigest()
