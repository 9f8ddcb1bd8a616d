"""A real `sop serve` for the server tests: a prepared data directory, certificates, a process.

:func:`prepare` makes a data directory with a policy set that lets ``drac``
persist under ``artifacts/drac/**`` and a capability for it (booted once,
in-process), and client certificates for ``drac`` and ``emp``.
:class:`Served` starts ``python3 -m sop_verified.cli serve`` on ephemeral
ports and reads the JSON line it prints when it listens; :meth:`Served.stop`
sends SIGTERM and returns the exit status; :meth:`Served.kill` is kill -9.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

POLICY = """\
[[policy]]
id = "drac-persists-its-artifacts"
effect = "permit"
principal = ["drac"]
action = ["artifact.persist"]
resource = ["artifacts/drac/**"]
channel = "bridge"
when = 'context.size_bytes <= 1048576'
"""

READ_POLICY = """
[[policy]]
id = "drac-reads-its-artifacts"
effect = "permit"
principal = ["drac"]
action = ["artifact.read"]
resource = ["artifacts/drac/**"]
channel = "bridge"
"""
"""Added by ``prepare(..., reads=True)``: ``drac`` may also read what it persisted."""


@dataclass(frozen=True)
class Prepared:
    """A data directory ready to serve: its capability token and the client certificates."""

    data_dir: Path
    token: str
    certs: dict[str, tuple[Path, Path, Path]]  # principal -> (cert, key, ca)

    def client(self, principal: str = "drac") -> tuple[Path, Path, Path]:
        return self.certs[principal]


def prepare(
    base: Path,
    principals: tuple[str, ...] = ("drac", "emp"),
    *,
    reads: bool = False,
    dsn: str | None = None,
    schema: str = "sop",
) -> Prepared:
    """Initialise ``base/data``, activate :data:`POLICY`, admit a capability, issue certificates.

    With ``reads``, :data:`READ_POLICY` too, and the capability covers ``artifact.read``.
    With ``dsn``, the state is kept in PostgreSQL, in ``schema`` (``sop init --dsn``).
    """
    from sop_verified import SOP
    from sop_verified.server.certs import issue_client

    data_dir = base / "data"
    SOP.init(data_dir, dsn=dsn, schema=schema)
    policies = base / "policies"
    policies.mkdir()
    (policies / "policies.toml").write_text(POLICY + (READ_POLICY if reads else ""))
    with SOP.boot(data_dir) as sop:
        sop.activate_policy(policies)
        _, token = sop.admit(
            "drac",
            ["artifact.persist", "artifact.read"] if reads else ["artifact.persist"],
            ["artifacts/drac/**"],
            expires=int(time.time()) + 86_400,
        )
    certs = {}
    for name in principals:
        issued = issue_client(data_dir, name, base / f"{name}-cert")
        certs[name] = (issued.cert_path, issued.key_path, issued.ca_path)
    return Prepared(data_dir, token, certs)


def request(token: str, n: int, *, allow: bool = True, principal: str = "drac") -> dict[str, Any]:
    """A persist request: ALLOW under ``artifacts/drac/``, DENY (no permit) elsewhere."""
    where = "artifacts/drac" if allow else "artifacts/emp"
    return {
        "request_id": f"r-{n}",
        "principal": principal,
        "action": "artifact.persist",
        "resource": f"{where}/obj-{n}.bin",
        "capability": token,
        "context": {"size_bytes": 5},
    }


class Served:
    """A `sop serve` process on ephemeral ports."""

    def __init__(self, data_dir: Path, *extra: str, timeout: float = 60.0) -> None:
        self.data_dir = data_dir
        cmd = [
            sys.executable,
            "-m",
            "sop_verified.cli",
            "serve",
            "--data-dir",
            str(data_dir),
            "--bridge",
            "127.0.0.1:0",
            "--read",
            "127.0.0.1:0",
            "--json",
            *extra,
        ]
        env = {**os.environ, "COLUMNS": "200"}
        # stderr goes to a file: a pipe nobody reads fills at 64 KiB and then blocks the
        # server's event loop on its next log line (a schemathesis run hung that way)
        self._stderr = tempfile.TemporaryFile(mode="w+", encoding="utf-8")  # noqa: SIM115 - lives as long as the server
        self.proc = subprocess.Popen(
            cmd, stdout=subprocess.PIPE, stderr=self._stderr, text=True, env=env
        )
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        if not line:
            self.proc.wait(timeout)
            err = self.stderr()
            raise RuntimeError(f"sop serve did not start (exit {self.proc.returncode}): {err}")
        self.facts: dict[str, Any] = json.loads(line)
        self.bridge: str = self.facts["bridge"]
        self.read: str = self.facts["read"]
        self.vkey: str = self.facts["vkey"]

    def stop(self, timeout: float = 60.0) -> int:
        """SIGTERM, then the exit status."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(timeout)

    def kill(self) -> None:
        """kill -9 (nothing acknowledged may be lost)."""
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(30)

    def stderr(self) -> str:
        """What the server wrote to standard error so far."""
        self._stderr.seek(0)
        return self._stderr.read()
