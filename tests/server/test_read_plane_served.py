"""A real `sop serve`: its read plane's log checks out from the tiles alone, signature included."""

from __future__ import annotations

import httpx
import pytest
from served import Served
from tiles_client import TilesClient, verify_log

# `sop serve` opens the admin socket, whose module comes from the admin plane's branch
pytest.importorskip("sop_verified.server.admin", reason="sop serve needs the admin plane")


def test_served_log_checks_out_from_its_tiles(served: Served) -> None:
    base = served.read if "://" in served.read else f"http://{served.read}"
    with httpx.Client(base_url=base, timeout=30) as http:
        client = TilesClient(http)
        cp = verify_log(client, served.vkey)
        assert cp.size > 0 and cp.origin
        assert http.get("/log/tile/0/x000/001").status_code == 400
        assert http.get("/log/tile/0/999").status_code == 404
    assert client.fetched[0] == "checkpoint" and "tile/entries/000" in str(client.fetched)
