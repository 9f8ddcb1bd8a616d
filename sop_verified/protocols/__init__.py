"""The runtime protocols' typed facades over the Runtime Bridge (DRAC, EMP, CSP).

Each call is one bridge request through the kernel: capability, policy,
obligations, log. Nothing here decides; the facades only build requests.
"""

from sop_verified.protocols.bridge import Bridge
from sop_verified.protocols.emp import EMP, ObligationOutcome

__all__ = ["EMP", "Bridge", "ObligationOutcome"]
