"""Compact range and proofs from stored nodes agree with the list-based tree, in O(log n) reads."""

from __future__ import annotations

import random

import pytest

from sop_verified.errors import InputError, IntegrityError
from sop_verified.tools.merkle import (
    EMPTY_ROOT,
    consistency_proof,
    inclusion_proof,
    leaf_hash,
    root_hash,
    verify_consistency,
    verify_inclusion,
)
from sop_verified.tools.merkle_nodes import (
    CompactRange,
    consistency_plan,
    consistency_proof_from_nodes,
    inclusion_plan,
    inclusion_proof_from_nodes,
    range_nodes,
    root_from_range,
    root_from_range_plan,
)


class Store:
    """A log's node table: every complete subtree a compact range reported."""

    def __init__(self, data: list[bytes]) -> None:
        self.nodes: dict[tuple[int, int], bytes] = {}
        self.reads = 0
        self.range = CompactRange()
        for d in data:
            self.range.append(leaf_hash(d), self.visit)

    def visit(self, level: int, index: int, h: bytes) -> None:
        assert (level, index) not in self.nodes, "a node is reported once"
        self.nodes[(level, index)] = h

    def get(self, level: int, index: int) -> bytes:
        self.reads += 1
        return self.nodes[(level, index)]


def _data(n: int) -> list[bytes]:
    return [i.to_bytes(3, "big") * (i % 5) for i in range(n)]


def test_compact_range_root_matches_every_prefix() -> None:
    data = _data(300)
    rng = CompactRange()
    assert rng.root() == EMPTY_ROOT
    for n, d in enumerate(data, start=1):
        rng.append(leaf_hash(d))
        assert rng.size == n
        assert len(rng.hashes) == n.bit_count()
        assert rng.root() == root_hash(data[:n])


def test_compact_range_reports_exactly_the_complete_subtrees() -> None:
    n = 77
    store = Store(_data(n))
    expected = {(lv, i) for lv in range(8) for i in range(n >> lv)}
    assert set(store.nodes) == expected


@pytest.mark.parametrize("n", [*range(1, 70), 255, 256, 257, 1000])
def test_proofs_from_nodes_equal_list_based_proofs(n: int) -> None:
    data = _data(n)
    store = Store(data)
    indices = range(n) if n < 70 else random.Random(n).sample(range(n), 40)
    for index in indices:
        assert inclusion_proof_from_nodes(n, index, store.get) == inclusion_proof(data, index)
    for size1 in [*range(1, min(n, 70) + 1), n]:
        assert consistency_proof_from_nodes(size1, n, store.get) == consistency_proof(data, size1)


def test_proofs_from_nodes_at_every_older_size() -> None:
    # A log serves proofs for old checkpoints from its current node table.
    data = _data(100)
    store = Store(data)
    for size in range(1, 101):
        for index in (0, size // 2, size - 1):
            got = inclusion_proof_from_nodes(size, index, store.get)
            assert got == inclusion_proof(data[:size], index)
        for size1 in (1, size // 3 or 1, size):
            got = consistency_proof_from_nodes(size1, size, store.get)
            assert got == consistency_proof(data[:size], size1)


def test_proof_reads_are_logarithmic_at_2_to_the_40() -> None:
    reads = 0

    def get(level: int, index: int) -> bytes:
        nonlocal reads
        reads += 1
        return (level * 1_000_003 + index).to_bytes(32, "big")

    size = (1 << 40) + 123_457
    for index in (0, 5, size // 2, size - 2, size - 1):
        reads = 0
        proof = inclusion_proof_from_nodes(size, index, get)
        assert len(proof) <= 41
        assert reads <= 2 * 41
    reads = 0
    consistency_proof_from_nodes(size // 3, size, get)
    assert reads <= 2 * 41


def test_proof_from_nodes_verifies_against_compact_range_root() -> None:
    data = _data(1234)
    store = Store(data)
    root = store.range.root()
    proof = inclusion_proof_from_nodes(1234, 777, store.get)
    verify_inclusion(leaf_hash(data[777]), 777, 1234, proof, root)
    cproof = consistency_proof_from_nodes(1000, 1234, store.get)
    verify_consistency(1000, 1234, cproof, root_hash(data[:1000]), root)


def test_plan_elements_are_complete_aligned_subtrees() -> None:
    for size in range(1, 130):
        for plan in [inclusion_plan(size, i) for i in range(size)] + [
            consistency_plan(m, size) for m in range(1, size + 1)
        ]:
            for nodes in plan:
                for level, index in nodes:
                    assert (index + 1) << level <= size


def test_range_nodes_cover_the_range() -> None:
    assert range_nodes(0, 13) == ((3, 0), (2, 2), (0, 12))
    assert range_nodes(8, 13) == ((2, 2), (0, 12))
    assert range_nodes(0, 0) == ()


def test_compact_range_rebuilt_from_nodes_and_state() -> None:
    data = _data(1000)
    store = Store(data)
    for size in (0, 1, 2, 3, 511, 512, 999, 1000):
        rebuilt = CompactRange.from_nodes(size, store.get)
        assert rebuilt.root() == root_hash(data[:size])
        again = CompactRange.from_state(size, rebuilt.hashes)
        assert again.root() == rebuilt.root()
    rebuilt = CompactRange.from_nodes(600, store.get)
    for d in data[600:]:
        rebuilt.append(leaf_hash(d))
    assert rebuilt.root() == store.range.root()


def test_compact_range_state_must_fit_its_size() -> None:
    good = CompactRange.from_nodes(5, Store(_data(5)).get).hashes
    with pytest.raises(InputError, match="compact range of size `7`"):
        CompactRange.from_state(7, good)
    with pytest.raises(InputError):
        CompactRange.from_state(5, [good[0], good[1][:31]])
    with pytest.raises(InputError, match="tree size `-1`"):
        CompactRange.from_state(-1, [])


def test_corrupt_stored_node_raises_integrity_error() -> None:
    def get(level: int, index: int) -> bytes:
        return b"\x00" * 31

    with pytest.raises(IntegrityError, match="stored node"):
        inclusion_proof_from_nodes(8, 3, get)
    with pytest.raises(IntegrityError):
        CompactRange.from_nodes(8, get)


def test_compact_range_rejects_a_malformed_leaf_hash() -> None:
    rng = CompactRange()
    with pytest.raises(ValueError, match="32 bytes"):
        rng.append(b"short")
    assert rng.size == 0


@pytest.mark.parametrize(("size", "index"), [(0, 0), (8, 8), (8, -1), (2**64, 0)])
def test_inclusion_plan_rejects_out_of_range_arguments(size: int, index: int) -> None:
    with pytest.raises(InputError):
        inclusion_plan(size, index)


@pytest.mark.parametrize(("size1", "size2"), [(0, 8), (9, 8), (1, 0), (1, 2**64)])
def test_consistency_plan_rejects_out_of_range_arguments(size1: int, size2: int) -> None:
    with pytest.raises(InputError):
        consistency_plan(size1, size2)


@pytest.mark.parametrize("n", [*range(1, 40), 255, 256, 257, 1000])
def test_a_range_and_its_planned_nodes_give_the_root(n: int) -> None:
    data = _data(n)
    store = Store(data)
    hashes = [leaf_hash(d) for d in data]
    pairs = [(b, e) for b in range(n) for e in range(b + 1, n + 1)]
    for begin, end in pairs if n < 40 else random.Random(n).sample(pairs, 60):
        plan = root_from_range_plan(n, begin, end)
        assert len(plan) <= 2 * n.bit_length()  # O(log n) stored nodes, never the range's
        nodes = {node: store.get(*node) for node in plan}
        assert root_from_range(n, begin, hashes[begin:end], nodes) == root_hash(data)


@pytest.mark.parametrize("n", [1, 2, 7, 64, 77])
def test_any_changed_leaf_or_node_changes_the_root(n: int) -> None:
    data = _data(n)
    store = Store(data)
    hashes = [leaf_hash(d) for d in data]
    other = leaf_hash(b"forged")
    for begin, end in [(0, n), (n // 3, n // 3 + 1), (n // 2, n)]:
        plan = root_from_range_plan(n, begin, end)
        nodes = {node: store.get(*node) for node in plan}
        for at in range(begin, end):
            forged = list(hashes[begin:end])
            forged[at - begin] = other
            assert root_from_range(n, begin, forged, nodes) != root_hash(data)
        for node in plan:
            assert root_from_range(n, begin, hashes[begin:end], {**nodes, node: other}) != (
                root_hash(data)
            )
        if plan:
            with pytest.raises(IntegrityError, match="stored node"):
                root_from_range(n, begin, hashes[begin:end], dict(list(nodes.items())[1:]))


@pytest.mark.parametrize(("size", "begin", "end"), [(0, 0, 1), (4, 4, 5), (4, 2, 2), (4, 1, 5)])
def test_range_plan_rejects_out_of_range_arguments(size: int, begin: int, end: int) -> None:
    with pytest.raises(InputError):
        root_from_range_plan(size, begin, end)
