set -euo pipefail
sop init --data-dir sop-data
# A witness trusting this log's checkpoint key (run by someone else, on another machine)
sop witness init --dir witness-1 --name witness.example/w1 --log sop-data/keys/checkpoint.vkey
sop witness serve --dir witness-1 --listen 127.0.0.1:7650 &
# Point SOP at it: a checkpoint is published only once `min` witnesses cosigned it
cat >> sop-data/sop.toml <<TOML

[witnesses]
min = 1
witness = [{ url = "http://127.0.0.1:7650", vkey = "$(cat witness-1/witness.vkey)" }]
TOML
sop config accept --data-dir sop-data             # sop.toml is sealed: the change is logged
sop serve --data-dir sop-data &
# Receipts carry the witnessed checkpoint (503 + Retry-After until it covers the entry)
curl -sf --retry 20 --retry-connrefused --retry-delay 1 http://127.0.0.1:7601/v1/receipts/0 > r0
sop receipt verify r0 --vkey sop-data/keys/checkpoint.vkey --witness witness-1/witness.vkey
curl -s http://127.0.0.1:7601/log/checkpoint      # SOP's signature line, then the cosignature
kill %2 %1 && wait
