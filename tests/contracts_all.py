"""A pytest plugin (``-p contracts_all`` in pyproject.toml): the suite runs with every contract.

It is imported before any test module, so ``SOP_CONTRACTS=all`` is in the
environment when SOP's modules are first imported (and in every child process
a test starts): helper contracts are on in the tests, boundary contracts are on
everywhere (docs/adr/0007-linked-effects-and-hot-path.md).
"""

from __future__ import annotations

import os
import sys

if any(m.startswith("sop_verified.core") for m in sys.modules):  # too late to switch them on
    raise RuntimeError("contracts_all must load before sop_verified.core is imported")
os.environ["SOP_CONTRACTS"] = "all"
