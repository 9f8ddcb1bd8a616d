"""The runtime protocols' typed facades over the Runtime Bridge (DRAC, EMP, CSP).

Each call is one bridge request through the kernel: capability, policy,
obligations, log. Nothing here decides; the facades only build requests.
"""

from sop_verified.protocols.bridge import Bridge
from sop_verified.protocols.csp import CSP
from sop_verified.protocols.drac import DRAC
from sop_verified.protocols.emp import EMP, ObligationOutcome

__all__ = ["CSP", "DRAC", "EMP", "Bridge", "ObligationOutcome"]
