"""A data directory with fixed keys, for the golden boot manifest and checkpoint.

The keys are derived from fixed labels here (test keys, never used outside the
tests), the clock is pinned, and the library versions the manifest records are
pinned too (they differ between machines), so two boots of the same
configuration must write the same bytes (INV-8).
"""

from __future__ import annotations

import base64
import hashlib
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from sop_verified.nexus import config, keys
from sop_verified.tools.signed_note import Signer

GOLDEN = Path(__file__).parent
NOW = 1_800_000_000
ORIGIN = "sop.local/log"
VERSIONS = {
    "sop": "golden",
    "python": "3.x",
    "z3": "z3 golden",
    "pydantic": "golden",
    "cryptography": "golden",
    "icontract": "golden",
    "rfc8785": "golden",
}


def _seed(label: str) -> bytes:
    return hashlib.sha256(b"sop golden test key: " + label.encode()).digest()


def make_golden_dir(data: Path) -> None:
    """``sop init`` at ``data``, then swap in the fixed test keys."""
    config.init_data_dir(data)
    for name in (
        config.MAC_KEY_NAME,
        keys.CHECKPOINT_KEY,
        keys.CHECKPOINT_VKEY,
        keys.CHECKPOINT_GENESIS,
        keys.ATTESTATION_KEY,
        keys.ATTESTATION_PUB,
    ):
        (data / name).unlink()
    keys.write_secret(data / config.MAC_KEY_NAME, _seed("capability"))
    signer = Signer(ORIGIN, _seed("checkpoint"))
    material = base64.b64encode(b"\x01" + _seed("checkpoint")).decode()
    skey = f"PRIVATE+KEY+{ORIGIN}+{signer.key_id:08x}+{material}"
    keys.write_secret(data / keys.CHECKPOINT_KEY, skey.encode())
    keys.write_public(data / keys.CHECKPOINT_VKEY, signer.verifier().vkey + "\n")
    keys.write_public(data / keys.CHECKPOINT_GENESIS, signer.verifier().vkey + "\n")
    attestation = Ed25519PrivateKey.from_private_bytes(_seed("attestation"))
    pem = attestation.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    keys.write_secret(data / keys.ATTESTATION_KEY, pem)
    keys.write_public(data / keys.ATTESTATION_PUB, keys.public_pem(attestation))
