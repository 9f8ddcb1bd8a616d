"""Sealed verdict records: an altered stored record is never trusted (INV-3)."""

from __future__ import annotations

import pytest

from sop_verified.core.proofgate.sealed import SealedVerdictStore, derive_seal_key
from sop_verified.core.proofgate.store import InMemoryVerdictStore
from sop_verified.errors import IntegrityError

KEY = derive_seal_key(b"k" * 32)


def test_round_trip_returns_the_record() -> None:
    store = SealedVerdictStore(InMemoryVerdictStore(), KEY)
    assert store.put_once("sha256:aa", b'{"verdict":"REFUTED"}') == b'{"verdict":"REFUTED"}'
    assert store.get("sha256:aa") == b'{"verdict":"REFUTED"}'
    assert store.get("sha256:bb") is None
    assert store.digests() == ["sha256:aa"]


def test_altered_record_is_refused() -> None:
    inner = InMemoryVerdictStore()
    store = SealedVerdictStore(inner, KEY)
    store.put_once("sha256:aa", b'{"verdict":"REFUTED"}')
    sealed = inner._records["sha256:aa"]
    inner._records["sha256:aa"] = sealed.replace(b"REFUTED", b"PROVED")
    with pytest.raises(IntegrityError, match="fails its seal"):
        store.get("sha256:aa")


def test_record_moved_to_another_digest_is_refused() -> None:
    inner = InMemoryVerdictStore()
    store = SealedVerdictStore(inner, KEY)
    store.put_once("sha256:aa", b'{"verdict":"PROVED"}')
    inner._records["sha256:bb"] = inner._records["sha256:aa"]
    with pytest.raises(IntegrityError):
        store.get("sha256:bb")


def test_a_record_sealed_with_another_key_is_refused() -> None:
    inner = InMemoryVerdictStore()
    SealedVerdictStore(inner, derive_seal_key(b"x" * 32)).put_once("sha256:aa", b"{}")
    with pytest.raises(IntegrityError):
        SealedVerdictStore(inner, KEY).get("sha256:aa")


def test_seal_key_is_separated_from_its_master() -> None:
    assert derive_seal_key(b"k" * 32) != b"k" * 32
    assert len(derive_seal_key(b"k" * 32)) == 32
