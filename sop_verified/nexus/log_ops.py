"""The auditor's operations on a data directory's log, without booting SOP.

Booting appends a boot manifest to the log; these only read it. ``sop log
verify`` opens the database read-only and trusts one key: the one given, or
the data directory's genesis checkpoint key (the start of the key chain), and
says which and from where (a key from inside the data directory proves nothing
against whoever can rewrite it: :mod:`sop_verified.nexus.trusted_key`). It
checks the log against the rollback anchor, the data directory's own or a
copy given with ``--anchor``.
``sop log prove`` and ``sop log checkpoint`` open the log read-only without its
secret key (:class:`~sop_verified.nexus.data_dir_log.DataDirLog`), checking the
latest checkpoint against the public key.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from contextlib import closing, contextmanager
from pathlib import Path

import orjson

from sop_verified.errors import (
    ConfigError,
    InputError,
    IntegrityError,
    NotWitnessedError,
    StorageError,
)
from sop_verified.nexus.anchor import ANCHOR_NAME, MAX_ANCHOR_BYTES, REANCHOR_HINT, read_anchor
from sop_verified.nexus.backends import open_backend
from sop_verified.nexus.config import SOPConfig, load_config, load_mac_key
from sop_verified.nexus.data_dir_log import DataDirLog
from sop_verified.nexus.trusted_key import TrustedKey, read_vkey_arg, trusted_key
from sop_verified.nexus.witness_publisher import WITNESSED_NAME, load_published
from sop_verified.storage.postgres import PostgresBackend
from sop_verified.storage.seal_layout import SEALED
from sop_verified.storage.sqlite_log import SQLiteLogReader
from sop_verified.storage.sqlite_seal import check_state_file
from sop_verified.tools.checkpoint import Checkpoint
from sop_verified.tools.private_fs import make_private_dir, write_private
from sop_verified.tools.signed_note import Verifier, parse_note
from sop_verified.tools.tlog_audit import AuditReport, Finding, audit_log
from sop_verified.tools.tlog_receipt import HEADER, ProofBundle
from sop_verified.tools.tlog_store import LogReader

__all__ = [
    "DB_FILE",
    "audit_data_dir",
    "export_attestations",
    "latest_checkpoint",
    "parse_vkeys",
    "prove_entry",
]

DB_FILE = "sop.db"
"""The database file in a data directory (``nexus.sop.DB_NAME``)."""


def parse_vkeys(values: Iterable[str]) -> list[Verifier]:
    """Read verifier keys given as key strings or as paths of files holding one.

    Args:
        values: Key strings (``name+keyid+base64``) or file paths.

    Returns:
        The verifiers.

    Raises:
        InputError: a value is neither a readable key file nor a key string.
    """
    return [read_vkey_arg(value)[0] for value in values]


def audit_data_dir(
    data_dir: Path,
    *,
    vkey: str | None = None,
    progress: Callable[[int, int], None] | None = None,
    held: Iterable[Path | bytes] = (),
    anchor: Path | bytes | None = None,
    derived_state: bool = True,
) -> tuple[AuditReport, TrustedKey]:
    """Audit the whole log of ``data_dir``, against its rollback anchor.

    Args:
        data_dir: The data directory.
        vkey: The trusted checkpoint key (string or file); default the data
            directory's genesis key.
        progress: Called with ``(entries done, entry rows)``.
        held: Files with checkpoints seen before (signed notes or tlog-proof
            bundles), or their bytes already read; the log must still match each.
        anchor: The anchor to check against, e.g. a copy kept off the
            machine (a file, or its bytes already read from standard input);
            default the data directory's ``checkpoint.anchor``, whose absence
            is a finding once the log has checkpoints.
        derived_state: Also check the derived tables against the state seal
            (False: the caller compares them with the log itself).

    Returns:
        The report (``anchor`` says which file was checked, and what it
        holds), and the key the audit trusted with where it came from (a key
        from inside the data directory carries a warning).

    Raises:
        ConfigError: no configuration or no readable key.
        InputError: ``vkey`` is malformed, or a given ``anchor`` cannot be read.
        StorageError: the database cannot be read.
    """
    config = load_config(data_dir)
    trusted = trusted_key(data_dir, vkey)  # whose key, and what trusting it is worth
    notes = [_held_note(path) for path in held]
    note: str | None
    if isinstance(anchor, bytes):
        path: Path | str = "standard input"
        note, problem = _given_anchor_bytes(anchor), ""
    else:
        path = data_dir / ANCHOR_NAME if anchor is None else anchor
        note, problem = _anchor_note(path, given=anchor is not None)
    with _log_reader(data_dir, config) as reader:
        report = audit_log(
            reader,
            origin=config.origin,
            trusted=trusted.verifier,
            progress=progress,
            held=notes,
            anchor=note,
        )
    if note is None and report.checkpoints:  # spec: INV-5 — a lost anchor hides a cut
        why = f"{problem}, but the log holds signed checkpoints; {REANCHOR_HINT}"
        report.add("anchor", report.entries, why)  # what it lost may lie past the log's end
    source = "given" if anchor is not None else "data directory"
    report.anchor = {**(report.anchor or {}), "path": str(path), "source": source}
    report.anchor["found"] = note is not None
    if report.ok and derived_state:
        _check_derived_state(data_dir, report)
    return report, trusted


def _anchor_note(path: Path, *, given: bool) -> tuple[str | None, str]:
    """The anchor's note, or None and why; a given anchor that cannot be read is bad input."""
    try:
        note = read_anchor(path)
    except IntegrityError as exc:
        if given:
            raise InputError(str(exc), accepted="a signed checkpoint note") from None
        return None, str(exc)
    if note is None and given:
        raise InputError(f"no anchor at `{path}`", accepted="a signed checkpoint note")
    return note, f"no rollback anchor at `{path}`"


def _given_anchor_bytes(data: bytes) -> str:
    """The anchor note given on standard input: small UTF-8 text, as an anchor file is."""
    accepted = "a signed checkpoint note (a copy of a data directory's checkpoint.anchor)"
    if len(data) > MAX_ANCHOR_BYTES:
        raise InputError(
            f"the rollback anchor on standard input is larger than `{MAX_ANCHOR_BYTES}` bytes",
            accepted=accepted,
        )
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise InputError(
            f"the rollback anchor on standard input is not UTF-8: {exc}", accepted=accepted
        ) from None


def _check_derived_state(data_dir: Path, report: AuditReport) -> None:
    """Check the derived tables against the state seal (INV-11); a mismatch is a finding.

    Only when the log itself verified: the seal is bound to the log's size,
    which is worth something only once the log is known to be intact. The
    check needs the capability key (the seal is keyed); without it the report
    says the derived state was not checked, rather than pretend.
    """
    try:
        master, _ = load_mac_key(data_dir)
    except ConfigError as exc:
        report.derived_state = f"not checked: {exc}"
        return
    try:
        config = load_config(data_dir)
        if config.postgresql is None:
            tables = check_state_file(data_dir / DB_FILE, master, report.entries, config.digest())
        else:
            with closing(open_backend(data_dir, config, state_key=master)) as store:
                store.verify_state(report.entries, config.digest())
            tables = len(SEALED)
    except IntegrityError as exc:  # spec: INV-11
        report.derived_state = "failed"
        report.findings.append(Finding("derived_state", report.entries, str(exc)))
        report.total_findings += 1
        return
    report.derived_state = f"verified: {tables} derived tables match the state seal"


def _held_note(held: Path | bytes) -> str:
    """The checkpoint note in ``held`` (a file, or its bytes): a signed note, or the one a
    tlog-proof bundle carries."""
    where = "given on standard input" if isinstance(held, bytes) else f"`{held}`"
    accepted = "a signed checkpoint note, or a receipt (C2SP tlog-proof) that carries one"
    try:
        text = held.decode("utf-8") if isinstance(held, bytes) else held.read_text("utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError(f"cannot read the checkpoint {where}: {exc}", accepted=accepted) from None
    try:
        note = ProofBundle.from_text(text).checkpoint if text.startswith(HEADER + "\n") else text
        body, _ = parse_note(note)  # its shape here, where the file is known; its signature
        Checkpoint.from_text(body.decode("utf-8"))  # is checked by the audit
    except InputError as exc:
        raise InputError(f"the checkpoint {where} is not one: {exc}", accepted=accepted) from None
    return note


@contextmanager
def _log_reader(data_dir: Path, config: SOPConfig) -> Iterator[LogReader]:
    """The log's tables streamed for an audit: the SQLite file read-only, or the schema."""
    if config.postgresql is None:
        reader = SQLiteLogReader(data_dir / DB_FILE)
        try:
            yield reader
        finally:
            reader.close()
        return
    store = PostgresBackend.open(
        config.postgresql.dsn, schema=config.postgresql.schema_name, migrate=False
    )
    try:
        snapshot = store.log_reader()
        try:
            yield snapshot
        finally:
            snapshot.close()  # the snapshot it read in
    finally:
        store.close()


def prove_entry(data_dir: Path, index: int, *, unwitnessed: bool = False) -> ProofBundle:
    """Return the offline receipt of entry ``index`` against the published checkpoint.

    The published checkpoint is the latest one, or, with ``[witnesses]`` in
    ``sop.toml``, the latest one they cosigned (``witnessed.checkpoint``, checked
    against the log and the witnesses' keys), cosignatures included.

    Args:
        data_dir: The data directory.
        index: The entry.
        unwitnessed: Prove against SOP's own latest checkpoint even when witnesses
            are configured (a receipt without cosignatures).

    Returns:
        The C2SP tlog-proof bundle.

    Raises:
        InputError: ``index`` is not covered by the latest checkpoint, or no
            witnessed checkpoint is kept.
        NotWitnessedError: the entry is past the witnessed checkpoint.
        IntegrityError: the stored tail does not match the latest checkpoint, or
            the log does not extend the witnessed one.
        VerificationError: the latest checkpoint does not verify.
        StorageError: the database failed.
    """
    with DataDirLog(data_dir) as opened:
        witnesses, log = opened.config.witnesses, opened.log
        if witnesses is None or unwitnessed:
            return log.prove(index)
        path = data_dir / WITNESSED_NAME
        published, _ = load_published(path, log, witnesses)
        if published is None:
            raise InputError(
                f"no checkpoint cosigned by `{witnesses.minimum}` of the configured witnesses"
                f" is kept in `{path}` yet",
                accepted="a running SOP publishes one once they cosign; `--unwitnessed` proves"
                " against SOP's own latest checkpoint",
            )
        if not (type(index) is int and 0 <= index < published.size):
            if type(index) is int and published.size <= index < log.size:
                raise NotWitnessedError(index, published.size)
            return log.prove(index)  # not in the log: its error says so
        proof = log.inclusion_proof(index, published.size)
        return ProofBundle(index, tuple(proof), published.note, log.entry(index))


def latest_checkpoint(data_dir: Path) -> str | None:
    """Return the latest signed checkpoint note (verified against the public key), or None.

    Args:
        data_dir: The data directory.

    Returns:
        The note.

    Raises:
        IntegrityError: the stored tail does not match the latest checkpoint.
        VerificationError: the latest checkpoint does not verify.
        StorageError: the database failed.
    """
    with DataDirLog(data_dir) as opened:
        return opened.log.checkpoint_note


_ATTESTATION_MARK = b'"type":"attestation"'


def export_attestations(data_dir: Path, out_dir: Path) -> list[Path]:
    """Write every logged DSSE envelope to ``out_dir`` as ``<index>-<kind>.json``.

    Args:
        data_dir: The data directory.
        out_dir: Where to write (created if missing).

    Returns:
        The files written, in log order.

    Raises:
        ConfigError: no configuration.
        StorageError: the database cannot be read or a file cannot be written.
    """
    config = load_config(data_dir)
    written = []
    try:
        with _log_reader(data_dir, config) as reader:
            make_private_dir(out_dir)
            for index, _, payload in reader.iter_entries(4096):
                if _ATTESTATION_MARK not in payload:
                    continue
                entry = orjson.loads(payload)
                if not isinstance(entry, dict) or entry.get("type") != "attestation":
                    continue
                kind = str(entry.get("kind", "attestation")).replace("/", "_")[:64]
                path = out_dir / f"{index:012d}-{kind}.json"
                dumped = orjson.dumps(entry["envelope"], option=orjson.OPT_INDENT_2)
                write_private(path, dumped + b"\n")
                written.append(path)
    except (OSError, orjson.JSONDecodeError, KeyError) as exc:
        raise StorageError(f"cannot export the attestations: {exc}") from exc
    return written
