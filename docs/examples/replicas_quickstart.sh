set -euo pipefail
DSN="postgresql://127.0.0.1:5432/test"   # this machine's server (trust auth); a password is never shown
sop init --data-dir replica-a --dsn "$DSN" --schema sop_replicas   # migrates the schema, makes keys
sop init --data-dir replica-b --replica-of replica-a               # the same keys, config, anchor
sop serve --data-dir replica-a --bridge 127.0.0.1:7610 --read 127.0.0.1:7611 &
sop serve --data-dir replica-b --bridge 127.0.0.1:7620 --read 127.0.0.1:7621 &
for port in 7611 7621; do
  curl -s --retry 20 --retry-connrefused --retry-delay 1 "http://127.0.0.1:$port/health/ready"
  echo
done
sop policy activate docs/examples/policies --data-dir replica-a   # through A's admin socket
CAP=$(sop cap admit -p drac -a artifact.persist -r 'artifacts/drac/**' --data-dir replica-a --json)
TOKEN=$(echo "$CAP" | python3 -c 'import json, sys; print(json.load(sys.stdin)["token"])')
CAP_ID=$(echo "$CAP" | python3 -c 'import json, sys; print(json.load(sys.stdin)["capability"]["id"])')
sop certs issue drac --data-dir replica-a --out drac-cert   # the replicas share one CA

decide() {  # one decision through the bridge plane on port $1
  curl -s --cacert drac-cert/ca.pem --cert drac-cert/drac.pem --key drac-cert/drac.key \
    -H 'content-type: application/json' -H "Idempotency-Key: $2" \
    -d '{"request_id": "'"$2"'", "principal": "drac", "action": "artifact.persist",
         "resource": "artifacts/drac/plan.json", "capability": "'"$TOKEN"'",
         "context": {"size_bytes": 5}}' "https://127.0.0.1:$1/v1/decide"
  echo
}
decide 7610 through-a   # ALLOW, logged by replica A
decide 7620 through-b   # ALLOW, logged by replica B at the next index of the same log
sop cap revoke "$CAP_ID" --data-dir replica-a   # revoked through A ...
decide 7620 after-revoke   # ... DENY `revoked` through B, for the very next decision
kill %1 %2 && wait
sop log verify --data-dir replica-b   # one log, gap-free, verified from either replica
