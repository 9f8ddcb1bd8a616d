"""The Capability_Registry: admission, attenuation, revocation and the hot-path check.

A capability is admitted by an operator (:meth:`CapabilityRegistry.admit`) or
derived from one by its holder (:meth:`CapabilityRegistry.attenuate`), which
may only narrow it (INV-10: actions a subset, every resource glob's language
proved by Z3 to lie within the parent's, validity window inside the
parent's). Revoking a capability revokes its whole subtree, and
:meth:`CapabilityRegistry.check` also walks the ancestor chain, so a
descendant is dead whenever any ancestor is revoked (INV-10).

Every admission and revocation is written through the injected
:class:`~sop_verified.core.ports.CapabilityStore` (write-once by id) and
reloaded from it at construction. Tokens are described in
:mod:`sop_verified.core.captoken`; claims in :mod:`sop_verified.core.capclaims`.
Time comes from the injected clock: valid iff ``not_before <= now < expires``.
"""

from __future__ import annotations

import secrets
import threading
from collections.abc import Callable, Iterable, Mapping, Sequence

import orjson

from sop_verified.core.attenuation import check_attenuation
from sop_verified.core.capclaims import Capability, normalize_actions, normalize_resources
from sop_verified.core.captoken import TokenCodec
from sop_verified.core.captree import CapabilityRecord, load_tree
from sop_verified.core.contracts import ensure, invariant
from sop_verified.core.ports import CapabilityStore, Clock
from sop_verified.core.request import Request
from sop_verified.errors import AttenuationError, CapabilityError

__all__ = ["Capability", "CapabilityRegistry", "Entropy"]

Entropy = Callable[[int], bytes]
"""Returns ``n`` random bytes (injected; defaults to :func:`secrets.token_bytes`)."""

_ID_BYTES = 16
_ID_ATTEMPTS = 8
_TOKEN_CACHE_MAX = 4096


def _refuse(exc: CapabilityError) -> AttenuationError:
    return AttenuationError(
        f"parent capability refused: {exc}", code=exc.code, capability_id=exc.capability_id
    )


@invariant(lambda self: len(self._tokens) <= _TOKEN_CACHE_MAX, "the token cache is bounded")
class CapabilityRegistry:
    """Admitted capabilities, their derivation tree and revocations; checks tokens."""

    def __init__(
        self,
        store: CapabilityStore,
        key: bytes,
        key_id: str,
        now: Clock,
        entropy: Entropy = secrets.token_bytes,
        *,
        verify_keys: Mapping[str, bytes] | None = None,
    ) -> None:
        """Load the admitted capabilities and revocations from ``store``.

        Args:
            store: the durable capability store.
            key: the HMAC-SHA256 key new tokens are minted with (>= 32 random bytes).
            key_id: its id, written into every token (key rotation).
            now: the clock, integer Unix seconds.
            entropy: the source of random capability ids.
            verify_keys: retired keys still accepted when checking tokens.

        Raises:
            ValueError: a key or key id is unusable.
            IntegrityError: the stored capabilities or revocations disagree with themselves.
            StorageError: the store failed.
        """
        self._store = store
        self._codec = TokenCodec(key_id, key, verify_keys)
        self._now = now
        self._entropy = entropy
        self._lock = threading.RLock()
        self._tokens: dict[str, CapabilityRecord] = {}
        self._tree = load_tree(store)

    # -- the hot path ---------------------------------------------------------------

    @ensure(
        lambda request, result: (
            result.principal == request.principal and request.action in result.actions
        ),
        "the capability is the requester's and grants the action",
    )
    def check(self, token: str, request: Request) -> Capability:
        """Return the capability ``token`` grants for ``request``, or raise.

        Args:
            token: the untrusted capability token the request presents.
            request: the parsed request (principal, action, resource).

        Returns:
            The covering capability.

        Raises:
            CapabilityError: code ``malformed``, ``forged``, ``unknown``,
                ``tampered``, ``revoked``, ``not_yet_valid``, ``expired``,
                ``wrong_principal``, ``action_not_covered`` or ``resource_not_covered``.
        """
        return self._check(token, request, self._clock())

    @ensure(lambda pairs, result: len(result) == len(pairs), "one answer per request")
    def check_many(
        self, pairs: Sequence[tuple[str, Request]]
    ) -> list[Capability | CapabilityError]:
        """:meth:`check` for each (token, request), at one instant; contracts checked once.

        Args:
            pairs: the tokens and the parsed requests they are presented with.

        Returns:
            Per pair, in order: the covering capability, or the
            :class:`CapabilityError` :meth:`check` would raise (returned, not raised).
        """
        now = self._clock()
        out: list[Capability | CapabilityError] = []
        for token, request in pairs:
            try:
                out.append(self._check(token, request, now))
            except CapabilityError as exc:
                out.append(exc)
        return out

    def _check(self, token: str, request: Request, now: int) -> Capability:
        record = self._tokens.get(token) if type(token) is str else None
        if record is None:
            record = self._verify(token)
            self._remember(token, record)
        self._check_live(record, now)
        _check_covers(record.cap, request)
        return record.cap

    @ensure(
        lambda self, result: result.id in self._tree.records and not self._tree.is_dead(result.id),
        "a live capability",
    )
    def holder(self, token: str) -> Capability:
        """The live capability ``token`` stands for, without any coverage check.

        Used by the admin plane before attenuating, to derive the narrowing
        obligation from the parent's scopes.

        Raises:
            CapabilityError: the token is malformed, forged, unknown, tampered,
                revoked, not yet valid or expired.
        """
        record = self._tokens.get(token) if type(token) is str else None
        if record is None:
            record = self._verify(token)
        self._check_live(record, self._clock())
        return record.cap

    def _remember(self, token: str, record: CapabilityRecord) -> None:
        with self._lock:
            if len(self._tokens) >= _TOKEN_CACHE_MAX:
                del self._tokens[next(iter(self._tokens))]
            self._tokens[token] = record

    def _verify(self, token: object) -> CapabilityRecord:
        """MAC (constant time), then admitted, then identical to the admitted record."""
        key_id, claims = self._codec.open(token)
        known = self._tree.records.get(_claimed_id(claims))
        if known is not None and known.claims == claims and known.cap.key_id == key_id:
            return known  # byte-identical to the admitted (canonical) record
        cap = Capability.from_claims(claims)  # strict parse, to say precisely what is wrong
        if cap.key_id != key_id:
            raise CapabilityError(
                f"token key id `{key_id}` differs from its claims' `{cap.key_id}`",
                code="malformed",
                capability_id=cap.id,
            )
        record = self._tree.records.get(cap.id)
        if record is None:
            raise CapabilityError(
                f"capability `{cap.id}` was never admitted", code="unknown", capability_id=cap.id
            )
        if record.claims != claims:
            raise CapabilityError(
                f"token claims of capability `{cap.id}` differ from the admitted record",
                code="tampered",
                capability_id=cap.id,
            )
        return record

    def _check_live(self, record: CapabilityRecord, now: int) -> None:
        cap = record.cap
        revoked = self._tree.revoked
        if not revoked.keys().isdisjoint(record.chain):  # spec: INV-10 — self or an ancestor
            dead = sorted(record.chain & revoked.keys())
            raise CapabilityError(
                f"capability `{cap.id}` is revoked (revoked: `{', '.join(dead)}`)",
                code="revoked",
                capability_id=cap.id,
            )
        if now < cap.not_before:
            raise CapabilityError(
                f"capability `{cap.id}` is not valid before `{cap.not_before}`, now is `{now}`",
                code="not_yet_valid",
                capability_id=cap.id,
            )
        if now >= cap.expires:
            raise CapabilityError(
                f"capability `{cap.id}` expired at `{cap.expires}`, now is `{now}`",
                code="expired",
                capability_id=cap.id,
            )

    def _clock(self) -> int:
        now = self._now()
        if type(now) is not int:
            raise TypeError(f"the clock returned `{now!r:.40}`, not integer seconds")
        return now

    # -- admission and attenuation --------------------------------------------------

    @ensure(lambda result: result[0].parent_id is None, "an admitted capability is a root")
    def admit(
        self,
        principal: str,
        actions: Iterable[str],
        resources: Iterable[str],
        not_before: int,
        expires: int,
    ) -> tuple[Capability, str]:
        """Admit a root capability and return it with its token.

        Args:
            principal: the protocol identity the capability is bound to.
            actions: the granted action names.
            resources: the granted resource globs.
            not_before: first valid second.
            expires: first second no longer valid.

        Returns:
            ``(capability, token)``.

        Raises:
            CapabilityError: code ``malformed``: a claim is invalid.
            StorageError: the store failed; nothing was admitted.
        """
        acts, globs = normalize_actions(actions), normalize_resources(resources)
        with self._lock:
            return self._save(
                parent_id=None,
                principal=principal,
                actions=acts,
                resources=globs,
                not_before=not_before,
                expires=expires,
            )

    @ensure(lambda result: result[0].parent_id is not None, "a derived capability has a parent")
    def attenuate(
        self,
        parent_token: str,
        *,
        actions: Iterable[str],
        resources: Iterable[str],
        not_before: int | None = None,
        expires: int | None = None,
    ) -> tuple[Capability, str]:
        """Derive a narrower capability from a valid one (INV-10).

        The child is bound to the parent's principal. Its actions must be a
        subset of the parent's, each resource glob's language must be proved
        (Z3) to lie within the union of the parent's globs, and its window
        (defaulting to the parent's) must lie inside the parent's.

        Args:
            parent_token: the parent's token; the parent must be valid now.
            actions: the child's actions.
            resources: the child's resource globs.
            not_before: the child's first valid second (default: the parent's).
            expires: the child's expiry (default: the parent's).

        Returns:
            ``(capability, token)`` of the child.

        Raises:
            AttenuationError: the parent is not valid now (its code), or the
                child is wider (``actions_wider``, ``window_wider``,
                ``resources_wider`` with a counterexample path) or its
                resources could not be proved within (``resources_unproved``).
            CapabilityError: code ``malformed``: a claim is invalid.
            StorageError: the store failed; nothing was admitted.
        """
        acts, globs = normalize_actions(actions), normalize_resources(resources)
        parent = self._live_parent(parent_token)
        nb = parent.not_before if not_before is None else not_before
        exp = parent.expires if expires is None else expires
        check_attenuation(parent, acts, globs, nb, exp)  # spec: INV-10 (Z3, outside the lock)
        with self._lock:
            self._live_parent(parent_token)  # not revoked while the proof ran
            return self._save(
                parent_id=parent.id,
                principal=parent.principal,
                actions=acts,
                resources=globs,
                not_before=nb,
                expires=exp,
            )

    def _live_parent(self, token: str) -> Capability:
        try:
            record = self._verify(token)
            self._check_live(record, self._clock())
        except CapabilityError as exc:
            raise _refuse(exc) from None
        return record.cap

    def _save(
        self,
        *,
        parent_id: str | None,
        principal: str,
        actions: frozenset[str],
        resources: tuple[str, ...],
        not_before: int,
        expires: int,
    ) -> tuple[Capability, str]:
        """Build, durably store (first), then index a capability; caller holds the lock."""
        cap = Capability(
            id=self._new_id(),
            parent_id=parent_id,
            principal=principal,
            actions=actions,
            resources=resources,
            not_before=not_before,
            expires=expires,
            issued_at=self._clock(),
            key_id=self._codec.key_id,
        )
        claims = cap.claims_bytes()
        token = self._codec.mint(claims)
        self._store.save_capability(cap.id, parent_id, claims)
        self._tree.add(cap, claims)
        return cap, token

    def _new_id(self) -> str:
        for _ in range(_ID_ATTEMPTS):
            raw = self._entropy(_ID_BYTES)
            if len(raw) != _ID_BYTES:
                raise RuntimeError(f"entropy source returned {len(raw)} bytes, not {_ID_BYTES}")
            cap_id = "cap-" + raw.hex()
            if cap_id not in self._tree.records:
                return cap_id
        raise RuntimeError("entropy source keeps repeating capability ids")

    # -- revocation -----------------------------------------------------------------

    @ensure(lambda self, result: all(self._tree.is_dead(i) for i in result), "all are dead")
    def revoke(self, cap_id: str) -> list[str]:
        """Revoke ``cap_id`` and every descendant (INV-10).

        The revocations are marked in memory first (deny as early as possible),
        then recorded in the store, the given capability first; :meth:`check`
        also walks the ancestor chain, so the first record already kills the subtree.

        Args:
            cap_id: the capability to revoke.

        Returns:
            The ids revoked: ``cap_id`` then its descendants, breadth-first.

        Raises:
            CapabilityError: code ``unknown``: no such capability.
            StorageError: the store failed (the revocations stay in force here).
        """
        with self._lock:
            ids = [cap_id, *self._tree.subtree(cap_id)]
            fresh = [i for i in ids if i not in self._tree.revoked]
            self._tree.mark_revoked(ids, self._clock())  # spec: INV-10 — the whole subtree
            for i in fresh:  # spec: INV-11 — each row written once: a row already there is forged
                self._store.save_revocation(i, self._tree.revoked[i])
            return ids

    @ensure(lambda self: not self._tokens, "no token verified against the old state survives")
    def reload(self) -> None:
        """Rebuild the state from the store (to see other replicas' admissions and revocations).

        Raises:
            IntegrityError: the stored records disagree with themselves; the old state is kept.
            StorageError: the store failed; the old state is kept.
        """
        tree = load_tree(self._store)
        with self._lock:
            self._tree = tree
            self._tokens.clear()

    # -- queries --------------------------------------------------------------------

    @ensure(lambda cap_id, result: result.id == cap_id, "the capability asked for")
    def get(self, cap_id: str) -> Capability:
        """Return the admitted capability ``cap_id``; ``CapabilityError`` (``unknown``) if none."""
        record = self._tree.records.get(cap_id)
        if record is None:
            raise CapabilityError(f"capability `{cap_id!s:.80}` was never admitted", code="unknown")
        return record.cap

    @ensure(lambda cap_id, result: cap_id not in result, "a capability is not its own descendant")
    def descendants(self, cap_id: str) -> list[str]:
        """Return the ids derived (transitively) from ``cap_id``, breadth-first."""
        return self._tree.subtree(cap_id)

    @ensure(lambda self, cap_id, result: (result is None) == (cap_id not in self._tree.revoked))
    def revoked_at(self, cap_id: str) -> int | None:
        """When ``cap_id`` itself was revoked (the time its revocation row holds), or None."""
        return self._tree.revoked.get(cap_id)

    @ensure(lambda self, cap_id, result: result or cap_id not in self._tree.revoked, "INV-10")
    def is_revoked(self, cap_id: str) -> bool:
        """Whether ``cap_id`` or one of its ancestors is revoked; ``unknown`` if not admitted."""
        return self._tree.is_dead(cap_id)

    @ensure(lambda self, result: len(result) == len(self._tree.records), "every one admitted")
    def all(self) -> list[Capability]:
        """Return every admitted capability in admission order."""
        return [r.cap for r in self._tree.records.values()]


def _claimed_id(claims: bytes) -> str:
    """The ``id`` claim of authentic claims, or "" (the strict parse then says why)."""
    try:
        raw = orjson.loads(claims)
    except orjson.JSONDecodeError:
        return ""
    cap_id = raw.get("id") if isinstance(raw, dict) else None
    return cap_id if isinstance(cap_id, str) else ""


def _check_covers(cap: Capability, request: Request) -> None:
    if request.principal != cap.principal:
        raise CapabilityError(
            f"capability `{cap.id}` is bound to `{cap.principal}`, "
            f"presented by `{request.principal}`",
            code="wrong_principal",
            capability_id=cap.id,
        )
    if request.action not in cap.actions:
        raise CapabilityError(
            f"capability `{cap.id}` does not grant `{request.action}`; "
            f"it grants `{', '.join(sorted(cap.actions))}`",
            code="action_not_covered",
            capability_id=cap.id,
        )
    if not any(g.matches(request.resource) for g in cap.globs):
        raise CapabilityError(
            f"capability `{cap.id}` does not cover resource `{request.resource}`; "
            f"it covers `{', '.join(cap.resources)}`",
            code="resource_not_covered",
            capability_id=cap.id,
        )
