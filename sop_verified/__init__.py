"""SOP: the verified operations kernel.

The public API a caller needs::

    from sop_verified import SOP, Decision, Health, Request, Verifier, verify_receipt

``SOP`` boots a data directory (``SOP.init`` makes one) and is a context manager;
``Client`` and ``AsyncClient`` ask a remote SOP (``sop serve``) the same questions;
see docs/API.md. The names are loaded on first use, so importing a submodule
(``sop_verified.tools...``) does not load the kernel.
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

if TYPE_CHECKING:
    from sop_verified.client import AsyncClient, Client
    from sop_verified.core.health import Health
    from sop_verified.core.request import Decision, Request
    from sop_verified.errors import RemoteError, SOPError
    from sop_verified.nexus.sop import SOP, PolicyRefusedError
    from sop_verified.tools.signed_note import Verifier
    from sop_verified.tools.tlog_receipt import verify_bundle as verify_receipt

__all__ = [
    "SOP",
    "AsyncClient",
    "Client",
    "Decision",
    "Health",
    "PolicyRefusedError",
    "RemoteError",
    "Request",
    "SOPError",
    "Verifier",
    "__version__",
    "verify_receipt",
]

# name -> (module, attribute)
_PUBLIC = {
    "SOP": ("sop_verified.nexus.sop", "SOP"),
    "PolicyRefusedError": ("sop_verified.nexus.sop", "PolicyRefusedError"),
    "Decision": ("sop_verified.core.request", "Decision"),
    "Request": ("sop_verified.core.request", "Request"),
    "Health": ("sop_verified.core.health", "Health"),
    "SOPError": ("sop_verified.errors", "SOPError"),
    "Client": ("sop_verified.client", "Client"),
    "AsyncClient": ("sop_verified.client", "AsyncClient"),
    "RemoteError": ("sop_verified.errors", "RemoteError"),
    "Verifier": ("sop_verified.tools.signed_note", "Verifier"),
    "verify_receipt": ("sop_verified.tools.tlog_receipt", "verify_bundle"),
}


def __getattr__(name: str) -> Any:
    """Load a public name on first use (PEP 562)."""
    try:
        module, attr = _PUBLIC[name]
    except KeyError:
        raise AttributeError(f"module `sop_verified` has no attribute `{name}`") from None
    return getattr(import_module(module), attr)
