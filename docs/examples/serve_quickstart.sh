set -euo pipefail
sop init --data-dir sop-data                      # keys, and a local CA with a server certificate
sop serve --data-dir sop-data &                   # bridge :7600 (mTLS), read :7601, admin socket
curl -s --retry 20 --retry-connrefused --retry-delay 1 http://127.0.0.1:7601/health/ready
sop policy activate docs/examples/policies --data-dir sop-data   # through the admin socket
TOKEN=$(sop cap admit -p drac -a artifact.persist -r 'artifacts/drac/**' --data-dir sop-data \
  --json | python3 -c 'import json, sys; print(json.load(sys.stdin)["token"])')
sop certs issue drac --data-dir sop-data --out drac-cert          # drac.pem, drac.key, ca.pem

# A first authenticated decision with curl: the principal is the certificate's.
curl -s --cacert drac-cert/ca.pem --cert drac-cert/drac.pem --key drac-cert/drac.key \
  -H 'content-type: application/json' -H 'Idempotency-Key: first-decision' \
  -d '{"request_id": "r-1", "principal": "drac", "action": "artifact.persist",
       "resource": "artifacts/drac/plan.json", "capability": "'"$TOKEN"'",
       "context": {"size_bytes": 5}}' \
  https://127.0.0.1:7600/v1/decide

# The same with the Python client (retries reuse the idempotency key).
TOKEN=$TOKEN python3 - <<'PY'
import os
from sop_verified import Client, Verifier, verify_receipt

with Client("https://127.0.0.1:7600", read_url="http://127.0.0.1:7601",
            cert="drac-cert/drac.pem", key="drac-cert/drac.key", ca="drac-cert/ca.pem") as sop:
    decision = sop.submit({"request_id": "r-2", "principal": "drac",
                           "action": "artifact.persist", "resource": "artifacts/drac/b.json",
                           "capability": os.environ["TOKEN"], "context": {"size_bytes": 5}})
    bundle = sop.receipt(decision.log_index)  # C2SP tlog-proof, from the read plane
key = Verifier.from_string(open("sop-data/keys/checkpoint.vkey").read().strip())
print(decision.effect, "at log index", verify_receipt(bundle, [key]).index)
PY
kill %1 && wait   # SIGTERM: in-flight requests finish, the last batch is signed, exit 0
