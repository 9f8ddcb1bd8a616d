"""EMP's authority: registered signing keys and write-once verification outputs.

:mod:`.outputs` defines the signed :class:`VerificationOutput` and where it is
stored; :class:`EmpState` (:mod:`.state`) is rebuilt from the log;
:class:`EmpController` (:mod:`.controller`) records an output after the
kernel's logged ALLOW, with its attestation. Proof obligations EMP submits go
through the kernel's proof gate (``sop.emp.submit_obligation``). :class:`EMP`
(:mod:`.facade`) is ``sop.emp``, the typed facade that builds the bridge requests.
"""

from sop_verified.protocols.emp.controller import EmpController
from sop_verified.protocols.emp.facade import EMP, ObligationOutcome
from sop_verified.protocols.emp.outputs import (
    OUTPUTS_ROOT,
    PREDICATE_OUTPUT,
    OutputRecord,
    VerificationOutput,
    emp_key_id,
    output_resource,
    sign_output,
)
from sop_verified.protocols.emp.state import EmpState, key_entry

__all__ = [
    "EMP",
    "OUTPUTS_ROOT",
    "PREDICATE_OUTPUT",
    "EmpController",
    "EmpState",
    "ObligationOutcome",
    "OutputRecord",
    "VerificationOutput",
    "emp_key_id",
    "key_entry",
    "output_resource",
    "sign_output",
]
