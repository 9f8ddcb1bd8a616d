"""The admin plane: its endpoints over a booted SOP, its owner-only socket, the CLI's routing.

The endpoints are driven with Starlette's TestClient; the socket's access rules
with a real uvicorn server on the Unix socket (in a thread) and a client process
running as another uid (``nobody``, 65534; the tests run as root).
"""

from __future__ import annotations

import json
import os
import socket
import stat
import threading
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
import uvicorn
import uvloop
from served import Prepared, Served
from starlette.testclient import TestClient
from typer.testing import CliRunner

from sop_verified.cli import app as cli_app
from sop_verified.core.health import Health
from sop_verified.errors import SOPError
from sop_verified.nexus.demo import SOUND_POLICIES, UNSOUND_POLICIES
from sop_verified.nexus.sop import SOP
from sop_verified.server.admin import AdminProtocol, admin_app, bind_admin_socket, peer_allowed
from sop_verified.server.serve_lock import ServeLock

NOBODY = 65534
needs_root = pytest.mark.skipif(os.getuid() != 0, reason="switching to another uid needs root")


def _policies(tmp: Path, name: str, text: str) -> Path:
    path = tmp / "policies" / name
    path.mkdir(parents=True)
    (path / "policies.toml").write_text(text)
    return path


@pytest.fixture
def booted(tmp_path: Path) -> Iterator[SOP]:
    data = tmp_path / "data"
    SOP.init(data)
    sop = SOP.boot(data)
    assert sop.health is Health.READY, sop.boot_report
    yield sop
    sop.close()


@pytest.fixture
def state(booted: SOP) -> SimpleNamespace:
    """What the admin plane uses of the server's state (``ServerState``'s ``sop``, ``stopping``)."""
    return SimpleNamespace(sop=booted, stopping=False)


@pytest.fixture
def client(state: SimpleNamespace) -> Iterator[TestClient]:
    with TestClient(admin_app(state)) as c:  # type: ignore[arg-type]
        yield c


def _admit(client: TestClient, **kw: Any) -> Any:
    body = {"principal": "drac", "actions": ["artifact.persist"], "resources": ["artifacts/**"]}
    return client.post("/admin/cap/admit", json={**body, "expires": 4_000_000_000, **kw})


def _admin_ops(sop: SOP) -> list[str]:
    entries = [json.loads(p) for _, _, p in sop.store.log.log_entries()]
    return [e["op"] for e in entries if e.get("type") == "admin"]


# ---- the endpoints ------------------------------------------------------------------------------
def test_status_is_sop_status(client: TestClient, booted: SOP) -> None:
    answer = client.get("/admin/status")
    assert answer.status_code == 200
    assert answer.json() == booted.status()


def test_admit_answers_claims_and_token_and_is_logged(client: TestClient, booted: SOP) -> None:
    answer = _admit(client)
    assert answer.status_code == 200, answer.text
    data = answer.json()
    assert set(data) == {"capability", "token"}
    assert booted.capabilities.holder(data["token"]).to_claims() == data["capability"]
    assert _admin_ops(booted)[-2:] == ["capability.admit", "capability.admitted"]


def test_attenuate_then_revoke_kills_the_child(client: TestClient, booted: SOP) -> None:
    parent = _admit(client).json()
    child = client.post(
        "/admin/cap/attenuate",
        json={
            "parent_token": parent["token"],
            "actions": ["artifact.persist"],
            "resources": ["artifacts/drac/*"],
        },
    )
    assert child.status_code == 200, child.text
    assert child.json()["capability"]["parent_id"] == parent["capability"]["id"]
    revoked = client.post("/admin/cap/revoke", json={"capability_id": parent["capability"]["id"]})
    assert revoked.status_code == 200
    assert set(revoked.json()["revoked"]) == {
        parent["capability"]["id"],
        child.json()["capability"]["id"],
    }


def test_wider_attenuation_is_422_with_sops_code(client: TestClient) -> None:
    parent = _admit(client).json()
    body = {"parent_token": parent["token"], "actions": ["artifact.persist"], "resources": ["**"]}
    answer = client.post("/admin/cap/attenuate", json=body)
    assert answer.status_code == 422
    assert answer.headers["content-type"] == "application/problem+json"
    assert answer.json()["code"] == "resources_wider"


@pytest.mark.parametrize(
    ("body", "says"),
    [
        ({"colour": "red"}, "`colour`: unknown field; accepted: `principal`"),
        ({"expires": "tomorrow"}, "`expires`: input should be a valid integer"),
        ({"expires": True}, "`expires`: input should be a valid integer"),
        ({"expires": -1}, "`expires`: input should be greater than or equal to 0"),
        ({"actions": []}, "`actions`: list should have at least 1 item"),
        ({"actions": ["artifact.persist", 7]}, "`actions.1`: input should be a valid string"),
        ({"principal": ""}, "`principal`: string should have at least 1 character"),
    ],
)
def test_a_malformed_body_is_400_naming_the_field(
    client: TestClient, booted: SOP, body: dict[str, Any], says: str
) -> None:
    before = _admin_ops(booted)
    answer = _admit(client, **body)
    assert answer.status_code == 400, answer.text
    problem = answer.json()
    assert (problem["code"], problem["status"]) == ("bad_request", 400)
    assert says in problem["detail"]
    assert _admin_ops(booted) == before  # refused before SOP was asked: nothing logged


def test_a_missing_field_is_400(client: TestClient) -> None:
    answer = client.post("/admin/cap/revoke", json={})
    assert answer.status_code == 400
    assert "`capability_id`: field required" in answer.json()["detail"]


@pytest.mark.parametrize(
    "raw", [b"", b"{", b"[1]", b'{"capability_id": "a", "capability_id": "b"}']
)
def test_a_body_that_is_not_one_json_object_is_400(client: TestClient, raw: bytes) -> None:
    answer = client.post("/admin/cap/revoke", content=raw)
    assert answer.status_code == 400
    assert answer.json()["code"] == "bad_request"


def test_an_oversized_body_is_413(client: TestClient) -> None:
    answer = client.post("/admin/cap/revoke", content=b"x" * (65 * 1024))
    assert answer.status_code == 413


def test_revoking_an_unknown_capability_is_a_user_error_not_500(client: TestClient) -> None:
    answer = client.post("/admin/cap/revoke", json={"capability_id": "no-such-capability"})
    assert answer.status_code == 422, answer.text
    assert (answer.json()["code"], answer.json()["detail"]) == (
        "unknown",
        "capability `no-such-capability` was never admitted",
    )


def test_policy_activate_refuses_an_unsound_set_with_its_report(
    client: TestClient, booted: SOP, tmp_path: Path
) -> None:
    path = _policies(tmp_path, "unsound", UNSOUND_POLICIES)
    answer = client.post("/admin/policy/activate", json={"path": str(path)})
    assert answer.status_code == 422
    problem = answer.json()
    assert problem["code"] == "policy_refused"
    assert problem["report"]["ok"] is False
    assert problem["report"]["findings"]
    assert booted.policy is None


def test_policy_activate_activates_a_sound_set(
    client: TestClient, booted: SOP, tmp_path: Path
) -> None:
    path = _policies(tmp_path, "sound", SOUND_POLICIES)
    answer = client.post("/admin/policy/activate", json={"path": str(path)})
    assert answer.status_code == 200, answer.text
    assert answer.json()["ok"] is True
    assert booted.policy is not None
    assert booted.policy.digest == answer.json()["digest"]


def test_policy_path_must_be_absolute(client: TestClient) -> None:
    answer = client.post("/admin/policy/activate", json={"path": "policies/sound"})
    assert answer.status_code == 422
    assert answer.json()["code"] == "relative_path"


def test_policy_path_that_does_not_exist_is_422(client: TestClient, tmp_path: Path) -> None:
    answer = client.post("/admin/policy/activate", json={"path": str(tmp_path / "nothing")})
    assert answer.status_code == 422, answer.text


def test_keys_rotate_answers_the_new_vkey(client: TestClient, booted: SOP) -> None:
    old = booted.log.verifiers[0].vkey
    answer = client.post("/admin/keys/rotate")
    assert answer.status_code == 200, answer.text
    assert answer.json()["vkey"] == booted.log.verifiers[0].vkey != old
    assert client.post("/admin/keys/rotate", json={"now": 1}).status_code == 400


def test_a_stopping_server_takes_no_admin_action(client: TestClient, state: Any) -> None:
    state.stopping = True
    assert _admit(client).status_code == 503
    assert client.get("/admin/status").status_code == 200


def test_admin_actions_run_on_one_worker_thread(client: TestClient, booted: SOP) -> None:
    seen: list[str] = []
    status = booted.status

    def recording() -> dict[str, Any]:
        seen.append(threading.current_thread().name)
        return status()

    booted.status = recording  # type: ignore[method-assign]
    for _ in range(3):
        client.get("/admin/status")
    assert len(set(seen)) == 1
    assert seen[0].startswith("sop-admin")


def test_unknown_path_and_method_are_problems(client: TestClient) -> None:
    assert client.get("/admin/nothing").json()["code"] == "not_found"
    assert client.get("/admin/cap/admit").json()["code"] == "method_not_allowed"


# ---- the socket ---------------------------------------------------------------------------------
def test_admin_socket_is_0600_and_owned_by_the_server(tmp_path: Path) -> None:
    path, sock = bind_admin_socket(tmp_path)
    with sock:
        st = os.lstat(path)
        assert stat.S_ISSOCK(st.st_mode)
        assert stat.S_IMODE(st.st_mode) == 0o600
        assert st.st_uid == os.getuid()


def test_a_stale_socket_is_replaced(tmp_path: Path) -> None:
    stale = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    stale.bind(str(tmp_path / "admin.sock"))
    stale.close()  # a killed server's socket: the file stays, nobody listens
    path, sock = bind_admin_socket(tmp_path)
    with sock, socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as probe:
        probe.connect(str(path))


@pytest.mark.parametrize("kind", ["file", "directory", "symlink"])
def test_something_else_at_the_socket_path_is_refused(tmp_path: Path, kind: str) -> None:
    path = tmp_path / "admin.sock"
    if kind == "file":
        path.write_text("keep me")
    elif kind == "directory":
        path.mkdir()
    else:
        path.symlink_to(tmp_path / "elsewhere.sock")
    with pytest.raises(SOPError, match="exists and is not a socket"):
        bind_admin_socket(tmp_path)
    assert path.is_symlink() or path.exists()  # left as it was


def test_peer_allowed_is_own_uid_or_root() -> None:
    assert peer_allowed(os.getuid())
    assert peer_allowed(0)
    assert not peer_allowed(NOBODY if os.getuid() != NOBODY else NOBODY - 1)


class _Served:
    """The admin app served by uvicorn on ``<data_dir>/admin.sock``, in a thread (uvloop, as
    ``sop serve`` runs it)."""

    def __init__(self, state: Any, data_dir: Path) -> None:
        self.path, sock = bind_admin_socket(data_dir)
        config = uvicorn.Config(
            admin_app(state), http=AdminProtocol, lifespan="off", log_level="warning"
        )
        config.load()
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(
            target=lambda: uvloop.run(self.server.serve(sockets=[sock])), daemon=True
        )
        self.thread.start()
        while not self.server.started:
            assert self.thread.is_alive(), "the admin server did not start"
            self.thread.join(0.01)

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join()


@pytest.fixture
def admin_served(state: Any, booted: SOP) -> Iterator[_Served]:
    lock = ServeLock.acquire(booted.data_dir)
    running = _Served(state, booted.data_dir)
    yield running
    running.stop()
    lock.release()


def _ask(path: str) -> str:
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(30)
    try:
        s.connect(path)
    except PermissionError:
        return "PermissionError"
    try:  # the server may close it before the request is sent, or before it is read
        s.sendall(b"GET /admin/status HTTP/1.1\r\nhost: x\r\n\r\n")
        answer = s.recv(65536)
    except (BrokenPipeError, ConnectionResetError):
        answer = b""
    return "answered" if answer else "closed"


def _as_nobody(data_dir: Path) -> str:
    """Connect to the admin socket from a child process running as uid 65534; what happened.

    The child reaches the socket through an open descriptor of its directory
    (``/proc/self/fd/N``): pytest's temporary directories are 0700, and the
    socket's own mode must be what stops it, not its ancestors'.
    """
    os.chmod(data_dir, 0o711)
    fd = os.open(data_dir, os.O_PATH | os.O_DIRECTORY)
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: drop to nobody, try, report through the pipe, never return
        try:
            os.setgroups([])
            os.setgid(NOBODY)
            os.setuid(NOBODY)
            said = _ask(f"/proc/self/fd/{fd}/admin.sock")
        except BaseException as exc:
            said = f"{type(exc).__name__}: {exc}"
        os.write(w, said.encode())
        os._exit(0)
    os.close(w)
    os.close(fd)
    with os.fdopen(r, "rb") as pipe:
        said = pipe.read().decode()
    os.waitpid(pid, 0)
    return said


@needs_root
def test_another_uid_cannot_connect_to_the_admin_socket(admin_served: _Served, booted: SOP) -> None:
    assert _as_nobody(booted.data_dir) == "PermissionError"


@needs_root
def test_another_uid_is_closed_by_peer_credentials_even_on_a_widened_socket(
    admin_served: _Served, booted: SOP
) -> None:
    os.chmod(admin_served.path, 0o666)  # a mistake: the file mode no longer keeps anyone out
    assert _as_nobody(booted.data_dir) == "closed"
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as own:  # its owner still gets in
        own.connect(str(admin_served.path))
        own.sendall(b"GET /admin/status HTTP/1.1\r\nhost: x\r\n\r\n")
        assert own.recv(65536).startswith(b"HTTP/1.1 200")


# ---- the CLI while a server holds the data directory --------------------------------------------
runner = CliRunner()


def _sop(*args: str) -> tuple[int, str]:
    result = runner.invoke(cli_app, list(args))
    return result.exit_code, result.output


def test_cli_status_goes_through_the_admin_socket(admin_served: _Served, booted: SOP) -> None:
    code, output = _sop("status", "--data-dir", str(booted.data_dir), "--json")
    assert code == 0, output
    data, expected = json.loads(output), booted.status()
    assert {k: data[k] for k in expected} == expected  # the server's own answer, and:
    assert data["source"] == f"server (pid {os.getpid()})" and data["reason"] is None
    assert [c["name"] for c in data["checks"]] == expected["boot_order"]


def test_cli_cap_admit_goes_through_the_admin_socket(admin_served: _Served, booted: SOP) -> None:
    code, output = _sop(
        "cap", "admit", "-p", "drac", "-a", "artifact.persist", "-r", "artifacts/**",
        "--data-dir", str(booted.data_dir), "--json",
    )  # fmt: skip
    assert code == 0, output
    data = json.loads(output)
    assert set(data) == {"capability", "token"}
    assert booted.capabilities.holder(data["token"]).id == data["capability"]["id"]


def test_cli_policy_activate_refused_through_the_socket_prints_the_report(
    admin_served: _Served, booted: SOP, tmp_path: Path
) -> None:
    path = _policies(tmp_path, "unsound", UNSOUND_POLICIES)
    code, output = _sop(
        "policy", "activate", str(path), "--data-dir", str(booted.data_dir), "--json"
    )
    assert code == 1, output
    assert json.loads(output)["ok"] is False


def test_cli_admin_error_through_the_socket_is_one_line_exit_2(
    admin_served: _Served, booted: SOP
) -> None:
    code, output = _sop("cap", "revoke", "no-such-capability", "--data-dir", str(booted.data_dir))
    assert code == 2, output
    assert "error:" in output


@pytest.mark.parametrize(
    "command",
    [
        ["state", "repair"],
        ["config", "accept"],
        ["log", "anchor", "--accept-current"],
        ["proofs", "replay"],
    ],
)
def test_cli_refuses_to_open_a_held_database(tmp_path: Path, command: list[str]) -> None:
    data = tmp_path / "data"
    SOP.init(data)
    lock = ServeLock.acquire(data)
    try:
        code, output = _sop(*command, "--data-dir", str(data))
    finally:
        lock.release()
    assert code == 2, output
    flat = " ".join(output.split())
    assert f"a server (pid {os.getpid()}) holds" in flat
    assert f"`sop {' '.join(command[:2]).replace(' --accept-current', '')}`" in flat
    assert "stop the server" in flat


# ---- a real `sop serve` ---------------------------------------------------------------------
def test_sop_serve_answers_the_cli_on_its_admin_socket_and_removes_it_on_stop(
    prepared: Prepared,
) -> None:
    server = Served(prepared.data_dir)
    try:
        socket_path = Path(server.facts["admin"])
        assert socket_path == prepared.data_dir.absolute() / "admin.sock"
        assert stat.S_IMODE(os.lstat(socket_path).st_mode) == 0o600
        code, output = _sop("status", "--data-dir", str(prepared.data_dir), "--json")
        assert code == 0, output
        assert json.loads(output)["health"] == "READY"
        if os.getuid() == 0:
            assert _as_nobody(prepared.data_dir) == "PermissionError"
    finally:
        assert server.stop() == 0, server.stderr()
    assert not socket_path.exists()
