"""The bridge plane's mutual TLS: client certificates, the principal they name, TLS contexts.

A client of ``sop serve`` proves who it is with a certificate that the data
directory's local CA (``sop_verified.tools.x509_ca``, in ``keys/tls/``) signed:
its one SubjectAlternativeName URI ``sop://principal/<name>`` is the SOP
principal the server acts for. The CN repeats the name for people reading the
certificate; SOP never reads it. :func:`server_ssl_context` requires such a
certificate in every handshake, and :func:`principal_of` reads the principal
from the verified peer certificate. docs/TLS.md is the operator's guide.
"""

from __future__ import annotations

import os
import re
import ssl
import stat
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, Final

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID

from sop_verified.core.request import PRINCIPAL_PATTERN
from sop_verified.errors import CertificateError, ConfigError
from sop_verified.tools.private_fs import make_private_dir, write_private_new
from sop_verified.tools.x509_ca import (
    CA_CERT,
    SERVER_CERT,
    SERVER_KEY,
    TLS_DIR,
    cert_pem,
    create_authority,
    fingerprint,
    key_pem,
    load_authority,
    read_private,
    sign_leaf,
    utc_now,
)

__all__ = [
    "MAX_CLIENT_DAYS",
    "PRINCIPAL_URI_PREFIX",
    "AuthorityStatus",
    "IssuedClient",
    "check_authority",
    "client_ssl_context",
    "create_authority",
    "issue_client",
    "principal_of",
    "server_ssl_context",
]

PRINCIPAL_URI_PREFIX: Final = "sop://principal/"
"""The SAN URI prefix of a client certificate; the rest is the principal."""

MAX_CLIENT_DAYS: Final = 3650

_PRINCIPAL_RE: Final = re.compile(PRINCIPAL_PATTERN)  # the request's principal grammar
_ACCEPTED_URI: Final = (
    f"exactly one SAN URI `{PRINCIPAL_URI_PREFIX}<name>`, name `{PRINCIPAL_PATTERN}`"
)


@dataclass(frozen=True, slots=True)
class IssuedClient:
    """What :func:`issue_client` wrote: the files (never their contents), serial, expiry."""

    principal: str
    cert_path: Path
    key_path: Path
    ca_path: Path
    serial: int
    not_after: datetime

    def to_dict(self) -> dict[str, Any]:
        """The JSON form (the serial in hex: it does not fit a JSON number)."""
        return {
            "principal": self.principal,
            "cert": str(self.cert_path),
            "key": str(self.key_path),
            "ca": str(self.ca_path),
            "serial": f"{self.serial:x}",
            "not_after": self.not_after.isoformat(),
        }


def _check_name(name: str) -> None:
    if _PRINCIPAL_RE.fullmatch(name) is None:
        raise CertificateError(
            f"`{name[:80]}` is not a principal name",
            accepted=f"a principal matching `{PRINCIPAL_PATTERN}`",
        )


def _refuse_existing(paths: list[Path]) -> None:
    existing = [p for p in paths if os.path.lexists(p)]
    if existing:
        raise ConfigError(
            "refusing to overwrite " + ", ".join(f"`{p}`" for p in existing),
            accepted="another --out directory, or move the old files away first "
            "(re-issuing a certificate: see docs/TLS.md)",
        )


def issue_client(
    data_dir: Path, name: str, out_dir: Path, *, days: int = 365, now: datetime | None = None
) -> IssuedClient:
    """Sign a client certificate for principal ``name``; write it, its key and the CA cert.

    Writes ``<name>.pem``, ``<name>.key`` and ``ca.pem`` (each 0600) to ``out_dir``,
    creating it 0700 when missing. An existing ``ca.pem`` that is this CA's certificate is
    kept (several clients may share one directory); any other existing file is refused.

    Args:
        data_dir: The data directory whose CA signs.
        name: The principal, in the requests' grammar (``PRINCIPAL_PATTERN``).
        out_dir: Where the three files go.
        days: The validity, 1 to :data:`MAX_CLIENT_DAYS`, not past the CA's own.
        now: The issuing time (tests pin it); the wall clock when None.

    Returns:
        The paths, serial, expiry and principal.

    Raises:
        CertificateError: ``name`` is not a principal, or ``days`` is out of range.
        ConfigError: a file would be overwritten, or the CA is missing or unusable.
    """
    _check_name(name)
    if not 1 <= days <= MAX_CLIENT_DAYS:
        raise CertificateError(
            f"`--days {days}` is out of range", accepted=f"1 to {MAX_CLIENT_DAYS}"
        )
    cert_path, key_path, ca_path = (
        out_dir / f"{name}.pem",
        out_dir / f"{name}.key",
        out_dir / "ca.pem",
    )
    authority = load_authority(data_dir)
    ca_bytes = cert_pem(authority.certificate)
    share_ca = ca_path.is_file() and not ca_path.is_symlink() and ca_path.read_bytes() == ca_bytes
    _refuse_existing([cert_path, key_path] + ([] if share_ca else [ca_path]))
    start = utc_now(now)
    ca_until = authority.certificate.not_valid_after_utc
    if start + timedelta(days=days) > ca_until:
        raise CertificateError(
            f"a certificate for {days} days would outlive the CA (valid until `{ca_until}`)",
            accepted="fewer --days",
        )
    cert, key = sign_leaf(
        authority,
        common_name=name,
        names=[x509.UniformResourceIdentifier(PRINCIPAL_URI_PREFIX + name)],
        usage=ExtendedKeyUsageOID.CLIENT_AUTH,
        start=start,
        days=days,
    )
    try:
        make_private_dir(out_dir)
    except FileExistsError:
        raise ConfigError(f"`{out_dir}` is not a directory", accepted="--out DIR") from None
    try:
        write_private_new(key_path, key_pem(key))
        write_private_new(cert_path, cert_pem(cert))
        if not share_ca:
            write_private_new(ca_path, ca_bytes)
    except FileExistsError as exc:  # made meanwhile by someone else: still never overwritten
        _refuse_existing([Path(str(exc.filename2 or exc.filename))])
        raise
    return IssuedClient(
        name, cert_path, key_path, ca_path, cert.serial_number, cert.not_valid_after_utc
    )


def principal_of(cert_der: bytes | None) -> str:
    """The SOP principal a peer certificate names: its one ``sop://principal/`` SAN URI.

    Call it only on a certificate the TLS handshake verified against the CA
    (``server_ssl_context`` requires one); it checks the form, not the signature.
    The subject's CN is never read.

    Args:
        cert_der: The peer's certificate, DER (``getpeercert(binary_form=True)``).

    Returns:
        The principal.

    Raises:
        CertificateError: no certificate, not DER X.509, not for client authentication,
            or not exactly one well-formed ``sop://principal/<name>`` URI.
    """
    if not cert_der:
        raise CertificateError("the peer sent no certificate", accepted=_ACCEPTED_URI)
    try:
        cert = x509.load_der_x509_certificate(cert_der)
        extensions = cert.extensions
    except ValueError as exc:
        raise CertificateError(f"the peer certificate cannot be read: {exc}") from None
    try:
        san = extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        raise CertificateError(
            "the peer certificate has no subject alternative name", accepted=_ACCEPTED_URI
        ) from None
    try:
        eku = extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    except x509.ExtensionNotFound:
        eku = x509.ExtendedKeyUsage([])
    if ExtendedKeyUsageOID.CLIENT_AUTH not in eku:
        raise CertificateError(
            "the peer certificate is not for client authentication", accepted="EKU clientAuth"
        )
    uris = [
        u
        for u in san.get_values_for_type(x509.UniformResourceIdentifier)
        if u[:4].lower() == "sop:"
    ]
    if len(uris) != 1:
        raise CertificateError(
            f"the peer certificate names {len(uris)} SOP principal URIs", accepted=_ACCEPTED_URI
        )
    uri = uris[0]
    name = uri[len(PRINCIPAL_URI_PREFIX) :]
    if not uri.startswith(PRINCIPAL_URI_PREFIX) or _PRINCIPAL_RE.fullmatch(name) is None:
        raise CertificateError(f"malformed principal URI `{uri[:120]}`", accepted=_ACCEPTED_URI)
    return name


@dataclass(frozen=True, slots=True)
class AuthorityStatus:
    """What :func:`check_authority` found: which CA, and until when each certificate holds."""

    ca_fingerprint: str
    ca_not_after: datetime
    server_not_after: datetime


def _load_cert(path: Path, what: str) -> x509.Certificate:
    try:
        return x509.load_pem_x509_certificate(read_private(path, what))
    except ValueError as exc:
        raise ConfigError(f"cannot read the {what} `{path}`: {exc}") from None


def _check_valid(cert: x509.Certificate, path: Path, at: datetime) -> None:
    start, until = cert.not_valid_before_utc, cert.not_valid_after_utc
    if not start <= at <= until:
        raise ConfigError(
            f"`{path}` is not valid now (`{at}`): valid from `{start}` to `{until}`",
            accepted=f"a current certificate; remove `{path.parent}` and run `sop certs init` "
            "to make a new authority (client certificates must then be re-issued)",
        )


def check_authority(data_dir: Path, *, now: datetime | None = None) -> AuthorityStatus:
    """Check the TLS material before serving: modes, validity now, the server cert's issuer.

    ``keys/tls/`` must be open to its owner only, every file in it a regular file
    mode 0600 (no group or other bits); each key must be its certificate's; the CA
    certificate must be a CA and valid at ``now``, and the server certificate valid at
    ``now`` and signed by it.

    Args:
        data_dir: The data directory.
        now: The time to check at (tests pin it); the wall clock when None.

    Returns:
        The CA's fingerprint and the expiry of both certificates.

    Raises:
        ConfigError: a file is missing, open to others or malformed, a certificate is
            expired or not yet valid, or the server certificate is not the CA's.
    """
    tls_dir = data_dir / TLS_DIR
    if tls_dir.is_dir() and stat.S_IMODE(tls_dir.lstat().st_mode) & 0o077:
        raise ConfigError(f"`{tls_dir}` is open to others", accepted="mode 0700 (chmod 700)")
    at = utc_now(now)
    authority = load_authority(data_dir)
    ca = authority.certificate
    server_path = data_dir / SERVER_CERT
    server = _load_cert(server_path, "server certificate")
    server_key = _load_key(data_dir / SERVER_KEY)
    if server_key.public_key() != server.public_key():
        raise ConfigError(f"`{data_dir / SERVER_KEY}` is not the key of `{server_path}`")
    constraints = ca.extensions.get_extension_for_class(x509.BasicConstraints).value
    if not constraints.ca:
        raise ConfigError(f"`{data_dir / CA_CERT}` is not a CA certificate")
    _check_valid(ca, data_dir / CA_CERT, at)
    _check_valid(server, server_path, at)
    try:
        server.verify_directly_issued_by(ca)
    except (ValueError, TypeError, InvalidSignature):
        raise ConfigError(
            f"`{server_path}` is not signed by `{data_dir / CA_CERT}`",
            accepted="the server certificate the local CA issued (`sop certs init`)",
        ) from None
    return AuthorityStatus(fingerprint(ca), ca.not_valid_after_utc, server.not_valid_after_utc)


def _load_key(path: Path) -> ec.EllipticCurvePrivateKey:
    try:
        key = serialization.load_pem_private_key(read_private(path, "TLS key"), password=None)
    except ValueError as exc:
        raise ConfigError(f"cannot read the TLS key `{path}`: {exc}") from None
    if not isinstance(key, ec.EllipticCurvePrivateKey):
        raise ConfigError(f"`{path}` is not an ECDSA key")
    return key


def _harden(ctx: ssl.SSLContext) -> ssl.SSLContext:
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2  # 1.3 is negotiated whenever both sides have it
    ctx.verify_mode = ssl.CERT_REQUIRED
    ctx.verify_flags |= ssl.VERIFY_X509_STRICT
    return ctx


def server_ssl_context(data_dir: Path, *, now: datetime | None = None) -> ssl.SSLContext:
    """The server side of the bridge plane's mutual TLS.

    TLS 1.2 or later (1.3 preferred), the server certificate of ``keys/tls/``, and
    a client certificate required and verified against the local CA alone (no
    system roots). Runs :func:`check_authority` first.

    Args:
        data_dir: The data directory.
        now: The time :func:`check_authority` checks at; the wall clock when None.

    Returns:
        The context; read the client's principal with
        ``principal_of(sslobj.getpeercert(binary_form=True))``.

    Raises:
        ConfigError: the TLS material is missing or unusable (see :func:`check_authority`).
    """
    check_authority(data_dir, now=now)
    ctx = _harden(ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER))
    ctx.load_verify_locations(cafile=data_dir / CA_CERT)
    ctx.load_cert_chain(data_dir / SERVER_CERT, data_dir / SERVER_KEY)
    return ctx


def client_ssl_context(cert: Path, key: Path, ca: Path) -> ssl.SSLContext:
    """The client side: present ``cert``/``key`` and trust only the CA in ``ca``.

    The server's name is checked (``localhost``, ``127.0.0.1`` or ``::1``; pass it as
    ``server_hostname``).

    Args:
        cert: The client certificate (``<name>.pem`` from :func:`issue_client`).
        key: Its key (``<name>.key``).
        ca: The CA certificate (``ca.pem``).

    Returns:
        The context.

    Raises:
        ConfigError: a file is missing or unreadable.
    """
    ctx = _harden(ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT))
    try:
        ctx.load_verify_locations(cafile=ca)
        ctx.load_cert_chain(cert, key)
    except (OSError, ssl.SSLError) as exc:
        raise ConfigError(f"cannot load the client certificate `{cert}`: {exc}") from None
    return ctx
