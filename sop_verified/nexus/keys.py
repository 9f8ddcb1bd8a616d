"""The log's keys in the data directory: checkpoint (C2SP note) and attestation (DSSE).

``sop init`` creates, besides the capability MAC key:

- ``keys/checkpoint.key``: the checkpoint signer, a C2SP signed-note Ed25519
  key string named after the log's origin (0600); ``keys/checkpoint.vkey`` is
  its public verifier key, and ``keys/checkpoint.genesis.vkey`` the first
  one, where an audit of the whole log starts its key chain;
- ``keys/attestation.key``: the Ed25519 key that signs DSSE envelopes, PKCS#8
  PEM (0600); ``keys/attestation.pub`` is its public key (SubjectPublicKeyInfo PEM).

Secrets are created with ``O_EXCL | O_NOFOLLOW`` and mode 0600, fsynced, and
refused at load when group or others can read them. Rotating the checkpoint
key stages the new key as ``checkpoint.key.next``, logs the announcement
under the old key, then renames; a boot that finds a staged key finishes or
drops the rotation, depending on whether the log already announced it.
"""

from __future__ import annotations

import hashlib
import os
import stat
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from sop_verified.errors import ConfigError, InputError
from sop_verified.tools.private_fs import create_private_file, make_private_dir, write_private
from sop_verified.tools.signed_note import Signer, Verifier, generate

__all__ = [
    "ATTESTATION_KEY",
    "ATTESTATION_PUB",
    "CHECKPOINT_GENESIS",
    "CHECKPOINT_KEY",
    "CHECKPOINT_VKEY",
    "attestation_key_id",
    "create_log_keys",
    "load_attestation_key",
    "load_checkpoint_signer",
    "load_staged_signer",
    "public_pem",
    "read_vkey",
    "stage_checkpoint_key",
    "unstage_checkpoint_key",
    "write_public",
    "write_secret",
]

CHECKPOINT_KEY = "keys/checkpoint.key"
CHECKPOINT_VKEY = "keys/checkpoint.vkey"
CHECKPOINT_GENESIS = "keys/checkpoint.genesis.vkey"
STAGED_KEY = "keys/checkpoint.key.next"
ATTESTATION_KEY = "keys/attestation.key"
ATTESTATION_PUB = "keys/attestation.pub"


def write_secret(path: Path, data: bytes) -> None:
    """Create ``path`` mode 0600 (no symlink followed, never overwritten) and fsync it."""
    make_private_dir(path.parent)
    fd = create_private_file(path)
    try:
        os.write(fd, data)
        os.fsync(fd)
    finally:
        os.close(fd)


def write_public(path: Path, text: str) -> None:
    """Write a public key file atomically (temp file, fsync, rename), 0600 like every file.

    Args:
        path: The destination.
        text: The content.
    """
    make_private_dir(path.parent)
    write_private(path, text.encode("utf-8"))


def _read_secret(path: Path, what: str) -> bytes:
    try:
        st = path.lstat()
        if stat.S_ISLNK(st.st_mode):
            raise ConfigError(f"`{path}` is a symbolic link", accepted=f"a regular file ({what})")
        data = path.read_bytes()
    except FileNotFoundError:
        raise ConfigError(f"no {what} at `{path}`", accepted="run `sop init`") from None
    if st.st_mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise ConfigError(f"`{path}` is readable by others", accepted="mode 0600 (chmod 600)")
    return data


def public_pem(key: Ed25519PrivateKey) -> str:
    """Return the SubjectPublicKeyInfo PEM of ``key``'s public half.

    Args:
        key: An Ed25519 private key.

    Returns:
        The PEM text.
    """
    return (
        key.public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        .decode()
    )


def attestation_key_id(key: Ed25519PrivateKey) -> str:
    """Return the DSSE key id of an attestation key: hex SHA-256 of the raw public key.

    Args:
        key: The Ed25519 private key.

    Returns:
        64 lowercase hex digits.
    """
    return hashlib.sha256(key.public_key().public_bytes_raw()).hexdigest()


def create_log_keys(data_dir: Path, origin: str) -> None:
    """Create the checkpoint and attestation keys (0600) and their public halves.

    Args:
        data_dir: The data directory being initialised.
        origin: The log's origin (``origin`` in sop.toml), the checkpoint key's name.

    Raises:
        FileExistsError: a key file already exists (keys are never overwritten).
        InputError: ``origin`` is not a valid key name.
    """
    skey, vkey = generate(origin)
    write_secret(data_dir / CHECKPOINT_KEY, skey.encode())
    write_public(data_dir / CHECKPOINT_VKEY, vkey + "\n")
    write_public(data_dir / CHECKPOINT_GENESIS, vkey + "\n")
    key = Ed25519PrivateKey.generate()
    pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    write_secret(data_dir / ATTESTATION_KEY, pem)
    write_public(data_dir / ATTESTATION_PUB, public_pem(key))


def _signer(path: Path, origin: str) -> Signer:
    raw = _read_secret(path, "checkpoint key")
    try:
        signer = Signer.from_string(raw.decode("ascii").strip())
    except (UnicodeDecodeError, InputError) as exc:
        raise ConfigError(f"`{path}` is not a C2SP signer key: {exc}") from None
    if signer.name != origin:
        raise ConfigError(
            f"checkpoint key `{path}` is named `{signer.name}`", accepted=f"the origin `{origin}`"
        )
    return signer


def load_checkpoint_signer(data_dir: Path, origin: str) -> Signer:
    """Load the checkpoint signer; its key name must be the log's origin.

    Args:
        data_dir: The data directory.
        origin: The configured origin.

    Returns:
        The signer.

    Raises:
        ConfigError: missing, readable by others, malformed, or named otherwise.
    """
    return _signer(data_dir / CHECKPOINT_KEY, origin)


def load_staged_signer(data_dir: Path, origin: str) -> Signer | None:
    """Load the key a rotation staged, if one is staged.

    Args:
        data_dir: The data directory.
        origin: The configured origin.

    Returns:
        The staged signer, or None.

    Raises:
        ConfigError: the staged key is unreadable or malformed.
    """
    path = data_dir / STAGED_KEY
    return _signer(path, origin) if path.exists() else None


def stage_checkpoint_key(data_dir: Path, origin: str) -> Signer:
    """Create a fresh checkpoint key as ``checkpoint.key.next`` (0600).

    Args:
        data_dir: The data directory.
        origin: The configured origin (the key's name).

    Returns:
        The staged signer.

    Raises:
        ConfigError: a rotation is already staged.
    """
    path = data_dir / STAGED_KEY
    if path.exists():
        raise ConfigError(f"a key rotation is already staged at `{path}`", accepted="boot first")
    skey, _ = generate(origin)
    write_secret(path, skey.encode())
    return _signer(path, origin)


def unstage_checkpoint_key(data_dir: Path, origin: str, *, commit: bool) -> None:
    """Finish (``commit``: the staged key replaces the current one) or drop a rotation.

    Args:
        data_dir: The data directory.
        origin: The configured origin.
        commit: True once the log announced the staged key.

    Raises:
        ConfigError: the staged key is unreadable or malformed.
    """
    path = data_dir / STAGED_KEY
    if commit:
        signer = _signer(path, origin)
        os.replace(path, data_dir / CHECKPOINT_KEY)
        write_public(data_dir / CHECKPOINT_VKEY, signer.verifier().vkey + "\n")
    else:
        path.unlink(missing_ok=True)
    fd = os.open(data_dir / "keys", os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def read_vkey(path: Path) -> Verifier:
    """Read a verifier key string from a file.

    Args:
        path: A file holding one C2SP verifier key string.

    Returns:
        The verifier.

    Raises:
        ConfigError: the file is missing or does not hold a verifier key.
    """
    expected = "expected a file holding one C2SP verifier key string (`name+keyid+base64`)"
    try:
        text = path.read_text(encoding="utf-8").strip()
    except OSError as exc:
        why = exc.strerror or type(exc).__name__
        raise ConfigError(f"cannot read a verifier key from `{path}`: {why}; {expected}") from None
    except UnicodeDecodeError:
        raise ConfigError(f"`{path}` is not UTF-8 text; {expected}") from None
    if not text:
        raise ConfigError(f"`{path}` is empty; {expected}")
    try:
        return Verifier.from_string(text)
    except InputError as exc:
        raise ConfigError(f"`{path}` does not hold a verifier key: {exc}") from None


def load_attestation_key(data_dir: Path) -> Ed25519PrivateKey:
    """Load the attestation signing key.

    Args:
        data_dir: The data directory.

    Returns:
        The Ed25519 private key.

    Raises:
        ConfigError: missing, readable by others, or not an Ed25519 PKCS#8 PEM key.
    """
    path = data_dir / ATTESTATION_KEY
    raw = _read_secret(path, "attestation key")
    try:
        key = serialization.load_pem_private_key(raw, password=None)
    except (ValueError, TypeError) as exc:
        raise ConfigError(f"`{path}` is not a PEM private key: {exc}") from None
    if not isinstance(key, Ed25519PrivateKey):
        raise ConfigError(f"`{path}` is not an Ed25519 key", accepted="an Ed25519 PKCS#8 PEM key")
    return key
