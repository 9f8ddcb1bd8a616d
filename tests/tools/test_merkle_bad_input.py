"""Every malformed or forged proof is rejected with a VerificationError that carries evidence."""

from __future__ import annotations

import random
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from sop_verified.errors import InputError, SOPError, VerificationError
from sop_verified.tools.merkle import (
    EMPTY_ROOT,
    MAX_TREE_SIZE,
    consistency_proof,
    inclusion_proof,
    leaf_hash,
    root_hash,
    verify_consistency,
    verify_inclusion,
)

DATA = [bytes([i]) * i for i in range(13)]
ROOT = root_hash(DATA)
ROOT5 = root_hash(DATA[:5])
LEAF3 = leaf_hash(DATA[3])
PROOF3 = inclusion_proof(DATA, 3)
CPROOF5 = consistency_proof(DATA, 5)


def _flip(h: bytes, bit: int = 0) -> bytes:
    return bytes([h[0] ^ (1 << bit)]) + h[1:]


def test_untampered_proofs_verify() -> None:
    verify_inclusion(LEAF3, 3, 13, PROOF3, ROOT)
    verify_consistency(5, 13, CPROOF5, ROOT5, ROOT)


def test_wrong_root_error_carries_expected_and_calculated() -> None:
    bad_root = _flip(ROOT)
    with pytest.raises(VerificationError) as info:
        verify_inclusion(LEAF3, 3, 13, PROOF3, bad_root)
    assert info.value.expected == bad_root
    assert info.value.calculated == ROOT
    assert bad_root.hex() in str(info.value)
    assert isinstance(info.value, SOPError)


def test_wrong_second_root_in_consistency_carries_evidence() -> None:
    bad = _flip(ROOT, 7)
    with pytest.raises(VerificationError) as info:
        verify_consistency(5, 13, CPROOF5, ROOT5, bad)
    assert (info.value.expected, info.value.calculated) == (bad, ROOT)


def test_wrong_first_root_in_consistency_is_detected() -> None:
    with pytest.raises(VerificationError, match="first root") as info:
        verify_consistency(5, 13, CPROOF5, _flip(ROOT5), ROOT)
    assert info.value.calculated == ROOT5


@pytest.mark.parametrize(
    ("proof", "match"),
    [
        (PROOF3[:-1], "has `3` hashes; accepted: exactly `4`"),
        ([*PROOF3, PROOF3[0]], "has `5` hashes"),
        ([], "has `0` hashes"),
        ([b"", *PROOF3[1:]], "element `0` is `0 bytes`"),
        ([*PROOF3[:3], PROOF3[3] + b"\x00"], "element `3` is `33 bytes`"),
        ([*PROOF3[:3], PROOF3[3].hex()], "element `3` is `str`"),
        ([*PROOF3[:3], None], "element `3` is `NoneType`"),
        (None, "is a `NoneType`"),
        (b"".join(PROOF3), "is a `bytes`"),
        ("garbage", "is a `str`"),
    ],
)
def test_truncated_or_garbage_inclusion_proof_rejected(proof: Any, match: str) -> None:
    with pytest.raises(VerificationError, match=match):
        verify_inclusion(LEAF3, 3, 13, proof, ROOT)


@pytest.mark.parametrize(
    ("index", "size", "match"),
    [
        (13, 13, "below the tree size `13`"),
        (0, 0, "below the tree size `0`"),
        (-1, 13, "leaf index `-1` is out of range"),
        (3, -13, "tree size `-13`"),
        (3, MAX_TREE_SIZE + 1, "tree size"),
        (True, 13, "leaf index `True`"),
        (3.0, 13, "leaf index `3.0`"),
        ("3", 13, "leaf index `'3'`"),
        (3, 8, "has `4` hashes; accepted: exactly `3`"),
        (3, 26, "accepted: exactly `5`"),
    ],
)
def test_wrong_index_or_size_rejected(index: Any, size: Any, match: str) -> None:
    with pytest.raises(VerificationError, match=match):
        verify_inclusion(LEAF3, index, size, PROOF3, ROOT)


@pytest.mark.parametrize("index", [2, 4, 7, 11, 1, 0])
def test_proof_for_another_index_does_not_verify(index: int) -> None:
    with pytest.raises(VerificationError):
        verify_inclusion(LEAF3, index, 13, PROOF3, ROOT)


@pytest.mark.parametrize(
    ("value", "what"),
    [(LEAF3[:31], "leaf hash is `31 bytes`"), (bytearray(LEAF3), "leaf hash is `bytearray`"),
     (LEAF3.hex(), "leaf hash is `str`")],
)  # fmt: skip
def test_malformed_leaf_hash_rejected(value: Any, what: str) -> None:
    with pytest.raises(VerificationError, match=what):
        verify_inclusion(value, 3, 13, PROOF3, ROOT)


def test_malformed_root_rejected_not_compared() -> None:
    with pytest.raises(VerificationError, match="root is `9 bytes`"):
        verify_inclusion(LEAF3, 3, 13, PROOF3, b"WrongRoot")


def test_leaf_data_instead_of_leaf_hash_rejected() -> None:
    with pytest.raises(VerificationError):
        verify_inclusion(DATA[3], 3, 13, PROOF3, ROOT)


@pytest.mark.parametrize(
    ("size1", "size2", "proof", "match"),
    [
        (0, 13, [], "first tree size `0`.*non-empty tree"),
        (0, 0, [], "first tree size `0`"),
        (14, 13, CPROOF5, "at most the second tree size `13`"),
        (5, 13, CPROOF5[:-1], "has `4` hashes; accepted: exactly `5`"),
        (5, 13, [*CPROOF5, ROOT], "has `6` hashes"),
        (5, 13, [], "has `0` hashes"),
        (5, 13, [ROOT5, *CPROOF5], "has `6` hashes"),
        (5, 13, [b"\x00" * 31, *CPROOF5[1:]], "element `0` is `31 bytes`"),
        (13, 13, [ROOT], "has `1` hashes; accepted: exactly `0`"),
        (5, MAX_TREE_SIZE + 1, CPROOF5, "second tree size"),
        (False, 13, CPROOF5, "first tree size `False`"),
        (5, 8, CPROOF5, "consistency proof|calculated"),
        (6, 13, CPROOF5, "consistency proof|calculated"),
        (4, 13, CPROOF5, "consistency proof|calculated"),
    ],
)
def test_malformed_consistency_proof_rejected(
    size1: Any, size2: Any, proof: Any, match: str
) -> None:
    with pytest.raises(VerificationError, match=match):
        verify_consistency(size1, size2, proof, ROOT5, ROOT)


def test_equal_sizes_need_equal_roots() -> None:
    verify_consistency(13, 13, [], ROOT, ROOT)
    with pytest.raises(VerificationError) as info:
        verify_consistency(13, 13, [], ROOT, ROOT5)
    assert (info.value.expected, info.value.calculated) == (ROOT5, ROOT)


def test_consistency_from_empty_tree_rejected_even_with_empty_roots() -> None:
    with pytest.raises(VerificationError, match="non-empty tree"):
        verify_consistency(0, 0, [], EMPTY_ROOT, EMPTY_ROOT)


def test_rewritten_history_is_not_consistent() -> None:
    forked = [*DATA[:4], b"forged", *DATA[5:]]
    proof = consistency_proof(forked, 5)
    with pytest.raises(VerificationError):
        verify_consistency(5, 13, proof, ROOT5, root_hash(forked))


def test_generation_rejects_out_of_range_arguments() -> None:
    with pytest.raises(InputError, match="leaf index `13` is out of range"):
        inclusion_proof(DATA, 13)
    with pytest.raises(InputError, match="leaf index `0`"):
        inclusion_proof([], 0)
    with pytest.raises(InputError, match="first tree size `0`"):
        consistency_proof(DATA, 0)
    with pytest.raises(InputError, match="first tree size `14`"):
        consistency_proof(DATA, 14)
    with pytest.raises(InputError, match="empty tree"):
        consistency_proof([], 1)
    with pytest.raises(TypeError):
        inclusion_proof(DATA, "1")  # type: ignore[arg-type]  # misuse on purpose


def _flip_byte(h: bytes, bit: int) -> bytes:
    """Flip bit ``bit % 8`` of byte ``bit % 32``."""
    out = bytearray(h)
    out[bit % 32] ^= 1 << (bit % 8)
    return bytes(out)


@st.composite
def _tamper_case(draw: st.DrawFn) -> tuple[int, int, int, int]:
    n = draw(st.integers(2, 300))
    return n, draw(st.integers(0, n - 1)), draw(st.integers(1, n - 1)), draw(st.integers(0, 255))


@given(_tamper_case())
def test_any_single_bit_flip_in_a_proof_is_detected(case: tuple[int, int, int, int]) -> None:
    n, index, size1, bit = case
    data = [i.to_bytes(4, "big") for i in range(n)]
    root, rnd = root_hash(data), random.Random(bit)
    proof = inclusion_proof(data, index)
    if proof:
        k = rnd.randrange(len(proof))
        proof[k] = _flip_byte(proof[k], bit)
        with pytest.raises(VerificationError):
            verify_inclusion(leaf_hash(data[index]), index, n, proof, root)
    cproof = consistency_proof(data, size1)
    k = rnd.randrange(len(cproof))
    cproof[k] = _flip_byte(cproof[k], bit)
    with pytest.raises(VerificationError):
        verify_consistency(size1, n, cproof, root_hash(data[:size1]), root)
