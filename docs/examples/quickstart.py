"""SOP from Python: boot, activate a policy set, admit a capability, decide, persist, verify.

Run it with ``python3 docs/examples/quickstart.py``; tests/test_api_doc.py runs it
and checks that docs/API.md shows this file as it is.
"""

import tempfile
import time
from pathlib import Path

from sop_verified import SOP, Health, Verifier, verify_receipt

POLICY = """\
[[policy]]
id = "drac-persists-its-artifacts"
effect = "permit"
principal = ["drac"]
action = ["artifact.persist"]
resource = ["artifacts/drac/**"]
channel = "bridge"
when = 'context.size_bytes <= 1048576'
"""

with tempfile.TemporaryDirectory() as tmp:
    data_dir = Path(tmp) / "sop"
    SOP.init(data_dir)  # configuration and keys (0600)
    with SOP.boot(data_dir) as sop:
        assert sop.health is Health.READY, sop.boot_report.detail

        # The admin plane: a policy set passes Z3's analyses before it is active.
        (Path(tmp) / "policies").mkdir()
        (Path(tmp) / "policies" / "policies.toml").write_text(POLICY)
        sop.activate_policy(Path(tmp) / "policies")
        capability, token = sop.admit(
            "drac", ["artifact.persist"], ["artifacts/drac/**"], expires=int(time.time()) + 3600
        )

        # The bridge: a request SOP decides and logs; nothing is written by `submit`.
        request = {
            "request_id": "req-1",
            "principal": "drac",
            "action": "artifact.persist",
            "resource": "artifacts/drac/plan.json",
            "capability": token,
            "context": {"size_bytes": 5},
        }
        print("decided:", sop.submit(request).effect)

        # Persist: decided, logged, then written; the receipt proves it was logged.
        decision = sop.persist({**request, "request_id": "req-2"}, b"hello")
        assert decision.allowed, decision.reasons
        assert decision.log_index is not None
        bundle = sop.log.prove(decision.log_index).to_text()

    # Offline: nothing but the bundle and the public key.
    key = Verifier.from_string((data_dir / "keys" / "checkpoint.vkey").read_text().strip())
    verified = verify_receipt(bundle, [key])
    print(f"entry {verified.index} is in the log signed by {key.name}")
