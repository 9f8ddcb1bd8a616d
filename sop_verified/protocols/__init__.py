"""The runtime protocols (DRAC, EMP, CSP): clients of the kernel, outside core.

Each protocol is a package: its state (rebuilt from the log), its controller
(the effect of a logged ALLOW, after the protocol's own rule is checked again)
and its typed facade (``sop.drac``, ``sop.emp``, ``sop.csp``), which builds
the bridge requests. Every call is one bridge request through the kernel:
capability, policy, obligations, log. Nothing here decides; the kernel does.

Shared by the three: :mod:`.ledger` (protocol records logged, indexed, then
applied), :mod:`.effects` (parse once, explain a denial, refuse an effect),
:mod:`.obligations` (the obligations the kernel derives for DRAC and CSP
requests), :mod:`.bridge` and :mod:`.requests` (what a facade needs of SOP).
The code here uses only the kernel's and the persistence controller's public
API; nexus wires it, and it never imports nexus, server or cli.
"""

from sop_verified.protocols.bridge import Bridge
from sop_verified.protocols.csp import CSP
from sop_verified.protocols.drac import DRAC
from sop_verified.protocols.emp import EMP, ObligationOutcome

__all__ = ["CSP", "DRAC", "EMP", "Bridge", "ObligationOutcome"]
