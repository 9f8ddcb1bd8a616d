"""Determinism: a verdict depends on the obligation, z3's version, the rlimit and the parameters."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

from proofgate_helpers import CORPUS, FACTOR

from sop_verified.core.proofgate import GateConfig, Z3ProofGate
from sop_verified.core.proofgate.solver import PINNED_PARAMS

SCRIPT = """
import json, sys
from pathlib import Path
from typing import Any
from sop_verified.core.proofgate import GateConfig, Z3ProofGate
from sop_verified.core.request import Obligation
sources = json.loads(sys.stdin.read())
out = []
with Z3ProofGate(GateConfig(workers=1, rlimit=400_000)) as gate:
    for i, src in enumerate(sources):
        r = gate.check(Obligation.model_construct(id=f"d:{i}", format="smt2", source=src))
        out.append([r.verdict.value, r.digest, r.reason, r.evidence])
print(json.dumps({"results": out, "solver": gate.solver_identity}))
"""

NAMES = [
    "qf_lia_linear_system",
    "qf_bv_wraparound",
    "qf_uf_congruence",
    "qf_slia_length_sat",
    "uf_symmetry",
]


def _run(sources: list[str]) -> dict[str, Any]:
    done = subprocess.run(
        [sys.executable, "-c", SCRIPT],
        input=json.dumps(sources),
        capture_output=True,
        text=True,
        check=True,
        timeout=120,
        cwd=Path(__file__).parent,
    )
    result: dict[str, Any] = json.loads(done.stdout)
    return result


def test_same_obligations_give_the_same_verdicts_in_fresh_processes() -> None:
    sources = [(CORPUS / f"{name}.smt2").read_text() for name in NAMES] + [FACTOR]
    first, second = _run(sources), _run(list(reversed(sources)))
    assert first["solver"] == second["solver"]
    assert first["results"] == list(reversed(second["results"]))
    verdicts = [r[0] for r in first["results"]]
    assert verdicts[-1] == "UNKNOWN" and first["results"][-1][2].startswith("resource limit")


def test_solver_identity_pins_version_rlimit_and_seeds() -> None:
    with Z3ProofGate(GateConfig(workers=1, rlimit=12345)) as gate:
        identity = gate.solver_identity
    assert identity["name"] == "z3" and identity["version"]
    assert identity["rlimit"] == 12345
    assert identity["params"]["smt.random_seed"] == 0 and identity["params"]["random_seed"] == 0
    assert set(PINNED_PARAMS) <= set(identity["params"])
