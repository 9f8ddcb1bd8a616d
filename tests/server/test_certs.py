"""The bridge plane's mutual TLS: the local CA, client certificates, the principal they name.

The handshakes are real: a server thread wraps a loopback socket (port 0) in
``server_ssl_context`` and the client one in a context built from issued
files, as ``sop serve`` and its clients will.
"""

from __future__ import annotations

import ipaddress
import os
import socket
import ssl
import stat
import threading
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID
from typer.testing import CliRunner

from sop_verified.cli import app
from sop_verified.core.request import PRINCIPAL_PATTERN
from sop_verified.errors import CertificateError, ConfigError
from sop_verified.nexus.config import init_data_dir
from sop_verified.server.certs import (
    check_authority,
    client_ssl_context,
    create_authority,
    issue_client,
    principal_of,
    server_ssl_context,
)
from sop_verified.tools.x509_ca import (
    AUTHORITY_FILES,
    CA_CERT,
    CA_KEY,
    SERVER_CERT,
    SERVER_KEY,
    TLS_DIR,
    cert_pem,
    load_authority,
    sign_leaf,
)

runner = CliRunner()


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    """A directory holding only the TLS authority (all these tests need of a data dir)."""
    d = tmp_path / "data"
    d.mkdir(mode=0o700)
    create_authority(d)
    return d


def _client_ctx(out: Path, name: str) -> ssl.SSLContext:
    return client_ssl_context(out / f"{name}.pem", out / f"{name}.key", out / "ca.pem")


@dataclass
class Outcome:
    """What the server side of one connection saw."""

    principal: str | None = None
    version: str | None = None
    handshake_error: BaseException | None = None


def _connect(
    server_ctx: ssl.SSLContext, client_ctx: ssl.SSLContext, *, hostname: str = "localhost"
) -> Outcome:
    """One TLS connection over loopback; the server thread reads the peer's principal."""
    outcome = Outcome()
    listener = socket.create_server(("127.0.0.1", 0))
    listener.settimeout(30)  # a safety net against a hang, not an assertion

    def serve() -> None:
        conn, _ = listener.accept()
        conn.settimeout(30)
        try:
            tls = server_ctx.wrap_socket(conn, server_side=True)
        except (ssl.SSLError, OSError) as exc:
            outcome.handshake_error = exc
            conn.close()
            return
        with tls:
            outcome.version = tls.version()
            outcome.principal = principal_of(tls.getpeercert(binary_form=True))
            tls.sendall(b"ok")

    thread = threading.Thread(target=serve)
    thread.start()
    try:
        with socket.create_connection(listener.getsockname()[:2], timeout=30) as raw:
            try:
                with client_ctx.wrap_socket(raw, server_hostname=hostname) as tls:
                    tls.recv(2)  # TLS 1.3: a refused client certificate shows up on the first read
            except (ssl.SSLError, OSError):
                pass
    finally:
        thread.join()
        listener.close()
    return outcome


def _issue(data_dir: Path, tmp_path: Path, name: str = "alice", **kw: Any) -> Path:
    out = tmp_path / f"{name}-cert"
    issue_client(data_dir, name, out, **kw)
    return out


# --- handshakes ---------------------------------------------------------------------------


def test_issued_client_handshakes_and_server_reads_its_principal(
    data_dir: Path, tmp_path: Path
) -> None:
    out = _issue(data_dir, tmp_path, "agent-7")
    outcome = _connect(server_ssl_context(data_dir), _client_ctx(out, "agent-7"))
    assert outcome.handshake_error is None
    assert outcome.principal == "agent-7"
    assert outcome.version == "TLSv1.3"


def test_server_certificate_matches_127_0_0_1_too(data_dir: Path, tmp_path: Path) -> None:
    out = _issue(data_dir, tmp_path)
    outcome = _connect(
        server_ssl_context(data_dir), _client_ctx(out, "alice"), hostname="127.0.0.1"
    )
    assert outcome.principal == "alice"


def test_client_refuses_a_server_name_the_certificate_does_not_hold(
    data_dir: Path, tmp_path: Path
) -> None:
    out = _issue(data_dir, tmp_path)
    outcome = _connect(
        server_ssl_context(data_dir), _client_ctx(out, "alice"), hostname="sop.example"
    )
    assert outcome.principal is None


def test_handshake_without_client_certificate_is_refused(data_dir: Path, tmp_path: Path) -> None:
    ca_only = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ca_only.load_verify_locations(cafile=data_dir / CA_CERT)
    outcome = _connect(server_ssl_context(data_dir), ca_only)
    assert isinstance(outcome.handshake_error, ssl.SSLError), outcome
    assert outcome.principal is None


def test_client_certificate_from_another_ca_is_refused(data_dir: Path, tmp_path: Path) -> None:
    other = tmp_path / "other"
    other.mkdir()
    create_authority(other)
    forged = tmp_path / "forged"
    issue_client(other, "alice", forged)
    # the client trusts the real server (its CA) but presents the other CA's "alice"
    client = client_ssl_context(forged / "alice.pem", forged / "alice.key", data_dir / CA_CERT)
    outcome = _connect(server_ssl_context(data_dir), client)
    assert isinstance(outcome.handshake_error, ssl.SSLError), outcome
    assert outcome.principal is None


def test_expired_client_certificate_is_refused(data_dir: Path, tmp_path: Path) -> None:
    out = _issue(data_dir, tmp_path, days=1, now=datetime.now(UTC) - timedelta(days=3))
    outcome = _connect(server_ssl_context(data_dir), _client_ctx(out, "alice"))
    assert isinstance(outcome.handshake_error, ssl.SSLError), outcome
    assert outcome.principal is None


def test_server_certificate_presented_as_client_certificate_is_refused(data_dir: Path) -> None:
    client = client_ssl_context(data_dir / SERVER_CERT, data_dir / SERVER_KEY, data_dir / CA_CERT)
    outcome = _connect(server_ssl_context(data_dir), client)
    assert isinstance(outcome.handshake_error, ssl.SSLError), outcome


# --- files and modes ----------------------------------------------------------------------


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.lstat().st_mode)


@pytest.mark.parametrize("umask", [0o022, 0o000])
def test_keys_are_0600_and_directories_0700(tmp_path: Path, umask: int) -> None:
    old = os.umask(umask)
    try:
        d = tmp_path / "data"
        d.mkdir(mode=0o700)
        create_authority(d)
        issued = issue_client(d, "alice", tmp_path / "new" / "alice-cert")
    finally:
        os.umask(old)
    assert _mode(d / TLS_DIR) == 0o700
    assert _mode(d / "keys") == 0o700
    for name in AUTHORITY_FILES:
        assert _mode(d / name) == 0o600, name
    assert _mode(issued.cert_path.parent) == 0o700
    assert _mode(tmp_path / "new") == 0o700
    for path in (issued.cert_path, issued.key_path, issued.ca_path):
        assert _mode(path) == 0o600, path
    assert sorted(p.name for p in issued.cert_path.parent.iterdir()) == [
        "alice.key",
        "alice.pem",
        "ca.pem",
    ]


def test_sop_init_creates_the_authority(tmp_path: Path) -> None:
    init_data_dir(tmp_path / "d")
    status = check_authority(tmp_path / "d")
    assert status.ca_fingerprint.startswith("sha256:")


def test_create_authority_refuses_to_replace_it(data_dir: Path) -> None:
    before = (data_dir / CA_CERT).read_bytes()
    with pytest.raises(ConfigError, match="exists already"):
        create_authority(data_dir)
    (data_dir / SERVER_KEY).unlink()  # even one file left is never replaced
    with pytest.raises(ConfigError, match=r"ca\.pem"):
        create_authority(data_dir)
    assert (data_dir / CA_CERT).read_bytes() == before


def test_issue_refuses_to_overwrite(data_dir: Path, tmp_path: Path) -> None:
    out = _issue(data_dir, tmp_path)
    key = (out / "alice.key").read_bytes()
    with pytest.raises(ConfigError, match=r"refusing to overwrite .*alice\.pem.*alice\.key"):
        issue_client(data_dir, "alice", out)
    assert (out / "alice.key").read_bytes() == key


def test_clients_share_the_ca_file_but_a_different_ca_file_is_refused(
    data_dir: Path, tmp_path: Path
) -> None:
    out = _issue(data_dir, tmp_path)
    issue_client(data_dir, "bob", out)  # the same CA certificate: kept
    (out / "ca.pem").unlink()
    (out / "ca.pem").write_bytes(b"someone else's CA\n")
    with pytest.raises(ConfigError, match=r"ca\.pem"):
        issue_client(data_dir, "carol", out)
    assert not (out / "carol.key").exists()


# --- the certificates ---------------------------------------------------------------------


def _ext(cert: x509.Certificate, kind: type[x509.ExtensionType]) -> Any:
    return cert.extensions.get_extension_for_class(kind)


def test_ca_certificate_is_a_p256_ca_for_leaves_only(data_dir: Path) -> None:
    ca = load_authority(data_dir).certificate
    assert isinstance(ca.public_key(), ec.EllipticCurvePublicKey)
    assert ca.public_key().curve.name == "secp256r1"
    bc = _ext(ca, x509.BasicConstraints)
    assert bc.critical and bc.value.ca and bc.value.path_length == 0
    ku = _ext(ca, x509.KeyUsage).value
    assert ku.key_cert_sign and ku.crl_sign and not ku.digital_signature
    ski = _ext(ca, x509.SubjectKeyIdentifier).value
    aki = _ext(ca, x509.AuthorityKeyIdentifier).value
    assert aki.key_identifier == ski.digest
    assert ca.not_valid_after_utc - ca.not_valid_before_utc == timedelta(days=3650)


def test_server_certificate_names_loopback_and_is_signed_by_the_ca(data_dir: Path) -> None:
    ca = load_authority(data_dir).certificate
    server = x509.load_pem_x509_certificate((data_dir / SERVER_CERT).read_bytes())
    server.verify_directly_issued_by(ca)
    san = _ext(server, x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.DNSName) == ["localhost"]
    assert san.get_values_for_type(x509.IPAddress) == [
        ipaddress.ip_address("127.0.0.1"),
        ipaddress.ip_address("::1"),
    ]
    assert list(_ext(server, x509.ExtendedKeyUsage).value) == [ExtendedKeyUsageOID.SERVER_AUTH]
    aki = _ext(server, x509.AuthorityKeyIdentifier).value
    assert aki.key_identifier == _ext(ca, x509.SubjectKeyIdentifier).value.digest
    assert server.not_valid_after_utc - server.not_valid_before_utc == timedelta(days=730)


def test_issued_client_certificate(data_dir: Path, tmp_path: Path) -> None:
    now = datetime(2030, 1, 2, 3, 4, 5, tzinfo=UTC)
    issued = issue_client(data_dir, "alice", tmp_path / "c", days=30, now=now)
    cert = x509.load_pem_x509_certificate(issued.cert_path.read_bytes())
    assert issued.principal == "alice"
    assert issued.serial == cert.serial_number
    assert issued.not_after == now + timedelta(days=30) == cert.not_valid_after_utc
    assert list(_ext(cert, x509.ExtendedKeyUsage).value) == [ExtendedKeyUsageOID.CLIENT_AUTH]
    assert issued.ca_path.read_bytes() == (data_dir / CA_CERT).read_bytes()
    assert "PRIVATE KEY" not in str(issued.to_dict())


# --- principal_of -------------------------------------------------------------------------


def _leaf(data_dir: Path, names: list[x509.GeneralName], *, cn: str = "alice") -> bytes:
    cert, _ = sign_leaf(
        load_authority(data_dir),
        common_name=cn,
        names=names,
        usage=ExtendedKeyUsageOID.CLIENT_AUTH,
        start=datetime.now(UTC).replace(microsecond=0),
        days=1,
    )
    return cert.public_bytes(serialization.Encoding.DER)


def test_principal_of_reads_the_san_uri_never_the_cn(data_dir: Path) -> None:
    uri = x509.UniformResourceIdentifier("sop://principal/alice")
    assert principal_of(_leaf(data_dir, [uri], cn="admin")) == "alice"
    other = x509.UniformResourceIdentifier("https://example.org/alice")
    assert principal_of(_leaf(data_dir, [other, uri, x509.DNSName("x")], cn="admin")) == "alice"


@pytest.mark.parametrize(
    "names",
    [
        pytest.param([x509.DNSName("alice")], id="no-uri-cn-only"),
        pytest.param([x509.UniformResourceIdentifier("https://example.org/alice")], id="other-uri"),
        pytest.param(
            [
                x509.UniformResourceIdentifier("sop://principal/alice"),
                x509.UniformResourceIdentifier("sop://principal/bob"),
            ],
            id="two-principals",
        ),
        pytest.param([x509.UniformResourceIdentifier("sop://principal/Alice")], id="bad-name"),
        pytest.param([x509.UniformResourceIdentifier("sop://principal/")], id="empty-name"),
        pytest.param([x509.UniformResourceIdentifier("sop://principal/a/b")], id="slash"),
        pytest.param([x509.UniformResourceIdentifier("SOP://principal/alice")], id="other-case"),
        pytest.param([x509.UniformResourceIdentifier("sop://admin/alice")], id="other-kind"),
    ],
)
def test_principal_of_refuses(data_dir: Path, names: list[x509.GeneralName]) -> None:
    with pytest.raises(CertificateError):
        principal_of(_leaf(data_dir, names))


def test_principal_of_refuses_no_certificate_and_garbage() -> None:
    with pytest.raises(CertificateError, match="no certificate"):
        principal_of(None)
    with pytest.raises(CertificateError, match="cannot be read"):
        principal_of(b"\x30\x03\x02\x01\x00")


def test_principal_of_refuses_a_server_certificate(data_dir: Path) -> None:
    server = x509.load_pem_x509_certificate((data_dir / SERVER_CERT).read_bytes())
    with pytest.raises(CertificateError):
        principal_of(server.public_bytes(serialization.Encoding.DER))


# --- check_authority and the server context -----------------------------------------------


def test_server_context_without_authority_says_how_to_make_one(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"sop certs init"):
        server_ssl_context(tmp_path)


def test_server_context_requires_client_certificates(data_dir: Path) -> None:
    ctx = server_ssl_context(data_dir)
    assert ctx.verify_mode == ssl.CERT_REQUIRED
    assert ctx.minimum_version == ssl.TLSVersion.TLSv1_2


@pytest.mark.parametrize("name", [CA_KEY, SERVER_KEY, CA_CERT])
def test_check_authority_refuses_files_open_to_others(data_dir: Path, name: str) -> None:
    (data_dir / name).chmod(0o644)
    with pytest.raises(ConfigError, match="open to others"):
        check_authority(data_dir)


def test_check_authority_refuses_a_server_certificate_of_another_ca(
    data_dir: Path, tmp_path: Path
) -> None:
    other = tmp_path / "other"
    other.mkdir()
    create_authority(other)
    for name in (SERVER_CERT, SERVER_KEY):
        (data_dir / name).unlink()
        (data_dir / name).write_bytes((other / name).read_bytes())
        (data_dir / name).chmod(0o600)
    with pytest.raises(ConfigError, match="is not signed by"):
        check_authority(data_dir)


def test_check_authority_refuses_an_expired_or_future_ca(data_dir: Path) -> None:
    with pytest.raises(ConfigError, match=r"ca\.pem` is not valid now"):
        check_authority(data_dir, now=datetime.now(UTC) + timedelta(days=3651))
    with pytest.raises(ConfigError, match="is not valid now"):
        check_authority(data_dir, now=datetime.now(UTC) - timedelta(days=1))
    assert check_authority(data_dir).ca_not_after > datetime.now(UTC)


def test_a_swapped_ca_certificate_is_refused(data_dir: Path, tmp_path: Path) -> None:
    other = tmp_path / "other"
    other.mkdir()
    create_authority(other)
    (data_dir / CA_CERT).unlink()
    (data_dir / CA_CERT).write_bytes(cert_pem(load_authority(other).certificate))
    (data_dir / CA_CERT).chmod(0o600)
    with pytest.raises(ConfigError, match="is not the key of"):
        check_authority(data_dir)


# --- the CLI ------------------------------------------------------------------------------


def _cli(*args: str) -> tuple[int, str]:
    result = runner.invoke(app, list(args))
    return result.exit_code, " ".join(result.output.split())  # undo rich's line wrapping


def _cli_data_dir(tmp_path: Path) -> Path:
    d = tmp_path / "d"
    d.mkdir(mode=0o700)
    (d / "sop.toml").write_text("")  # `sop certs` only checks that this is a data directory
    return d


def test_cli_issue_refuses_a_bad_name_naming_the_pattern(tmp_path: Path) -> None:
    d = _cli_data_dir(tmp_path)
    assert _cli("certs", "init", "--data-dir", str(d))[0] == 0
    code, output = _cli(
        "certs", "issue", "Bad.Name", "--data-dir", str(d), "--out", str(tmp_path / "o")
    )
    assert code == 2
    assert f"`{PRINCIPAL_PATTERN}`" in output  # whole: not eaten as rich markup
    assert "`Bad.Name`" in output
    assert not (tmp_path / "o").exists()


def test_cli_issue_writes_files_and_refuses_to_overwrite(tmp_path: Path) -> None:
    d = _cli_data_dir(tmp_path)
    _cli("certs", "init", "--data-dir", str(d))
    out = tmp_path / "alice-files"
    code, output = _cli(
        "certs", "issue", "alice", "--data-dir", str(d), "--out", str(out), "--json"
    )
    assert code == 0, output
    assert "PRIVATE KEY" not in output
    code, output = _cli("certs", "issue", "alice", "--data-dir", str(d), "--out", str(out))
    assert code == 2
    assert "refusing to overwrite" in output
    assert str(out / "alice.pem") in output.replace(" ", "")  # rich folds a long path


def test_cli_issue_default_out_is_name_cert(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    d = _cli_data_dir(tmp_path)
    _cli("certs", "init", "--data-dir", str(d))
    monkeypatch.chdir(tmp_path)
    code, output = _cli("certs", "issue", "bob", "--data-dir", str(d))
    assert code == 0, output
    assert (tmp_path / "bob-cert" / "bob.key").exists()
    assert "principal `bob`" in output


def test_cli_certs_init_refuses_an_existing_authority_and_a_non_data_dir(tmp_path: Path) -> None:
    d = _cli_data_dir(tmp_path)
    assert _cli("certs", "init", "--data-dir", str(d))[0] == 0
    code, output = _cli("certs", "init", "--data-dir", str(d))
    assert code == 2 and "exists already" in output
    code, output = _cli("certs", "init", "--data-dir", str(tmp_path / "nothing"))
    assert code == 2 and "sop init" in output


def test_a_file_made_during_issue_is_not_overwritten(
    data_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import sop_verified.server.certs as certs

    out = tmp_path / "race"
    real = certs.write_private_new

    def racing(path: Path, data: bytes) -> None:
        if path.name == "alice.pem":
            path.write_bytes(b"theirs")  # appears after the up-front check
        real(path, data)

    monkeypatch.setattr(certs, "write_private_new", racing)
    with pytest.raises(ConfigError, match=r"refusing to overwrite .*alice\.pem"):
        issue_client(data_dir, "alice", out)
    assert (out / "alice.pem").read_bytes() == b"theirs"
