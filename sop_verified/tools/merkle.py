"""RFC 6962 / RFC 9162 Merkle tree hashing, proofs and their verification.

Hashing is SHA-256 with domain separation (RFC 9162 §2.1.1): a leaf hashes as
``SHA-256(0x00 || data)``, an interior node as ``SHA-256(0x01 || left || right)``
and the empty tree as ``SHA-256()``. Proofs are exactly RFC 9162's: the audit
path of §2.1.3.1 and the consistency proof of §2.1.4.1; the verifiers follow
§2.1.3.2 and §2.1.4.2 step by step.

Edge cases decided here (docs/adr/0003-merkle-and-notes-by-hand.md):

- every hash (leaf hash, root, proof element) is exactly 32 bytes, checked
  before any hashing; anything else is rejected, never compared;
- sizes and indices are integers in ``[0, 2**64)`` as in the RFC's ``uint64``;
- no inclusion proof exists in the empty tree (``index < size`` fails);
- a consistency proof *from* the empty tree (``size1 == 0``) is rejected for
  every ``size2``, as transparency-dev/merkle does: the empty tree is a prefix
  of every tree, so there is nothing to prove, and a caller that holds an
  empty checkpoint compares its root with :data:`EMPTY_ROOT` itself;
- ``0 < size1 == size2`` takes an empty proof and equal roots.

Verification failures raise :class:`~sop_verified.errors.VerificationError`
whose ``expected`` and ``calculated`` hold the evidence.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from typing import Any

from sop_verified.errors import InputError, VerificationError

__all__ = [
    "EMPTY_ROOT",
    "HASH_SIZE",
    "MAX_TREE_SIZE",
    "consistency_proof",
    "consistency_proof_size",
    "inclusion_proof",
    "inclusion_proof_size",
    "leaf_hash",
    "node_hash",
    "root_hash",
    "verify_consistency",
    "verify_inclusion",
]

HASH_SIZE = 32
"""Bytes in a SHA-256 hash, the only hash this tree uses."""

MAX_TREE_SIZE = (1 << 64) - 1
"""Largest tree size (RFC 9162 sizes and indices are ``uint64``)."""

EMPTY_ROOT = hashlib.sha256(b"").digest()
"""MTH({}) = SHA-256() (RFC 9162 §2.1.1)."""

_sha256 = hashlib.sha256
_LEAF = b"\x00"
_NODE = b"\x01"
_HASH_ACCEPTED = f"a {HASH_SIZE}-byte SHA-256 hash as `bytes`"


def leaf_hash(data: bytes) -> bytes:
    """Return the RFC 6962 leaf hash ``SHA-256(0x00 || data)``.

    Args:
        data: The entry's bytes.

    Returns:
        The 32-byte leaf hash.
    """
    return _sha256(_LEAF + data).digest()


def node_hash(left: bytes, right: bytes) -> bytes:
    """Return the RFC 6962 interior node hash ``SHA-256(0x01 || left || right)``.

    Args:
        left: Hash of the left subtree.
        right: Hash of the right subtree.

    Returns:
        The 32-byte node hash.
    """
    return _sha256(_NODE + left + right).digest()


# --- argument checks ----------------------------------------------------------


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _bad_number(what: str, value: Any, accepted: str) -> VerificationError:
    return VerificationError(
        f"{what} `{value!r}` is out of range; accepted: {accepted}",
        expected=accepted,
        calculated=value,
    )


def _check_size(value: Any, what: str) -> None:
    if not _is_int(value) or not 0 <= value <= MAX_TREE_SIZE:
        raise _bad_number(what, value, "an integer in `[0, 2**64)`")


def _check_hash(value: Any, what: str) -> None:
    if type(value) is not bytes or len(value) != HASH_SIZE:
        shown = f"{len(value)} bytes" if isinstance(value, bytes) else type(value).__name__
        raise VerificationError(
            f"{what} is `{shown}`; accepted: {_HASH_ACCEPTED}",
            expected=_HASH_ACCEPTED,
            calculated=value,
        )


def _check_proof(proof: Any, want: int, what: str) -> None:
    if not isinstance(proof, list | tuple):
        raise VerificationError(
            f"{what} is a `{type(proof).__name__}`; accepted: a list of hashes",
            expected="list",
            calculated=type(proof).__name__,
        )
    if len(proof) != want:
        raise VerificationError(
            f"{what} has `{len(proof)}` hashes; accepted: exactly `{want}`",
            expected=want,
            calculated=len(proof),
        )
    for i, p in enumerate(proof):
        if type(p) is not bytes or len(p) != HASH_SIZE:
            _check_hash(p, f"{what} element `{i}`")


def _mismatch(what: str, expected: bytes, calculated: bytes) -> VerificationError:
    return VerificationError(
        f"calculated {what} `{calculated.hex()}` does not match the expected `{expected.hex()}`",
        expected=expected,
        calculated=calculated,
    )


# --- proof sizes ----------------------------------------------------------------


def inclusion_proof_size(index: int, size: int) -> int:
    """Return how many hashes an inclusion proof for ``index`` in a tree of ``size`` has.

    The path splits where the paths to ``index`` and ``size - 1`` diverge: one
    sibling per level below that point, then one left sibling per set bit of
    ``index`` above it.

    Args:
        index: Leaf index, ``0 <= index < size``.
        size: Tree size.

    Returns:
        The exact number of hashes in the RFC 9162 audit path.
    """
    inner = (index ^ (size - 1)).bit_length()
    return inner + (index >> inner).bit_count()


def consistency_proof_size(size1: int, size2: int) -> int:
    """Return how many hashes a consistency proof from ``size1`` to ``size2`` has.

    Args:
        size1: Earlier size, ``0 < size1 <= size2``.
        size2: Later size.

    Returns:
        The exact number of hashes in the RFC 9162 consistency proof.
    """
    if size1 == size2:
        return 0
    shift = (size1 & -size1).bit_length() - 1  # complete subtrees shared as is
    inner = ((size1 - 1) ^ (size2 - 1)).bit_length()
    border = ((size1 - 1) >> inner).bit_count()
    seed = 0 if size1 == 1 << shift else 1  # §2.1.4.2 step 2: a power of 2 is implied
    return seed + inner - shift + border


# --- verification (RFC 9162 §2.1.3.2 and §2.1.4.2) ---------------------------------


def verify_inclusion(
    leaf_hash: bytes, index: int, size: int, proof: Sequence[bytes], root: bytes
) -> None:
    """Verify that ``leaf_hash`` is leaf ``index`` of the tree of ``size`` with ``root``.

    Follows RFC 9162 §2.1.3.2. The proof length is checked exactly before any
    hashing, so garbage is rejected without work.

    Args:
        leaf_hash: The 32-byte leaf hash (not the entry data).
        index: The leaf's index.
        size: The tree size.
        proof: The audit path, lowest level first.
        root: The tree's 32-byte root hash.

    Raises:
        VerificationError: an argument is malformed or out of range, the proof
            has the wrong length, or the calculated root differs from ``root``
            (``expected`` is ``root``, ``calculated`` the computed root).
    """
    _check_size(size, "tree size")
    _check_size(index, "leaf index")
    if index >= size:  # step 1
        raise _bad_number("leaf index", index, f"an index below the tree size `{size}`")
    _check_hash(leaf_hash, "leaf hash")
    _check_hash(root, "root")
    _check_proof(proof, inclusion_proof_size(index, size), "inclusion proof")
    fn, sn, r = index, size - 1, leaf_hash  # steps 2 and 3
    for p in proof:  # step 4
        if sn == 0:  # 4a: unreachable after the exact length check; kept as the RFC says
            raise VerificationError("inclusion proof is too long", expected=0, calculated=sn)
        if fn & 1 or fn == sn:  # 4b
            r = _sha256(_NODE + p + r).digest()
            while fn and not fn & 1:
                fn >>= 1
                sn >>= 1
        else:
            r = _sha256(_NODE + r + p).digest()
        fn >>= 1  # 4c
        sn >>= 1
    if sn != 0:  # step 5
        raise VerificationError("inclusion proof is too short", expected=0, calculated=sn)
    if r != root:
        raise _mismatch("root", root, r)


def verify_consistency(
    size1: int, size2: int, proof: Sequence[bytes], root1: bytes, root2: bytes
) -> None:
    """Verify that the tree of ``size2`` with ``root2`` extends the one of ``size1`` with ``root1``.

    Follows RFC 9162 §2.1.4.2, with the edge cases of the module docstring:
    ``size1 == 0`` is rejected and ``size1 == size2`` takes an empty proof and
    equal roots.

    Args:
        size1: The earlier tree size, ``0 < size1 <= size2``.
        size2: The later tree size.
        proof: The consistency proof.
        root1: The earlier 32-byte root hash.
        root2: The later 32-byte root hash.

    Raises:
        VerificationError: an argument is malformed or out of range, the proof
            has the wrong length, or a calculated root differs from the given
            one (``expected`` is the given root, ``calculated`` the computed one).
    """
    _check_size(size1, "first tree size")
    _check_size(size2, "second tree size")
    if size1 == 0:
        raise _bad_number("first tree size", size1, "a consistency proof from a non-empty tree")
    if size1 > size2:
        raise _bad_number("first tree size", size1, f"at most the second tree size `{size2}`")
    _check_hash(root1, "first root")
    _check_hash(root2, "second root")
    _check_proof(proof, consistency_proof_size(size1, size2), "consistency proof")
    if size1 == size2:
        if root1 != root2:
            raise _mismatch("second root", root2, root1)
        return
    _chain_consistency(size1, size2, proof, root1, root2)


def _chain_consistency(
    size1: int, size2: int, proof: Sequence[bytes], root1: bytes, root2: bytes
) -> None:
    # RFC 9162 §2.1.4.2; step 1 (empty path fails) is covered by the length check.
    if size1 & (size1 - 1) == 0:  # step 2: prepend first_hash
        seed, rest = root1, proof
    else:
        seed, rest = proof[0], proof[1:]
    fn, sn = size1 - 1, size2 - 1  # step 3
    while fn & 1:  # step 4
        fn >>= 1
        sn >>= 1
    fr = sr = seed  # step 5
    for c in rest:  # step 6
        if sn == 0:  # 6a: unreachable after the exact length check; kept as the RFC says
            raise VerificationError("consistency proof is too long", expected=0, calculated=sn)
        if fn & 1 or fn == sn:  # 6b
            fr = _sha256(_NODE + c + fr).digest()
            sr = _sha256(_NODE + c + sr).digest()
            while fn and not fn & 1:
                fn >>= 1
                sn >>= 1
        else:
            sr = _sha256(_NODE + sr + c).digest()
        fn >>= 1  # 6c
        sn >>= 1
    if sn != 0:  # step 7
        raise VerificationError("consistency proof is too short", expected=0, calculated=sn)
    if fr != root1:
        raise _mismatch("first root", root1, fr)
    if sr != root2:
        raise _mismatch("second root", root2, sr)


# --- trees and proofs from a list of entries -----------------------------------------


def _levels(leaves: Sequence[bytes]) -> list[list[bytes]]:
    """All levels of the tree, leaves first; an unpaired last node moves up as is.

    Promoting the unpaired node yields MTH exactly (RFC 9162 §2.1.1 splits at
    the largest power of two below ``n``), and node ``i`` of level ``l`` is the
    hash of leaves ``[i * 2**l, min((i + 1) * 2**l, n))``.
    """
    level = [leaf_hash(d) for d in leaves]
    levels = [level]
    while len(level) > 1:
        up = [node_hash(level[i], level[i + 1]) for i in range(0, len(level) - 1, 2)]
        if len(level) & 1:
            up.append(level[-1])
        levels.append(up)
        level = up
    return levels


def _check_arg(value: Any, what: str, low: int, high: int) -> int:
    if not _is_int(value):
        raise TypeError(f"{what} must be an int, not `{type(value).__name__}`")
    if not low <= value <= high:
        raise InputError(
            f"{what} `{value}` is out of range", accepted=f"an integer in `[{low}, {high}]`"
        )
    return int(value)


def root_hash(leaves: Sequence[bytes]) -> bytes:
    """Return the Merkle Tree Hash MTH of ``leaves`` (RFC 9162 §2.1.1).

    Args:
        leaves: The entries' data (not their hashes).

    Returns:
        The 32-byte root; :data:`EMPTY_ROOT` for no leaves.
    """
    if not leaves:
        return EMPTY_ROOT
    return _levels(leaves)[-1][0]


def inclusion_proof(leaves: Sequence[bytes], index: int) -> list[bytes]:
    """Return the audit path PATH(index, leaves) of RFC 9162 §2.1.3.1.

    Args:
        leaves: The entries' data (not their hashes).
        index: The leaf to prove, ``0 <= index < len(leaves)``.

    Returns:
        The proof hashes, lowest level first.

    Raises:
        InputError: ``index`` is not a leaf of the tree.
        TypeError: ``index`` is not an int.
    """
    _check_arg(index, "leaf index", 0, len(leaves) - 1)
    proof = []
    for level in _levels(leaves)[:-1]:
        sibling = index ^ 1
        if sibling < len(level):
            proof.append(level[sibling])
        index >>= 1
    return proof


def consistency_proof(leaves: Sequence[bytes], size1: int) -> list[bytes]:
    """Return PROOF(size1, leaves) of RFC 9162 §2.1.4.1, from ``size1`` to ``len(leaves)``.

    Args:
        leaves: The entries' data of the later tree.
        size1: The earlier size, ``0 < size1 <= len(leaves)``; equal sizes give ``[]``.

    Returns:
        The proof hashes.

    Raises:
        InputError: ``size1`` is 0 or larger than ``len(leaves)``.
        TypeError: ``size1`` is not an int.
    """
    if not leaves:
        raise InputError(
            "no consistency proof exists in the empty tree", accepted="a non-empty list of leaves"
        )
    _check_arg(size1, "first tree size", 1, len(leaves))
    if size1 == len(leaves):
        return []
    levels = _levels(leaves)
    level, node = 0, size1 - 1
    while node & 1:  # nodes left of the shared subtree are the same in both trees
        node >>= 1
        level += 1
    proof = [levels[level][node]] if node else []  # a power of 2 is root1 itself
    for row in levels[level:-1]:
        sibling = node ^ 1
        if sibling < len(row):
            proof.append(row[sibling])
        node >>= 1
    return proof
