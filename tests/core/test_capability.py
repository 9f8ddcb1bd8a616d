"""The Capability_Registry: unforgeable, bound, expiring, revocable, attenuation-only (INV-10)."""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
from collections.abc import Callable

import orjson
import pytest

from sop_verified.core import capability as capability_module
from sop_verified.core.attenuation import check_attenuation
from sop_verified.core.capability import Capability, CapabilityRegistry
from sop_verified.core.captoken import MAX_TOKEN_BYTES, TokenCodec
from sop_verified.core.request import Request
from sop_verified.errors import AttenuationError, CapabilityError, IntegrityError, StorageError
from sop_verified.storage.memory import MemoryStore

KEY = bytes(range(32))
OTHER_KEY = bytes(range(1, 33))
T0 = 1_700_000_000
PERSIST = "artifact.persist"
READ = "artifact.read"


class PinnedClock:
    """A clock the test moves by hand."""

    def __init__(self, t: int = T0) -> None:
        self.t = t

    def __call__(self) -> int:
        return self.t


def make(store: MemoryStore | None = None, clock: PinnedClock | None = None) -> CapabilityRegistry:
    return CapabilityRegistry(store or MemoryStore(), KEY, "k1", clock or PinnedClock())


def request(
    principal: str = "drac", action: str = PERSIST, resource: str = "artifacts/drac/s1/a.bin"
) -> Request:
    return Request(request_id="r-1", principal=principal, action=action, resource=resource)


def admit_root(reg: CapabilityRegistry, **kw: object) -> tuple[Capability, str]:
    args: dict[str, object] = {
        "principal": "drac",
        "actions": [PERSIST, READ],
        "resources": ["artifacts/drac/**"],
        "not_before": T0 - 10,
        "expires": T0 + 3600,
    }
    args.update(kw)
    return reg.admit(**args)  # type: ignore[arg-type]  # test helper forwards typed keywords


def _refusal(reg: CapabilityRegistry, token: object, req: Request | None = None) -> CapabilityError:
    with pytest.raises(CapabilityError) as info:
        reg.check(token, req or request())  # type: ignore[arg-type]  # untrusted tokens may be anything
    return info.value


def denied(reg: CapabilityRegistry, token: object, req: Request | None = None) -> str:
    return _refusal(reg, token, req).code


def split(token: str) -> list[str]:
    return token.split(".")


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


# -- admission and the check ---------------------------------------------------------


def test_admitted_capability_allows_covered_request() -> None:
    reg = make()
    cap, token = admit_root(reg)
    assert reg.check(token, request()) == cap
    assert reg.check(token, request(action=READ, resource="artifacts/drac/x")) == cap
    assert token.startswith("sopcap1.k1.")
    assert cap.parent_id is None
    assert cap.principal == "drac"
    assert cap.issued_at == T0


def test_capability_ids_come_from_the_injected_entropy() -> None:
    draws = iter([bytes(16), bytes(16), b"\x01" * 16])
    reg = CapabilityRegistry(MemoryStore(), KEY, "k1", PinnedClock(), lambda n: next(draws))
    first, _ = admit_root(reg)
    second, _ = admit_root(reg)  # a repeated draw is skipped, not reused
    assert first.id == "cap-" + "00" * 16
    assert second.id == "cap-" + "01" * 16


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("actions", ["artifact.explode"]),
        ("actions", []),
        ("actions", PERSIST),
        ("resources", ["../etc/**"]),
        ("resources", ["/abs/**"]),
        ("resources", []),
        ("principal", "Not A Principal"),
        ("not_before", T0 + 3600),
        ("expires", 2**60),
        ("not_before", True),
    ],
)
def test_admission_rejects_malformed_claims(field: str, value: object) -> None:
    store = MemoryStore()
    reg = make(store)
    with pytest.raises(CapabilityError) as info:
        admit_root(reg, **{field: value})
    assert info.value.code == "malformed"
    assert "`" in str(info.value)
    assert store.snapshot().capabilities == ()


# -- forgery, tampering, unknown -----------------------------------------------------


def _flip_claims_char(token: str) -> str:
    parts = split(token)
    claims = parts[2]
    parts[2] = claims[:5] + ("A" if claims[5] != "A" else "B") + claims[6:]
    return ".".join(parts)


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _non_canonical_mac(token: str) -> str:
    """Same MAC bytes, spelled with non-zero padding bits in the last character."""
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
    last = alphabet.index(token[-1])
    spelled = token[:-1] + alphabet[last | 1]
    assert _unb64(split(spelled)[3]) == _unb64(split(token)[3])
    return spelled


FORGERIES: dict[str, tuple[Callable[[str], object], str]] = {
    "random mac": (lambda t: ".".join([*split(t)[:3], b64(bytes(32))]), "forged"),
    "mac with another key": (
        lambda t: TokenCodec("k1", OTHER_KEY).mint(_unb64(split(t)[2])),
        "forged",
    ),
    "flipped claims character": (_flip_claims_char, "forged"),
    "unknown key id": (lambda t: t.replace("sopcap1.k1.", "sopcap1.k9.", 1), "forged"),
    "truncated": (lambda t: t[:-1], "malformed"),
    "truncated to the claims": (lambda t: ".".join(split(t)[:3]), "malformed"),
    "garbage": (lambda t: "not a token at all", "malformed"),
    "empty": (lambda t: "", "malformed"),
    "wrong prefix": (lambda t: t.replace("sopcap1.", "sopcap2.", 1), "malformed"),
    "extra part": (lambda t: t + ".AAAA", "malformed"),
    "padded base64": (lambda t: t + "=", "malformed"),
    "non-canonical mac base64": (_non_canonical_mac, "malformed"),
    "oversized": (lambda t: t + "A" * MAX_TOKEN_BYTES, "malformed"),
    "not a string": (lambda t: t.encode(), "malformed"),
    "non-ascii": (lambda t: t.replace("k1", "k\u0131", 1), "malformed"),
}


@pytest.mark.parametrize("mutation", sorted(FORGERIES))
def test_forged_token_denied(mutation: str) -> None:
    store = MemoryStore()
    reg = make(store)
    _, token = admit_root(reg)
    mutate, code = FORGERIES[mutation]
    forged = mutate(token)
    assert forged != token
    before = store.snapshot()
    assert denied(reg, forged) == code
    assert store.snapshot() == before


def test_claims_swapped_between_tokens_denied() -> None:
    reg = make()
    _, narrow = admit_root(reg, actions=[READ])
    _, wide = admit_root(reg, actions=[PERSIST, READ], resources=["**"])
    a, b = split(narrow), split(wide)
    assert denied(reg, ".".join([*b[:3], a[3]])) == "forged"
    assert denied(reg, ".".join([*a[:3], b[3]])) == "forged"


def test_tampered_claims_denied() -> None:
    """A holder of the MAC key but not of the store cannot widen an admitted capability."""
    reg = make()
    cap, _ = admit_root(reg, actions=[READ])
    claims = cap.to_claims() | {"actions": [PERSIST, READ]}
    widened = TokenCodec("k1", KEY).mint(orjson.dumps(claims, option=orjson.OPT_SORT_KEYS))
    assert denied(reg, widened) == "tampered"


def test_unadmitted_token_denied() -> None:
    reg = make()
    cap, _ = admit_root(reg)
    claims = cap.to_claims() | {"id": "cap-" + "ab" * 16}
    minted = TokenCodec("k1", KEY).mint(orjson.dumps(claims, option=orjson.OPT_SORT_KEYS))
    assert denied(reg, minted) == "unknown"


def test_non_canonical_claims_denied_even_with_a_valid_mac() -> None:
    reg = make()
    cap, _ = admit_root(reg)
    spaced = orjson.dumps(cap.to_claims(), option=orjson.OPT_SORT_KEYS | orjson.OPT_INDENT_2)
    assert denied(reg, TokenCodec("k1", KEY).mint(spaced)) == "malformed"


# -- time ------------------------------------------------------------------------------


def test_expired_capability_denied() -> None:
    clock = PinnedClock()
    reg = make(clock=clock)
    _, token = admit_root(reg, expires=T0 + 60)
    clock.t = T0 + 61
    assert denied(reg, token) == "expired"


def test_not_yet_valid_denied() -> None:
    clock = PinnedClock()
    reg = make(clock=clock)
    _, token = admit_root(reg, not_before=T0 + 60)
    assert denied(reg, token) == "not_yet_valid"


def test_validity_boundaries_not_before_inclusive_expires_exclusive() -> None:
    clock = PinnedClock()
    reg = make(clock=clock)
    cap, token = admit_root(reg, not_before=T0 + 10, expires=T0 + 20)
    clock.t = T0 + 9
    assert denied(reg, token) == "not_yet_valid"
    for t in (T0 + 10, T0 + 19):
        clock.t = t
        assert reg.check(token, request()) == cap
    clock.t = T0 + 20
    assert denied(reg, token) == "expired"


def test_expiry_applies_to_a_cached_token() -> None:
    clock = PinnedClock()
    reg = make(clock=clock)
    _, token = admit_root(reg, expires=T0 + 5)
    reg.check(token, request())  # now cached
    clock.t = T0 + 5
    assert denied(reg, token) == "expired"


# -- binding and coverage --------------------------------------------------------------


def test_wrong_principal_denied() -> None:
    reg = make()
    _, token = admit_root(reg)
    assert denied(reg, token, request(principal="emp")) == "wrong_principal"


def test_action_not_covered() -> None:
    reg = make()
    _, token = admit_root(reg, actions=[READ])
    assert denied(reg, token, request(action=PERSIST)) == "action_not_covered"


def test_resource_not_covered() -> None:
    reg = make()
    _, token = admit_root(reg)
    assert denied(reg, token, request(resource="artifacts/csp/s1/a.bin")) == "resource_not_covered"
    assert denied(reg, token, request(resource="artifacts/drac")) == "resource_not_covered"


# -- revocation (INV-10) ---------------------------------------------------------------


def test_revoked_denied() -> None:
    reg = make()
    cap, token = admit_root(reg)
    reg.check(token, request())  # cached before revocation
    assert reg.revoke(cap.id) == [cap.id]
    assert denied(reg, token) == "revoked"
    assert reg.is_revoked(cap.id)


def _chain(reg: CapabilityRegistry) -> list[tuple[Capability, str]]:
    root = admit_root(reg)
    child = reg.attenuate(root[1], actions=[PERSIST], resources=["artifacts/drac/s1/**"])
    grandchild = reg.attenuate(child[1], actions=[PERSIST], resources=["artifacts/drac/s1/*.bin"])
    sibling = reg.attenuate(root[1], actions=[READ], resources=["artifacts/drac/s2/**"])
    return [root, child, grandchild, sibling]


def test_revoking_parent_revokes_descendants() -> None:
    store = MemoryStore()
    reg = make(store)
    (root, _), (child, child_tok), (grand, grand_tok), (sib, sib_tok) = _chain(reg)
    assert reg.descendants(root.id) == [child.id, sib.id, grand.id]
    assert reg.revoke(child.id) == [child.id, grand.id]
    assert denied(reg, child_tok) == "revoked"
    assert denied(reg, grand_tok) == "revoked"
    assert reg.check(sib_tok, request(action=READ, resource="artifacts/drac/s2/x")) == sib
    assert dict(store.snapshot().revocations).keys() == {child.id, grand.id}
    assert reg.revoke(root.id) == [root.id, child.id, sib.id, grand.id]
    assert denied(reg, sib_tok, request(action=READ, resource="artifacts/drac/s2/x")) == "revoked"


def test_revoked_ancestor_refuses_new_grandchild() -> None:
    reg = make()
    (root, _), (_, child_tok), _, _ = _chain(reg)
    reg.revoke(root.id)
    with pytest.raises(AttenuationError) as info:
        reg.attenuate(child_tok, actions=[PERSIST], resources=["artifacts/drac/s1/x.bin"])
    assert info.value.code == "revoked"


def test_descendant_admitted_after_ancestor_revocation_is_dead() -> None:
    """A stale replica derives a grandchild after the root was revoked elsewhere:
    the grandchild's own revocation is never recorded, yet it is dead (ancestor walk)."""
    store = MemoryStore()
    fresh = make(store)
    root, root_tok = admit_root(fresh)
    child, child_tok = fresh.attenuate(
        root_tok, actions=[PERSIST], resources=["artifacts/drac/s1/**"]
    )
    stale = make(store)
    fresh.revoke(root.id)
    grand, grand_tok = stale.attenuate(
        child_tok, actions=[PERSIST], resources=["artifacts/drac/s1/*"]
    )
    assert grand.id not in dict(store.snapshot().revocations)
    rebuilt = make(store)
    assert denied(rebuilt, grand_tok) == "revoked"
    assert rebuilt.is_revoked(grand.id)
    assert child.id in rebuilt.descendants(root.id)


def test_revoking_unknown_capability_refused() -> None:
    reg = make()
    with pytest.raises(CapabilityError) as info:
        reg.revoke("cap-" + "00" * 16)
    assert info.value.code == "unknown"


def test_revocation_survives_a_storage_failure_in_memory() -> None:
    store = MemoryStore()
    reg = make(store)
    cap, token = admit_root(reg)
    store.fail_writes = True
    with pytest.raises(StorageError):
        reg.revoke(cap.id)
    assert denied(reg, token) == "revoked"  # fail-closed here; the caller must retry to persist it


# -- attenuation (INV-10) --------------------------------------------------------------


def test_attenuated_capability_is_narrower_at_check() -> None:
    reg = make()
    _, root_tok = admit_root(reg)
    child, tok = reg.attenuate(root_tok, actions=[READ], resources=["artifacts/drac/s1/*.bin"])
    assert child.principal == "drac"
    assert reg.check(tok, request(action=READ, resource="artifacts/drac/s1/a.bin")) == child
    assert denied(reg, tok, request(action=PERSIST)) == "action_not_covered"
    assert (
        denied(reg, tok, request(action=READ, resource="artifacts/drac/s2/a.bin"))
        == "resource_not_covered"
    )


def test_attenuation_cannot_widen_actions() -> None:
    reg = make()
    _, root_tok = admit_root(reg, actions=[READ])
    with pytest.raises(AttenuationError) as info:
        reg.attenuate(root_tok, actions=[READ, PERSIST], resources=["artifacts/drac/**"])
    assert info.value.code == "actions_wider"
    assert f"`{PERSIST}`" in str(info.value)


def test_attenuation_cannot_widen_resources() -> None:
    reg = make()
    _, root_tok = admit_root(reg)
    with pytest.raises(AttenuationError) as info:
        reg.attenuate(root_tok, actions=[READ], resources=["artifacts/**"])
    cx = info.value.counterexample
    assert info.value.code == "resources_wider"
    assert cx is not None
    assert cx.startswith("artifacts/")
    assert not cx.startswith("artifacts/drac/")
    assert f"`{cx}`" in str(info.value)


def test_attenuation_accepts_a_proved_narrower_glob() -> None:
    reg = make()
    _, root_tok = admit_root(reg)
    child, _ = reg.attenuate(root_tok, actions=[READ], resources=["artifacts/drac/s1/*.bin"])
    assert child.resources == ("artifacts/drac/s1/*.bin",)


def test_attenuation_recursive_glob_under_single_level_parent_refused() -> None:
    reg = make()
    _, root_tok = admit_root(reg, resources=["artifacts/drac/*"])
    with pytest.raises(AttenuationError) as info:
        reg.attenuate(root_tok, actions=[READ], resources=["artifacts/drac/**"])
    cx = info.value.counterexample
    assert info.value.code == "resources_wider"
    assert cx is not None
    assert cx.startswith("artifacts/drac/")
    assert cx.count("/") >= 3


@pytest.mark.parametrize(
    ("window", "code"),
    [
        ({"expires": T0 + 3601}, "window_wider"),
        ({"not_before": T0 - 11}, "window_wider"),
        ({"not_before": T0 - 11, "expires": T0}, "window_wider"),
    ],
)
def test_attenuation_cannot_widen_window(window: dict[str, int], code: str) -> None:
    reg = make()
    _, root_tok = admit_root(reg)
    with pytest.raises(AttenuationError) as info:
        reg.attenuate(root_tok, actions=[READ], resources=["artifacts/drac/**"], **window)
    assert info.value.code == code


def test_attenuation_from_invalid_parent_refused() -> None:
    clock = PinnedClock()
    reg = make(clock=clock)
    _, root_tok = admit_root(reg, expires=T0 + 5)
    with pytest.raises(AttenuationError) as forged:
        reg.attenuate(root_tok[:-2] + "AA", actions=[READ], resources=["artifacts/drac/**"])
    assert forged.value.code in {"forged", "malformed"}
    clock.t = T0 + 5
    with pytest.raises(AttenuationError) as expired:
        reg.attenuate(root_tok, actions=[READ], resources=["artifacts/drac/**"])
    assert expired.value.code == "expired"


# -- durability and side effects -------------------------------------------------------


def test_registry_rebuilt_from_store_sees_capabilities_and_revocations() -> None:
    store = MemoryStore()
    reg = make(store)
    (root, root_tok), (child, child_tok), (grand, _), (sib, sib_tok) = _chain(reg)
    reg.revoke(child.id)
    again = make(store)
    assert again.all() == reg.all() == [root, child, grand, sib]
    assert again.get(child.id) == child
    assert [again.is_revoked(c.id) for c in (root, child, grand, sib)] == [False, True, True, False]
    assert again.check(root_tok, request()) == root
    assert denied(again, child_tok) == "revoked"
    assert again.check(sib_tok, request(action=READ, resource="artifacts/drac/s2/y")) == sib


def test_denied_check_changes_nothing_stored() -> None:
    store = MemoryStore()
    reg = make(store)
    _cap, token = admit_root(reg)
    before = store.snapshot()
    for bad in (token[:-1], "garbage", token):
        with pytest.raises(CapabilityError):
            reg.check(bad, request(principal="emp"))
    assert store.snapshot() == before


def test_refused_attenuation_changes_nothing_stored() -> None:
    store = MemoryStore()
    reg = make(store)
    _, token = admit_root(reg)
    before = store.snapshot()
    for kw in (
        {"actions": ["key.rotate"], "resources": ["artifacts/drac/**"]},
        {"actions": [READ], "resources": ["artifacts/**"]},
        {"actions": [READ], "resources": ["artifacts/drac/**"], "expires": T0 + 9999},
    ):
        with pytest.raises(AttenuationError):
            reg.attenuate(token, **kw)
    assert store.snapshot() == before
    assert len(reg.all()) == 1


def test_storage_failure_admits_nothing() -> None:
    store = MemoryStore()
    reg = make(store)
    store.fail_writes = True
    with pytest.raises(StorageError):
        admit_root(reg)
    assert reg.all() == []
    assert store.snapshot().capabilities == ()


def test_rotated_key_still_verifies_old_tokens_only_when_kept() -> None:
    store = MemoryStore()
    cap, old_token = admit_root(make(store))
    rotated = CapabilityRegistry(store, OTHER_KEY, "k2", PinnedClock(), verify_keys={"k1": KEY})
    assert rotated.check(old_token, request()) == cap
    _, new_token = admit_root(rotated)
    assert new_token.startswith("sopcap1.k2.")
    dropped = CapabilityRegistry(store, OTHER_KEY, "k2", PinnedClock())
    assert denied(dropped, old_token) == "forged"


def test_short_key_refused() -> None:
    with pytest.raises(ValueError, match="at least 32"):
        CapabilityRegistry(MemoryStore(), b"short", "k1", PinnedClock())


# -- integrity of what was stored ------------------------------------------------------


def _wider_child(store: MemoryStore) -> None:
    reg = make(store)
    root, root_tok = admit_root(reg, actions=[READ])
    child, _ = reg.attenuate(root_tok, actions=[READ], resources=["artifacts/drac/x"])
    claims = child.to_claims() | {"id": "cap-" + "cd" * 16, "actions": [PERSIST, READ]}
    store.save_capability(claims["id"], root.id, orjson.dumps(claims, option=orjson.OPT_SORT_KEYS))


CORRUPTIONS: dict[str, Callable[[MemoryStore], None]] = {
    "unreadable claims": lambda s: s.save_capability("cap-" + "00" * 16, None, b"not json"),
    "id disagrees with claims": lambda s: s.save_capability(
        "cap-" + "11" * 16, None, s.load_capabilities()[0][2]
    ),
    "unknown parent": lambda s: s.save_capability(
        "cap-" + "22" * 16,
        "cap-" + "33" * 16,
        orjson.dumps(
            Capability.from_claims(s.load_capabilities()[0][2]).to_claims()
            | {"id": "cap-" + "22" * 16, "parent_id": "cap-" + "33" * 16},
            option=orjson.OPT_SORT_KEYS,
        ),
    ),
    "revocation of unknown capability": lambda s: s.save_revocation("cap-" + "44" * 16, T0),
    "child wider than parent": _wider_child,
}


ALARMS = {
    "unreadable claims": "is unreadable",
    "id disagrees with claims": "disagrees with its claims",
    "unknown parent": "names unknown parent",
    "revocation of unknown capability": "revocation names unknown capability",
    "child wider than parent": "is wider than its parent",
}


@pytest.mark.parametrize("corruption", sorted(CORRUPTIONS))
def test_corrupted_store_raises_integrity_alarm(corruption: str) -> None:
    store = MemoryStore()
    admit_root(make(store))
    CORRUPTIONS[corruption](store)
    with pytest.raises(IntegrityError, match=ALARMS[corruption]):
        make(store)


def test_reload_sees_another_replicas_revocation() -> None:
    store = MemoryStore()
    here = make(store)
    cap, token = admit_root(here)
    here.check(token, request())  # cached
    there = make(store)
    there.revoke(cap.id)
    assert here.check(token, request()) == cap  # not yet seen
    here.reload()
    assert denied(here, token) == "revoked"


def test_parent_revoked_while_the_proof_runs_refuses_child(monkeypatch: pytest.MonkeyPatch) -> None:
    store = MemoryStore()
    reg = make(store)
    root, token = admit_root(reg)

    def revoke_meanwhile(*args: object) -> None:
        check_attenuation(*args)  # type: ignore[arg-type]  # forwards the registry's arguments
        reg.revoke(root.id)

    monkeypatch.setattr(capability_module, "check_attenuation", revoke_meanwhile)
    with pytest.raises(AttenuationError) as info:
        reg.attenuate(token, actions=[READ], resources=["artifacts/drac/s1/**"])
    assert info.value.code == "revoked"
    assert [c.id for c in reg.all()] == [root.id]


def test_a_token_under_another_kept_key_than_its_claims_name_is_refused() -> None:
    # Claims admitted under k1, wrapped with the MAC of a retired key k0 the registry still
    # accepts: the MAC verifies, but the token's key id must be the one its claims name.
    reg = CapabilityRegistry(MemoryStore(), KEY, "k1", PinnedClock(), verify_keys={"k0": OTHER_KEY})
    cap, token = admit_root(reg)
    rewrapped = TokenCodec("k0", OTHER_KEY).mint(_unb64(split(token)[2]))
    for _ in range(2):  # the same answer once the genuine token is cached
        exc = _refusal(reg, rewrapped)
        assert (exc.code, exc.capability_id) == ("malformed", cap.id)
        assert str(exc) == "token key id `k0` differs from its claims' `k1`"
        reg.check(token, request())


def test_every_refusal_of_a_genuine_token_names_its_capability() -> None:
    clock = PinnedClock()
    reg = make(clock=clock)
    cap, token = admit_root(reg, actions=[READ])
    exc = _refusal(reg, token, request(action=PERSIST))
    assert (exc.code, exc.capability_id) == ("action_not_covered", cap.id)
    assert "it grants `artifact.read`" in str(exc)
    exc = _refusal(reg, token, request(action=READ, resource="artifacts/csp/x"))
    assert (exc.code, exc.capability_id) == ("resource_not_covered", cap.id)
    assert "it covers `artifacts/drac/**`" in str(exc)
    exc = _refusal(reg, token, request(principal="emp", action=READ))
    assert (exc.code, exc.capability_id) == ("wrong_principal", cap.id)
    clock.t = T0 - 11
    exc = _refusal(reg, token)
    assert (exc.code, exc.capability_id) == ("not_yet_valid", cap.id)
    clock.t = T0 + 3600
    exc = _refusal(reg, token)
    assert (exc.code, exc.capability_id) == ("expired", cap.id)
    clock.t = T0
    reg.revoke(cap.id)
    exc = _refusal(reg, token)
    assert (exc.code, exc.capability_id) == ("revoked", cap.id)
    assert str(exc) == f"capability `{cap.id}` is revoked (revoked: `{cap.id}`)"


def test_an_unadmitted_or_tampered_token_names_the_capability_it_claims() -> None:
    reg = make()
    cap, _ = admit_root(reg, actions=[READ])
    other = cap.to_claims() | {"id": "cap-" + "ab" * 16}
    minted = TokenCodec("k1", KEY).mint(orjson.dumps(other, option=orjson.OPT_SORT_KEYS))
    exc = _refusal(reg, minted)
    assert (exc.code, exc.capability_id) == ("unknown", other["id"])
    widened = cap.to_claims() | {"actions": [PERSIST, READ]}
    minted = TokenCodec("k1", KEY).mint(orjson.dumps(widened, option=orjson.OPT_SORT_KEYS))
    exc = _refusal(reg, minted)
    assert (exc.code, exc.capability_id) == ("tampered", cap.id)


_CLAIMS = {
    "id": "cap-" + "ab" * 16,
    "parent_id": None,
    "principal": "drac",
    "actions": [READ],
    "resources": ["artifacts/drac/**"],
    "not_before": 10,
    "expires": 20,
    "issued_at": 10,
    "key_id": "k1",
}
_NAMES = "`actions`, `expires`, `id`, `issued_at`, `key_id`, `not_before`, `parent_id`, "
_NAMES += "`principal`, `resources`"
_TIME = "accepted: integer Unix seconds in 0..9007199254740991"


def _claims(**kw: object) -> bytes:
    return orjson.dumps(_CLAIMS | kw, option=orjson.OPT_SORT_KEYS)


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"{", "claims are not JSON; at `claims`"),
        (b"[]", f"claims have the wrong names `list`; at `claims`; accepted: {_NAMES}"),
        (
            orjson.dumps({k: v for k, v in _CLAIMS.items() if k != "key_id"}),
            "claims have the wrong names `['actions', 'expires', 'id', 'issued_at', 'not_before',"
            f" 'parent_id', 'principal', 'resources']`; at `claims`; accepted: {_NAMES}",
        ),
        (_claims(actions=READ), "`actions` must be a list of strings; at `actions`"),
        (_claims(resources=[1]), "`resources` must be a list of strings; at `resources`"),
        (
            _claims(id="cap-x"),
            "malformed capability id `cap-x`; at `id`; accepted: `cap-` and 32 hex",
        ),
        (_claims(parent_id="p"), "malformed parent id `p`; at `parent_id`"),
        (
            _claims(principal="Drac"),
            "malformed principal `Drac`; at `principal`;"
            " accepted: a lowercase protocol identity such as `drac`",
        ),
        (_claims(key_id="K 1"), "malformed key id `K 1`; at `key_id`"),
        (
            _claims(resources=["b/**", "a/**"]),
            "resources must be a sorted tuple of unique globs; at `resources`",
        ),
        (
            _claims(expires=10),
            "empty validity window `10`..`10`; at `expires`;"
            " accepted: `not_before` < `expires` (valid iff not_before <= now < expires)",
        ),
        (
            _claims(issued_at=True),
            f"`issued_at` must be an integer time, got `True`; at `issued_at`; {_TIME}",
        ),
        (
            _claims(not_before=10.5),
            f"`not_before` must be an integer time, got `10.5`; at `not_before`; {_TIME}",
        ),
        (
            orjson.dumps(_CLAIMS, option=orjson.OPT_SORT_KEYS | orjson.OPT_INDENT_2),
            "claims are not in RFC 8785 canonical form; at `claims`",
        ),
    ],
)
def test_malformed_claims_say_what_is_wrong_and_where(data: bytes, message: str) -> None:
    assert Capability.from_claims(_claims()).id == _CLAIMS["id"]  # the base case parses
    with pytest.raises(CapabilityError) as info:
        Capability.from_claims(data)
    assert (info.value.code, str(info.value)) == ("malformed", message)


def _maced(claims_b64: str) -> str:
    """A token whose MAC verifies under `k1`, around any claims text."""
    signing_input = f"sopcap1.k1.{claims_b64}"
    mac = hmac.new(KEY, signing_input.encode(), hashlib.sha256).digest()
    return f"{signing_input}.{b64(mac)}"


_FORMAT = (
    "; at `token`; accepted: `sopcap1.<key id>.<base64url claims>.<base64url mac>`,"
    f" at most {MAX_TOKEN_BYTES} ASCII characters"
)


@pytest.mark.parametrize(
    ("token", "message"),
    [
        (b"sopcap1.k1.e30.AAAA", "token must be a string, got `bytes`"),
        ("A" * (MAX_TOKEN_BYTES + 1), f"token is {MAX_TOKEN_BYTES + 1} characters long"),
        ("A" * MAX_TOKEN_BYTES, "token does not have the capability token structure"),
        ("sopcap1.k1.e30", "token does not have the capability token structure"),
        (_maced("AAAAA"), "token claims is not base64url"),
        (_maced("e31"), "token claims is not canonical base64url"),
    ],
)
def test_a_malformed_token_says_what_is_wrong(token: object, message: str) -> None:
    exc = _refusal(make(), token)
    assert (exc.code, str(exc)) == ("malformed", message + _FORMAT)


@pytest.mark.parametrize(
    ("verify_keys", "message"),
    [
        ({"k1": OTHER_KEY}, "key id `k1` names two different keys"),
        ({"K 1": OTHER_KEY}, "key id `K 1` is not 1-32 characters of `A-Za-z0-9_-`"),
        ({"k0": b"short"}, "mac key `k0` must be at least 32 random bytes"),
    ],
)
def test_unusable_verification_keys_are_refused(
    verify_keys: dict[str, bytes], message: str
) -> None:
    assert TokenCodec("k1", KEY, {"k1": KEY, "k0": OTHER_KEY}).key_id == "k1"  # a usable set
    with pytest.raises(ValueError, match="^" + re.escape(message) + "$"):
        TokenCodec("k1", KEY, verify_keys)


@pytest.mark.parametrize(
    ("times", "ok"),
    [
        ({"not_before": 0, "issued_at": 0}, True),
        ({"expires": 2**53 - 1}, True),
        ({"expires": 2**53}, False),
        ({"not_before": -1}, False),
    ],
)
def test_claim_times_run_from_zero_to_the_largest_exact_json_integer(
    times: dict[str, int], ok: bool
) -> None:
    if ok:
        assert Capability.from_claims(_claims(**times)).expires == times.get("expires", 20)
    else:
        with pytest.raises(CapabilityError, match="must be an integer time"):
            Capability.from_claims(_claims(**times))


def test_a_capability_built_in_code_needs_a_frozenset_of_actions() -> None:
    fields = Capability.from_claims(_claims()).to_claims() | {"actions": [READ]}
    fields["resources"] = tuple(fields["resources"])
    with pytest.raises(CapabilityError) as info:
        Capability(**fields)
    assert str(info.value) == "actions must be a frozenset; at `actions`"


@pytest.mark.parametrize("claims", [bytes([0, 0, 0x17]), b"\x00\x17", b"X" * 7])
def test_any_claims_bytes_survive_the_token_round_trip(claims: bytes) -> None:
    # base64url text may end in any letter of its alphabet (here `X`); only padding is dropped
    codec = TokenCodec("k1", KEY)
    token = codec.mint(claims)
    assert codec.open(token) == ("k1", claims)
