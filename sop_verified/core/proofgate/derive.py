"""SOP's own obligations, derived from requests and sent through the same gate.

Paths are encoded as regular expressions over z3 strings (the languages of
:class:`~sop_verified.tools.paths.Glob` and
:func:`~sop_verified.tools.paths.z3_well_formed_path`), never with string
predicates such as ``str.prefixof``/``str.contains``: measured here, "prefix
artifacts/drac/ and no '..' implies no '/../'" stayed unknown after 20 s in
string theory while the regex form was proved in 13 ms.

Each function returns an :class:`~sop_verified.core.request.Obligation` in
SMT-LIB text that holds (is unsat) exactly when the property holds:

* :func:`scope_containment` — the target path is in the scope glob (INV-4);
* :func:`narrowing` — every well-formed path a child scope admits, a parent
  scope admits too (attenuation, INV-10);
* :func:`phase_order` — a DRAC phase advance goes exactly one step forward;
* :func:`lineage` — a snapshot's recorded parent chain reaches the approved
  root (resume, INV-7).
"""

from __future__ import annotations

import functools
import hashlib
import threading
from collections.abc import Mapping, Sequence

import z3

from sop_verified.core.contracts import ensure, require
from sop_verified.core.request import Obligation
from sop_verified.errors import InputError
from sop_verified.tools.paths import Glob, check_path, z3_well_formed_path

__all__ = ["MAX_LINEAGE", "lineage", "narrowing", "phase_order", "scope_containment"]

MAX_LINEAGE = 32
_Z3_LOCK = threading.Lock()  # the z3 Python API is not thread-safe on one context


def _obligation(kind: str, source: str) -> Obligation:
    short = hashlib.sha256(source.encode("utf-8")).hexdigest()[:24]
    return Obligation(id=f"{kind}:{short}", format="smt2", source=source)


@functools.lru_cache(maxsize=1024)
def _glob_regex(pattern: str) -> str:
    glob = Glob(pattern, where="scope")
    with _Z3_LOCK:
        return " ".join(z3.simplify(glob.z3_regex()).sexpr().split())


@functools.lru_cache(maxsize=1)
def _well_formed(var: str) -> str:
    with _Z3_LOCK:
        return " ".join(z3_well_formed_path(z3.String(var)).sexpr().split())


def _string(value: str) -> str:
    return '"' + value.replace('"', '""') + '"'


def _globs(scope: str | Sequence[str]) -> list[str]:
    return [scope] if isinstance(scope, str) else list(scope)


def _union(regexes: list[str]) -> str:
    return regexes[0] if len(regexes) == 1 else f"(re.union {' '.join(regexes)})"


@require(lambda scope: bool(scope) and all(_globs(scope)), "non-empty globs", helper=True)
@ensure(lambda result: result.id.startswith("scope:"), helper=True)
def scope_containment(path: str, scope: str | Sequence[str]) -> Obligation:
    """The obligation "``path`` lies inside the scope glob ``scope``" (INV-4).

    Args:
        path: the target resource path (checked with :func:`check_path`).
        scope: the scope glob, or several (the path must lie in their union).

    Returns:
        An obligation that is unsat iff the path is in the glob's language.

    Raises:
        InputError: the path or the glob is malformed.
    """
    return _scope_containment(path, tuple(_globs(scope)))


@functools.lru_cache(maxsize=4096)
def _scope_containment(path: str, globs: tuple[str, ...]) -> Obligation:
    """The obligation for one path and scope (cached: a frozen value, asked for every persist)."""
    path = check_path(path)
    source = (
        "(set-logic QF_S)\n(declare-const p String)\n"
        f"(assert (= p {_string(path)}))\n"
        f"(assert (not (str.in_re p {_union([_glob_regex(g) for g in globs])})))\n"
        "(check-sat)\n"
    )
    return _obligation("scope", source)


@require(lambda parent, child: bool(parent) and bool(child))
@ensure(lambda result: result.id.startswith("narrowing:"))
def narrowing(parent: Sequence[str], child: Sequence[str]) -> Obligation:
    """The obligation "every well-formed path in a ``child`` glob is in a ``parent`` glob" (INV-10).

    Args:
        parent: the parent capability's scope globs.
        child: the derived capability's scope globs.

    Returns:
        An obligation that is unsat iff the child's scopes are contained in the parent's.

    Raises:
        InputError: a glob is malformed.
    """
    kids = _union([_glob_regex(g) for g in child])
    parents = _union([_glob_regex(g) for g in parent])
    source = (
        "(set-logic QF_SLIA)\n(declare-const p String)\n"
        f"(assert {_well_formed('p')})\n"
        f"(assert (str.in_re p {kids}))\n"
        f"(assert (not (str.in_re p {parents})))\n(check-sat)\n"
    )
    return _obligation("narrowing", source)


@require(lambda phases: len(phases) == len(set(phases)))
@ensure(lambda result: result.id.startswith("phase:"))
def phase_order(phases: Sequence[str], current: str, target: str) -> Obligation:
    """The obligation "advancing from ``current`` to ``target`` is one step forward" (DRAC).

    Args:
        phases: the phases in order (distinct names).
        current: the session's current phase.
        target: the requested phase.

    Returns:
        A QF_LIA obligation, unsat iff both are known and ``target`` directly follows ``current``.
    """
    index = {name: i for i, name in enumerate(phases)}
    cur, nxt = index.get(current, -1), index.get(target, -1)
    source = (
        "(set-logic QF_LIA)\n(declare-const cur Int)\n(declare-const nxt Int)\n"
        f"(assert (! (= cur {_int(cur)}) :named current))\n"
        f"(assert (! (= nxt {_int(nxt)}) :named target))\n"
        f"(assert (! (not (and (<= 0 cur) (< nxt {len(phases)}) (= nxt (+ cur 1))))"
        " :named one_step))\n"
        "(check-sat)\n"
    )
    return _obligation("phase", source)


def _int(value: int) -> str:
    return str(value) if value >= 0 else f"(- {-value})"


@require(lambda snapshot, root: snapshot != "" and root != "")
@ensure(lambda result: result.id.startswith("lineage:"))
def lineage(links: Mapping[str, str | None], snapshot: str, root: str) -> Obligation:
    """The obligation "``snapshot``'s parent chain reaches ``root``" (resume, INV-7).

    Args:
        links: each recorded snapshot id and its parent id (None for a root).
        snapshot: the snapshot to resume.
        root: the approved root it must descend from.

    Returns:
        A QF_UFLIA obligation, unsat iff following ``parent`` from ``snapshot``
        reaches ``root`` within ``len(links)`` steps.

    Raises:
        InputError: more than :data:`MAX_LINEAGE` links.
    """
    if len(links) > MAX_LINEAGE:
        raise InputError(f"lineage has {len(links)} links", accepted=f"at most {MAX_LINEAGE}")
    ids = sorted({snapshot, root, *links, *(p for p in links.values() if p is not None)})
    number = {sid: i for i, sid in enumerate(ids)}
    facts = [
        f"(assert (! (= (parent {number[c]}) {number[p]}) :named link{number[c]}))"
        for c, p in sorted(links.items())
        if p is not None
    ]
    steps, term = [], "s"
    for _ in range(len(links) + 1):
        steps.append(f"(= {term} r)")
        term = f"(parent {term})"
    reach = steps[0] if len(steps) == 1 else f"(or {' '.join(steps)})"
    source = (
        "(set-logic QF_UFLIA)\n(declare-fun parent (Int) Int)\n"
        "(declare-const s Int)\n(declare-const r Int)\n"
        f"(assert (! (= s {number[snapshot]}) :named snapshot))\n"
        f"(assert (! (= r {number[root]}) :named root))\n"
        + "\n".join(facts)
        + f"\n(assert (! (not {reach}) :named reaches_root))\n(check-sat)\n"
    )
    return _obligation("lineage", source)
