"""The protocol tests' environment: a booted SOP, the demo's sound policies, tokens, EMP's key."""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass
from pathlib import Path

import orjson
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from sop_verified.core.health import Health
from sop_verified.nexus.demo import SOUND_POLICIES
from sop_verified.nexus.sop import SOP

NOW = 1_800_000_000
EMP_SEED = bytes(range(32))


class Clock:
    """A clock the tests move by hand."""

    def __init__(self) -> None:
        self.t = NOW

    def __call__(self) -> int:
        return self.t


@dataclass
class Env:
    """A booted SOP and what the protocols hold."""

    sop: SOP
    clock: Clock
    data_dir: Path
    drac: str
    emp: str
    csp: str
    emp_key: Ed25519PrivateKey

    def reboot(self, *, ready: bool = True) -> SOP:
        """Close and boot again on the same data directory (READY unless ``ready`` is False)."""
        self.sop.close()
        self.sop = SOP.boot(self.data_dir, now=self.clock)
        if ready:
            assert self.sop.health is Health.READY, self.sop.boot_report
        return self.sop

    def entries(self, start: int = 0) -> list[dict[str, object]]:
        """Log entries from ``start`` on, parsed."""
        store = self.sop.store
        assert store is not None
        return [orjson.loads(p) for _, _, p in store.log.log_entries(start)]

    def log_size(self) -> int:
        """The log's size now."""
        assert self.sop.log is not None
        return self.sop.log.size

    def db(self) -> sqlite3.Connection:
        """A raw connection to SOP's database (what an attacker with the disk holds)."""
        return sqlite3.connect(str(self.data_dir / "sop.db"), isolation_level=None)


def make_env(root: Path, config_text: str | None = None, policies: str = SOUND_POLICIES) -> Env:
    """Init, boot, activate ``policies``, admit the three protocols, register EMP's key."""
    clock = Clock()
    data = root / "data"
    if config_text is None:
        SOP.init(data)
    else:
        from sop_verified.nexus.config import init_data_dir

        init_data_dir(data, config_text=config_text)
    sop = SOP.boot(data, now=clock)
    assert sop.health is Health.READY, sop.boot_report
    policy_dir = root / "policies"
    policy_dir.mkdir()
    (policy_dir / "policies.toml").write_text(policies)
    sop.activate_policy(policy_dir)
    day = NOW + 86_400
    _, drac = sop.admit(
        "drac",
        ["artifact.persist", "artifact.read", "phase.advance"],
        ["artifacts/drac/**"],
        expires=day,
    )
    _, emp = sop.admit(
        "emp", ["verdict.record", "obligation.submit"], ["verdicts/emp/**"], expires=day
    )
    _, csp = sop.admit(
        "csp",
        ["state.persist", "snapshot.seal", "snapshot.resume"],
        ["state/csp/**", "snapshots/csp/**"],
        expires=day,
    )
    key = Ed25519PrivateKey.from_private_bytes(EMP_SEED)
    sop.register_emp_key(key.public_key())
    return Env(sop, clock, data, drac, emp, csp, key)
