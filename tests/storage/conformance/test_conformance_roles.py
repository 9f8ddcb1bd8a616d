"""Conformance: capabilities and revocations, policy sets, verdicts (write-once, durability)."""

from __future__ import annotations

import pytest
from conformance_backends import Opened

from sop_verified.errors import StorageError
from sop_verified.storage.ports import StorageBackend


def test_capabilities_are_write_once_and_kept_in_admission_order(backend: StorageBackend) -> None:
    caps = backend.capabilities
    assert caps.load_capabilities() == []
    caps.save_capability("c2", None, b'{"id":"c2"}')
    caps.save_capability("c1", "c2", b'{"id":"c1"}')
    with pytest.raises(StorageError):
        caps.save_capability("c2", None, b"replaced")
    assert caps.load_capabilities() == [("c2", None, b'{"id":"c2"}'), ("c1", "c2", b'{"id":"c1"}')]


def test_a_revocation_is_written_once(backend: StorageBackend) -> None:
    caps = backend.capabilities
    assert caps.load_revocations() == {}
    caps.save_revocation("c1", 10)
    with pytest.raises(StorageError):  # INV-11: a row already there was not SOP's
        caps.save_revocation("c1", 20)
    caps.save_revocation("c2", 5)
    assert caps.load_revocations() == {"c1": 10, "c2": 5}


def test_the_latest_policy_set_is_active(backend: StorageBackend) -> None:
    policies = backend.policies
    assert policies.load_active_policy_set() is None
    policies.save_policy_set("sha256:1", b"one", 1)
    policies.save_policy_set("sha256:2", b"two", 2)
    assert policies.load_active_policy_set() == ("sha256:2", b"two")
    policies.save_policy_set("sha256:1", b"one", 3)  # re-activating an older set
    assert policies.load_active_policy_set() == ("sha256:1", b"one")


def test_verdicts_are_write_once(backend: StorageBackend) -> None:
    verdicts = backend.verdicts
    assert verdicts.get("sha256:bb") is None and verdicts.digests() == []
    assert verdicts.put_once("sha256:bb", b"first") == b"first"
    assert verdicts.put_once("sha256:bb", b"second") == b"first"  # never replaced
    assert verdicts.put_once("sha256:aa", b"other") == b"other"
    assert verdicts.get("sha256:bb") == b"first"
    assert verdicts.digests() == ["sha256:aa", "sha256:bb"]


def test_every_role_survives_a_reopen(durable: Opened) -> None:
    b = durable.backend
    b.capabilities.save_capability("c1", None, b"claims")
    b.capabilities.save_revocation("c1", 7)
    b.policies.save_policy_set("sha256:1", b"doc", 1)
    b.verdicts.put_once("sha256:aa", b"verdict")
    b = durable.reopen()
    assert b.capabilities.load_capabilities() == [("c1", None, b"claims")]
    assert b.capabilities.load_revocations() == {"c1": 7}
    assert b.policies.load_active_policy_set() == ("sha256:1", b"doc")
    assert b.verdicts.get("sha256:aa") == b"verdict"
    with pytest.raises(StorageError):
        b.capabilities.save_capability("c1", None, b"again")  # write-once across the reopen


def test_a_closed_backend_refuses_writes(opened: Opened) -> None:
    opened.backend.close()
    with pytest.raises(StorageError):
        opened.backend.capabilities.save_capability("c1", None, b"claims")
    opened.backend = opened.kind.open(opened.directory)  # the fixture closes this one
