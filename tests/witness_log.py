"""A transparency log in memory for the witness tests: leaves, a checkpoint key, request bodies."""

from __future__ import annotations

from sop_verified.tools.checkpoint import Checkpoint, sign_checkpoint
from sop_verified.tools.merkle import consistency_proof, leaf_hash, root_hash
from sop_verified.tools.signed_note import Signer, generate
from sop_verified.tools.witness import format_add_checkpoint

ORIGIN = "example.com/log"


class Log:
    """A log in memory: its leaves and its checkpoint key (named after its origin)."""

    def __init__(self, n: int = 40, *, seed: str = "", origin: str = ORIGIN) -> None:
        self.origin = origin
        self.signer = Signer.from_string(generate(origin)[0])
        self.leaves = [leaf_hash(f"{seed}{i}".encode()) for i in range(n)]

    @property
    def vkey(self) -> str:
        return self.signer.verifier().vkey

    def root(self, size: int) -> bytes:
        return root_hash(self.leaves[:size])

    def proof(self, old: int, size: int) -> list[bytes]:
        return consistency_proof(self.leaves[:size], old) if 0 < old < size else []

    def note(self, size: int, *, root: bytes | None = None, signer: Signer | None = None) -> str:
        digest = root if root is not None else self.root(size)
        return sign_checkpoint(Checkpoint(self.origin, size, digest), signer or self.signer)

    def body(
        self, old: int, size: int, *, root: bytes | None = None, signer: Signer | None = None
    ) -> bytes:
        return format_add_checkpoint(
            old, self.proof(old, size), self.note(size, root=root, signer=signer)
        )
