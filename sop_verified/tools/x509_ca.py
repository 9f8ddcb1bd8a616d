"""The local certificate authority of the bridge plane's mutual TLS (X.509, ECDSA P-256).

``sop init`` (or ``sop certs init`` for a data directory made before it did)
creates, in ``keys/tls/`` (0700, every file 0600):

- ``ca.pem`` and ``ca.key``: a self-signed CA, valid 10 years,
  BasicConstraints CA with path length 0 (it signs leaves only), KeyUsage
  keyCertSign and cRLSign;
- ``server.pem`` and ``server.key``: the server's certificate, valid 2 years,
  signed by the CA, for ``DNS:localhost``, ``IP:127.0.0.1`` and ``IP:::1``,
  extended key usage serverAuth.

Every certificate carries SubjectKeyIdentifier and AuthorityKeyIdentifier.
The keys are ECDSA P-256 rather than Ed25519: every OpenSSL that Python's
``ssl`` links, and every TLS client (curl, browsers, Go, Java), accepts P-256
certificates for TLS 1.2 and 1.3, while Ed25519 certificates are refused by
many of them (and by TLS 1.2 stacks without RFC 8422 support).

The CA certificate lives under ``keys/`` with its key, not beside the
database: the threat model is an attacker who can write the data directory but
not the key files, and a CA certificate they could swap would let them mint
client certificates for any principal.

This module knows nothing of principals; ``sop_verified.server.certs`` issues
client certificates with it.
"""

from __future__ import annotations

import hashlib
import ipaddress
import os
import stat
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID, ObjectIdentifier

from sop_verified.errors import ConfigError
from sop_verified.tools.private_fs import make_private_dir, write_private_new

__all__ = [
    "AUTHORITY_FILES",
    "CA_CERT",
    "CA_DAYS",
    "CA_KEY",
    "SERVER_CERT",
    "SERVER_DAYS",
    "SERVER_KEY",
    "TLS_DIR",
    "Authority",
    "cert_pem",
    "create_authority",
    "fingerprint",
    "key_pem",
    "load_authority",
    "read_private",
    "sign_leaf",
    "utc_now",
]

TLS_DIR = "keys/tls"
CA_CERT = "keys/tls/ca.pem"
CA_KEY = "keys/tls/ca.key"
SERVER_CERT = "keys/tls/server.pem"
SERVER_KEY = "keys/tls/server.key"
AUTHORITY_FILES = (CA_CERT, CA_KEY, SERVER_CERT, SERVER_KEY)
CA_DAYS = 3650
SERVER_DAYS = 730
SERVER_DNS = ("localhost",)
SERVER_IPS = ("127.0.0.1", "::1")


@dataclass(frozen=True, slots=True)
class Authority:
    """The CA's certificate and key, as loaded from ``keys/tls/``."""

    certificate: x509.Certificate
    key: ec.EllipticCurvePrivateKey


def utc_now(now: datetime | None) -> datetime:
    """``now`` (the wall clock when None) in UTC, to the second, as certificates hold time.

    Raises:
        ValueError: ``now`` is naive (caller misuse).
    """
    if now is None:
        now = datetime.now(UTC)
    if now.tzinfo is None:
        raise ValueError("`now` must be timezone-aware")
    return now.astimezone(UTC).replace(microsecond=0)


def fingerprint(cert: x509.Certificate) -> str:
    """``sha256:<hex>`` of the certificate's DER encoding."""
    der = cert.public_bytes(serialization.Encoding.DER)
    return "sha256:" + hashlib.sha256(der).hexdigest()


def cert_pem(cert: x509.Certificate) -> bytes:
    """The certificate in PEM."""
    return cert.public_bytes(serialization.Encoding.PEM)


def key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    """The private key in unencrypted PKCS#8 PEM (it is protected by its file's mode)."""
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


def _new_key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def _builder(
    subject: x509.Name, issuer: x509.Name, public: ec.EllipticCurvePublicKey, start: datetime
) -> x509.CertificateBuilder:
    return (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer)
        .public_key(public)
        .serial_number(x509.random_serial_number())
        .not_valid_before(start)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(public), critical=False)
    )


def _ca(now: datetime) -> Authority:
    key = _new_key()
    ski = x509.SubjectKeyIdentifier.from_public_key(key.public_key())
    name = x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "SOP"),
            x509.NameAttribute(NameOID.COMMON_NAME, f"SOP local CA {ski.digest[:4].hex()}"),
        ]
    )
    cert = (
        _builder(name, name, key.public_key(), now)
        .not_valid_after(now + timedelta(days=CA_DAYS))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=False,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ski), critical=False
        )
        .sign(key, hashes.SHA256())
    )
    return Authority(cert, key)


def sign_leaf(
    authority: Authority,
    *,
    common_name: str,
    names: list[x509.GeneralName],
    usage: ObjectIdentifier,
    start: datetime,
    days: int,
) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    """Sign a new end-entity certificate (and make its key) with the CA.

    Args:
        authority: The CA.
        common_name: The subject's CN (informational: SOP reads identities from the SAN).
        names: The SubjectAlternativeName entries.
        usage: The one extended key usage (serverAuth or clientAuth).
        start: notBefore (UTC, whole seconds).
        days: The validity from ``start``.

    Returns:
        The certificate and its new private key.
    """
    key = _new_key()
    issuer_ski = authority.certificate.extensions.get_extension_for_class(
        x509.SubjectKeyIdentifier
    ).value
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
    cert = (
        _builder(subject, authority.certificate.subject, key.public_key(), start)
        .not_valid_after(start + timedelta(days=days))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=False,
                crl_sign=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
        .add_extension(x509.SubjectAlternativeName(names), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(issuer_ski),
            critical=False,
        )
        .sign(authority.key, hashes.SHA256())
    )
    return cert, key


def create_authority(data_dir: Path, *, now: datetime | None = None) -> None:
    """Create the local CA and the server certificate in ``data_dir/keys/tls/``.

    Args:
        data_dir: An existing data directory.
        now: The issuing time (tests pin it); the wall clock when None.

    Raises:
        ConfigError: ``data_dir`` is not a directory, or any of the four files exists
            already (they are never replaced).
        OSError: a file cannot be written.
    """
    if not data_dir.is_dir():
        raise ConfigError(f"no data directory at `{data_dir}`", accepted="run `sop init`")
    existing = [name for name in AUTHORITY_FILES if os.path.lexists(data_dir / name)]
    if existing:
        raise ConfigError(
            "the local certificate authority exists already: "
            + ", ".join(f"`{data_dir / name}`" for name in existing),
            accepted=f"a data directory without `{TLS_DIR}/`; to start over remove "
            f"`{data_dir / TLS_DIR}` and run `sop certs init` (every client certificate "
            "issued by the old CA then stops working)",
        )
    start = utc_now(now)
    ca = _ca(start)
    names: list[x509.GeneralName] = [x509.DNSName(d) for d in SERVER_DNS]
    names += [x509.IPAddress(ipaddress.ip_address(ip)) for ip in SERVER_IPS]
    server, server_key = sign_leaf(
        ca,
        common_name=SERVER_DNS[0],
        names=names,
        usage=ExtendedKeyUsageOID.SERVER_AUTH,
        start=start,
        days=SERVER_DAYS,
    )
    make_private_dir(data_dir / TLS_DIR)
    for name, data in (
        (CA_KEY, key_pem(ca.key)),
        (CA_CERT, cert_pem(ca.certificate)),
        (SERVER_KEY, key_pem(server_key)),
        (SERVER_CERT, cert_pem(server)),
    ):
        try:
            write_private_new(data_dir / name, data)
        except FileExistsError:  # made meanwhile by someone else: never replaced
            raise ConfigError(
                f"`{data_dir / name}` appeared while the authority was being made",
                accepted=f"one `sop certs init` at a time; remove `{data_dir / TLS_DIR}` and retry",
            ) from None


def read_private(path: Path, what: str) -> bytes:
    """Read a file of ``keys/tls/``: a regular file (no symlink) that only its owner can use.

    Args:
        path: The file.
        what: What it holds, for the message.

    Returns:
        Its bytes.

    Raises:
        ConfigError: missing, a symlink or not a regular file, or open to group or others.
    """
    try:
        st = path.lstat()
    except FileNotFoundError:
        raise ConfigError(
            f"no {what} at `{path}`",
            accepted="run `sop init`, or `sop certs init` for a data directory made before "
            "`sop init` created the TLS authority",
        ) from None
    if not stat.S_ISREG(st.st_mode):
        raise ConfigError(f"`{path}` is not a regular file", accepted=f"the {what}, mode 0600")
    if st.st_mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise ConfigError(
            f"`{path}` is open to others (mode {stat.S_IMODE(st.st_mode):04o})",
            accepted="mode 0600 (chmod 600)",
        )
    return path.read_bytes()


def load_authority(data_dir: Path) -> Authority:
    """Load the CA's certificate and key from ``data_dir/keys/tls/``.

    Args:
        data_dir: The data directory.

    Returns:
        The CA.

    Raises:
        ConfigError: a file is missing, open to others, malformed, or the key is not the
            certificate's.
    """
    cert_path, key_path = data_dir / CA_CERT, data_dir / CA_KEY
    cert_bytes = read_private(cert_path, "CA certificate")
    key_bytes = read_private(key_path, "CA key")
    try:
        cert = x509.load_pem_x509_certificate(cert_bytes)
        key = serialization.load_pem_private_key(key_bytes, password=None)
    except ValueError as exc:
        raise ConfigError(
            f"cannot read the TLS authority in `{data_dir / TLS_DIR}`: {exc}"
        ) from None
    if not isinstance(key, ec.EllipticCurvePrivateKey) or key.public_key() != cert.public_key():
        raise ConfigError(
            f"`{key_path}` is not the key of `{cert_path}`", accepted="the pair `sop init` made"
        )
    return Authority(cert, key)
