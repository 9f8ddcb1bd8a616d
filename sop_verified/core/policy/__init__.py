"""The Policy_Engine: policy language, validator, fast evaluator, Z3 encoding and analyses.

- :mod:`.lang` and :mod:`.typecheck` read and check `when` conditions;
- :mod:`.model` and :mod:`.loader` read and check policy documents (TOML/JSON);
- :mod:`.evaluator` decides requests (:class:`PolicySet`);
- :mod:`.encode` states the same semantics in Z3 (:class:`PolicyEncoding`);
- :mod:`.analysis`, :mod:`.governance` and :mod:`.report` prove properties of sets.

spec/POLICY_LANGUAGE.md is the reference.
"""

from sop_verified.core.policy.analysis import AnalysisResult, always_denies, equivalent, implies
from sop_verified.core.policy.encode import PolicyEncoding
from sop_verified.core.policy.evaluator import PolicyReason, PolicyResult, PolicySet
from sop_verified.core.policy.governance import (
    Finding,
    Severity,
    governance_check,
    verify_governance,
)
from sop_verified.core.policy.loader import load_canonical, load_path
from sop_verified.core.policy.model import Policy, PolicyDocument, PolicyEffect
from sop_verified.core.policy.report import PolicyCheckReport, check_directory, check_policy_set

__all__ = [
    "AnalysisResult",
    "Finding",
    "Policy",
    "PolicyCheckReport",
    "PolicyDocument",
    "PolicyEffect",
    "PolicyEncoding",
    "PolicyReason",
    "PolicyResult",
    "PolicySet",
    "Severity",
    "always_denies",
    "check_directory",
    "check_policy_set",
    "equivalent",
    "governance_check",
    "implies",
    "load_canonical",
    "load_path",
    "verify_governance",
]
