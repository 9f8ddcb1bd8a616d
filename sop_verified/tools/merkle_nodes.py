"""What a stored log needs: a compact range, and proofs from stored subtree roots.

A stored log keeps the hash of every *complete* subtree, addressed as
``(level, index)``: the node at level ``l`` and index ``i`` is the root of
leaves ``[i * 2**l, (i + 1) * 2**l)`` (level 0 holds the leaf hashes).
:class:`CompactRange` keeps, in ``O(log n)`` memory, the roots of the complete
subtrees that make up ``[0, n)``, appends a leaf in ``O(1)`` amortized and
reports each node it completes so the log can store it. The ``*_from_nodes``
functions build RFC 9162 proofs from ``O(log n)`` node reads, through a
``get_node(level, index)`` callback; the ``*_plan`` functions list those reads
up front so storage can fetch them in one query.

Everything here is checked against :mod:`sop_verified.tools.merkle`, the
list-based implementation (tests/tools/test_merkle.py).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence

from sop_verified.errors import InputError, IntegrityError
from sop_verified.tools.merkle import EMPTY_ROOT, HASH_SIZE, MAX_TREE_SIZE, node_hash

__all__ = [
    "CompactRange",
    "GetNode",
    "NodeId",
    "NodeVisitor",
    "Plan",
    "consistency_plan",
    "consistency_proof_from_nodes",
    "inclusion_plan",
    "inclusion_proof_from_nodes",
    "proof_from_plan",
    "range_nodes",
    "root_from_range",
    "root_from_range_plan",
]

NodeId = tuple[int, int]
"""``(level, index)`` of a complete subtree."""

GetNode = Callable[[int, int], bytes]
"""Returns the stored hash of the complete subtree ``(level, index)``."""

NodeVisitor = Callable[[int, int, bytes], None]
"""Receives ``(level, index, hash)`` of each complete subtree an append creates."""

Plan = list[tuple[NodeId, ...]]
"""One tuple of node ids per proof element; an element is the right-to-left fold of its nodes."""


def _check_number(value: object, what: str, low: int, high: int) -> int:
    if not isinstance(value, int) or isinstance(value, bool):
        raise TypeError(f"{what} must be an int, not `{type(value).__name__}`")
    if not low <= value <= high:
        raise InputError(
            f"{what} `{value}` is out of range", accepted=f"an integer in `[{low}, {high}]`"
        )
    return value


def range_nodes(begin: int, end: int) -> tuple[NodeId, ...]:
    """Return the complete subtrees that make up ``[begin, end)``, left to right.

    ``begin`` must be a multiple of the smallest power of two ``>= end - begin``
    (true of every range a proof or a compact range asks for); folding their
    hashes from the right gives MTH of the range.

    Args:
        begin: First leaf of the range.
        end: One past the last leaf.

    Returns:
        The node ids, largest subtree first.
    """
    width = end - begin
    if width & (width - 1) == 0 and width:  # one complete subtree, the common case
        level = width.bit_length() - 1
        return ((level, begin >> level),)
    ids = []
    while width:
        level = width.bit_length() - 1
        ids.append((level, begin >> level))
        begin += 1 << level
        width -= 1 << level
    return tuple(ids)


def _largest_power_below(width: int) -> int:
    """k of RFC 9162 §2.1.1: the largest power of two smaller than ``width`` (> 1)."""
    return 1 << ((width - 1).bit_length() - 1)


def inclusion_plan(size: int, index: int) -> Plan:
    """List the stored nodes behind each element of the inclusion proof.

    Below the level where the paths to ``index`` and ``size - 1`` part, the
    proof holds the sibling at each level; the highest of these may be the
    tree's ragged right edge, made of several complete subtrees. Above it, it
    holds the left sibling at each level where ``index`` is a right child.

    Args:
        size: Tree size, ``0 < size < 2**64``.
        index: Leaf index, ``0 <= index < size``.

    Returns:
        One tuple of node ids per proof element, lowest level first; an
        element is the right-to-left fold of its nodes' hashes.

    Raises:
        InputError: ``size`` or ``index`` is out of range.
        TypeError: ``size`` or ``index`` is not an int.
    """
    _check_number(size, "tree size", 1, MAX_TREE_SIZE)
    _check_number(index, "leaf index", 0, size - 1)
    inner = (index ^ (size - 1)).bit_length()
    plan: Plan = []
    for level in range(inner):
        sibling = (index >> level) ^ 1
        if (sibling + 1) << level <= size:
            plan.append(((level, sibling),))
        else:  # only the highest inner sibling can stick out past the tree's edge
            plan.append(range_nodes(sibling << level, size))
    rest, level = index >> inner, inner
    while rest:
        if rest & 1:
            plan.append(((level, rest ^ 1),))
        rest >>= 1
        level += 1
    return plan


def consistency_plan(size1: int, size2: int) -> Plan:
    """List the stored nodes behind each element of the consistency proof.

    Walks RFC 9162's SUBPROOF(m, D[n], b) from the top.

    Args:
        size1: Earlier size, ``0 < size1 <= size2``; equal sizes give ``[]``.
        size2: Later size, ``size2 < 2**64``.

    Returns:
        One tuple of node ids per proof element, in proof order.

    Raises:
        InputError: a size is out of range.
        TypeError: a size is not an int.
    """
    _check_number(size2, "second tree size", 1, MAX_TREE_SIZE)
    _check_number(size1, "first tree size", 1, size2)
    plan: Plan = []
    start, width, m, whole = 0, size2, size1, True
    while m != width:
        k = _largest_power_below(width)
        if m <= k:  # SUBPROOF(m, D[0:k], b) : MTH(D[k:n])
            plan.append(range_nodes(start + k, start + width))
            width = k
        else:  # SUBPROOF(m - k, D[k:n], false) : MTH(D[0:k])
            level = k.bit_length() - 1
            plan.append(((level, start >> level),))
            start, width, m, whole = start + k, width - k, m - k, False
    if not whole:  # SUBPROOF(m, D[m], false) = MTH(D[m]), a complete subtree here
        plan.append(range_nodes(start, start + width))
    plan.reverse()
    return plan


def _fetch(node: NodeId, get_node: GetNode) -> bytes:
    value = get_node(*node)
    if type(value) is not bytes or len(value) != HASH_SIZE:
        raise IntegrityError(f"stored node `{node}` is not a {HASH_SIZE}-byte hash")
    return value


def _fold(hashes: Sequence[bytes]) -> bytes:
    acc = hashes[-1]
    for h in reversed(hashes[:-1]):
        acc = node_hash(h, acc)
    return acc


def proof_from_plan(plan: Iterable[tuple[NodeId, ...]], get_node: GetNode) -> list[bytes]:
    """Read a plan's nodes and fold each element.

    Args:
        plan: From :func:`inclusion_plan` or :func:`consistency_plan`.
        get_node: Returns the stored hash of a complete subtree.

    Returns:
        The proof hashes.

    Raises:
        IntegrityError: ``get_node`` returned something other than a 32-byte hash.
    """
    proof = []
    for nodes in plan:
        if len(nodes) == 1:
            proof.append(_fetch(nodes[0], get_node))
        else:
            proof.append(_fold([_fetch(n, get_node) for n in nodes]))
    return proof


def inclusion_proof_from_nodes(size: int, index: int, get_node: GetNode) -> list[bytes]:
    """Return the RFC 9162 inclusion proof for ``index`` at ``size`` from stored nodes.

    Args:
        size: Tree size.
        index: Leaf index, ``0 <= index < size``.
        get_node: Returns the stored hash of a complete subtree.

    Returns:
        The audit path, equal to :func:`sop_verified.tools.merkle.inclusion_proof`.

    Raises:
        InputError: ``size`` or ``index`` is out of range.
        IntegrityError: ``get_node`` returned something other than a 32-byte hash.
    """
    return proof_from_plan(inclusion_plan(size, index), get_node)


def consistency_proof_from_nodes(size1: int, size2: int, get_node: GetNode) -> list[bytes]:
    """Return the RFC 9162 consistency proof from ``size1`` to ``size2`` from stored nodes.

    Args:
        size1: Earlier size, ``0 < size1 <= size2``.
        size2: Later size.
        get_node: Returns the stored hash of a complete subtree.

    Returns:
        The proof, equal to :func:`sop_verified.tools.merkle.consistency_proof`.

    Raises:
        InputError: a size is out of range.
        IntegrityError: ``get_node`` returned something other than a 32-byte hash.
    """
    return proof_from_plan(consistency_plan(size1, size2), get_node)


def root_from_range_plan(size: int, begin: int, end: int) -> list[NodeId]:
    """List the stored nodes that, with the leaves ``[begin, end)``, give the root at ``size``.

    They are the complete subtrees of RFC 9162's split that lie wholly outside
    the range: ``O(log size)`` of them, so that a contiguous range of entries is
    checked against a signed root with one hash per leaf and node of the range,
    rather than one inclusion proof per entry.

    Args:
        size: Tree size, ``0 < size < 2**64``.
        begin: First leaf of the range.
        end: One past the last, ``begin < end <= size``.

    Returns:
        The node ids, left to right.

    Raises:
        InputError: ``size`` or the range is out of range.
        TypeError: an argument is not an int.
    """
    _check_number(size, "tree size", 1, MAX_TREE_SIZE)
    _check_number(begin, "first leaf", 0, size - 1)
    _check_number(end, "end of the range", begin + 1, size)
    ids: list[NodeId] = []

    def visit(lo: int, hi: int) -> None:
        if begin <= lo and hi <= end:
            return  # computed from the range's own leaves
        width = hi - lo
        if (hi <= begin or end <= lo) and width & (width - 1) == 0:
            level = width.bit_length() - 1
            ids.append((level, lo >> level))
            return
        k = _largest_power_below(width)  # a ragged outside edge, or a part of the range
        visit(lo, lo + k)
        visit(lo + k, hi)

    visit(0, size)
    return ids


def root_from_range(
    size: int, begin: int, leaf_hashes: Sequence[bytes], nodes: Mapping[NodeId, bytes]
) -> bytes:
    """MTH of the tree of ``size`` from the leaf hashes of ``[begin, begin + len)`` and
    the nodes :func:`root_from_range_plan` lists.

    Equal to the signed root, it proves every leaf of the range is the one the
    tree holds at its index, as an inclusion proof per leaf would.

    Args:
        size: Tree size.
        begin: Index of the first leaf hash.
        leaf_hashes: The range's leaf hashes, in order (at least one).
        nodes: The planned nodes' hashes.

    Returns:
        The root.

    Raises:
        IntegrityError: a planned node is missing or not a 32-byte hash.
        InputError: ``size`` or the range is out of range.
        TypeError: an argument is not an int.
    """
    end = begin + len(leaf_hashes)
    _check_number(size, "tree size", 1, MAX_TREE_SIZE)
    _check_number(begin, "first leaf", 0, size - 1)
    _check_number(end, "end of the range", begin + 1, size)

    def mth(lo: int, hi: int) -> bytes:
        if begin <= lo and hi <= end:
            return _root_of_hashes(leaf_hashes[lo - begin : hi - begin])
        width = hi - lo
        if (hi <= begin or end <= lo) and width & (width - 1) == 0:
            level = width.bit_length() - 1
            return _fetch((level, lo >> level), lambda lv, i: nodes.get((lv, i), b""))
        k = _largest_power_below(width)
        return node_hash(mth(lo, lo + k), mth(lo + k, hi))

    return mth(0, size)


def _root_of_hashes(level: Sequence[bytes]) -> bytes:
    """MTH from leaf hashes, level by level (an unpaired last node moves up as is)."""
    while len(level) > 1:
        up = [node_hash(level[i], level[i + 1]) for i in range(0, len(level) - 1, 2)]
        if len(level) & 1:
            up.append(level[-1])
        level = up
    return level[0]


class CompactRange:
    """The roots of the complete subtrees that make up ``[0, size)``, largest first.

    There is one root per set bit of ``size``, so memory is ``O(log n)``; this
    is the whole state a log needs to keep appending and to compute its root.
    """

    __slots__ = ("_hashes", "_size")

    def __init__(self) -> None:
        """Start an empty range."""
        self._size = 0
        self._hashes: list[bytes] = []

    @classmethod
    def from_state(cls, size: int, hashes: Sequence[bytes]) -> CompactRange:
        """Rebuild a range from its size and its subtree roots (largest first).

        Args:
            size: Number of leaves.
            hashes: One 32-byte root per set bit of ``size``.

        Returns:
            The range.

        Raises:
            InputError: ``size`` is out of range, or ``hashes`` do not fit it.
        """
        _check_number(size, "tree size", 0, MAX_TREE_SIZE)
        if len(hashes) != size.bit_count() or any(
            type(h) is not bytes or len(h) != HASH_SIZE for h in hashes
        ):
            raise InputError(
                f"compact range of size `{size}` has `{len(hashes)}` malformed or misplaced roots",
                accepted=f"`{size.bit_count()}` {HASH_SIZE}-byte hashes",
            )
        rng = cls()
        rng._size = size
        rng._hashes = list(hashes)
        return rng

    @classmethod
    def from_nodes(cls, size: int, get_node: GetNode) -> CompactRange:
        """Rebuild a range from stored nodes with ``O(log n)`` reads (boot).

        Args:
            size: Number of leaves.
            get_node: Returns the stored hash of a complete subtree.

        Returns:
            The range.

        Raises:
            InputError: ``size`` is out of range.
            IntegrityError: ``get_node`` returned something other than a 32-byte hash.
        """
        _check_number(size, "tree size", 0, MAX_TREE_SIZE)
        return cls.from_state(size, [_fetch(n, get_node) for n in range_nodes(0, size)])

    @property
    def size(self) -> int:
        """Number of leaves appended."""
        return self._size

    @property
    def hashes(self) -> tuple[bytes, ...]:
        """The complete subtrees' roots, largest (leftmost) first."""
        return tuple(self._hashes)

    def append(self, leaf_hash: bytes, visit: NodeVisitor | None = None) -> None:
        """Append one leaf hash, merging equal-sized subtrees (amortized O(1)).

        Args:
            leaf_hash: The new leaf's 32-byte hash.
            visit: Called with ``(level, index, hash)`` for the leaf and for
                each complete subtree this append closes, lowest first.

        Raises:
            ValueError: ``leaf_hash`` is not a 32-byte hash, or the range is full.
        """
        if type(leaf_hash) is not bytes or len(leaf_hash) != HASH_SIZE:
            raise ValueError(f"leaf hash must be {HASH_SIZE} bytes")
        index = self._size
        if index >= MAX_TREE_SIZE:
            raise ValueError("the tree holds `2**64 - 1` leaves already")
        stack = self._hashes
        stack.append(leaf_hash)
        if visit is not None:
            visit(0, index, leaf_hash)
        level = 0
        while index & 1:  # a right child closes its parent
            right = stack.pop()
            parent = node_hash(stack.pop(), right)
            stack.append(parent)
            index >>= 1
            level += 1
            if visit is not None:
                visit(level, index, parent)
        self._size += 1

    def root(self) -> bytes:
        """Return the tree's root hash MTH, in O(log n).

        Returns:
            The 32-byte root; :data:`~sop_verified.tools.merkle.EMPTY_ROOT` when empty.
        """
        if not self._hashes:
            return EMPTY_ROOT
        return _fold(self._hashes)
