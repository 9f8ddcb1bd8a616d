"""A real `sop serve`: its read plane's log checks out from the tiles alone, signature included."""

from __future__ import annotations

import httpx
from served import Prepared, Served
from tiles_client import TilesClient, verify_log


def test_served_log_checks_out_from_its_tiles(prepared: Prepared) -> None:
    served = Served(prepared.data_dir, "--no-admin-socket")  # the read plane is what is tested
    try:
        base = served.read if "://" in served.read else f"http://{served.read}"
        with httpx.Client(base_url=base, timeout=30) as http:
            client = TilesClient(http)
            cp = verify_log(client, served.vkey)
            assert cp.size > 0 and cp.origin
            assert http.get("/log/tile/0/x000/001").status_code == 400
            assert http.get("/log/tile/0/999").status_code == 404
    finally:
        assert served.stop() == 0, served.stderr()
    assert client.fetched[0] == "checkpoint" and "tile/entries/000" in str(client.fetched)
