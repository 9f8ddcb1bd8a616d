"""A `sop witness serve` process for the tests: started on a port, its key, stopped or killed."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import httpx

from sop_verified.tools.cosignature import CosignatureVerifier


class ServedWitness:
    """A `sop witness serve` process, on an ephemeral port unless ``listen`` says which."""

    def __init__(self, directory: Path, listen: str = "127.0.0.1:0") -> None:
        self.directory = directory
        cmd = [
            sys.executable,
            "-m",
            "sop_verified.cli",
            "witness",
            "serve",
            "--dir",
            str(directory),
            "--listen",
            listen,
            "--json",
        ]
        # stderr to a file: a pipe nobody reads would block the server once full
        self._stderr = tempfile.TemporaryFile(mode="w+", encoding="utf-8")  # noqa: SIM115 - lives as long as the server
        self.proc = subprocess.Popen(
            cmd, stdout=subprocess.PIPE, stderr=self._stderr, text=True, env=dict(os.environ)
        )
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        if not line:
            self.proc.wait(30)
            raise RuntimeError(f"witness did not start: {self.stderr()}")
        self.facts: dict[str, Any] = json.loads(line)
        self.url: str = self.facts["url"]
        self.vkey: str = self.facts["vkey"]
        self.verifier = CosignatureVerifier.from_string(self.vkey)

    @property
    def listen(self) -> str:
        """``HOST:PORT`` it listens on (to start it again on the same port)."""
        return self.url.removeprefix("http://")

    def post(self, body: bytes) -> httpx.Response:
        return httpx.post(self.url + "/add-checkpoint", content=body, timeout=30)

    def stop(self) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(30)

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(30)

    def stderr(self) -> str:
        self._stderr.seek(0)
        return self._stderr.read()
