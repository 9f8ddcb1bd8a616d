"""`[witnesses]` in sop.toml: accepted shapes, precise errors, and the config digest kept."""

from __future__ import annotations

from pathlib import Path

import pytest

from sop_verified.errors import ConfigError
from sop_verified.nexus.config import DEFAULT_CONFIG, SOPConfig, load_config
from sop_verified.tools.cosignature import CosignatureSigner

# fixed keys: the parameters below are the test ids, the same in every xdist worker
W1 = CosignatureSigner("witness.example/w1", bytes(32)).verifier().vkey
W2 = CosignatureSigner("witness.example/w2", bytes(range(32))).verifier().vkey
DEFAULT_DIGEST = "sha256:4abe0c8a47c0dc0131a05fcb2e1ec18eb4e4fd132ca6ff22fb292695f64d61d0"
"""The default configuration's digest before `[witnesses]` existed (tests/golden)."""


def _load(tmp_path: Path, table: str) -> SOPConfig:
    (tmp_path / "sop.toml").write_text(DEFAULT_CONFIG + table)
    return load_config(tmp_path)


def _two(min_line: str = "min = 2\n") -> str:
    return (
        f"[witnesses]\n{min_line}witness = [\n"
        f'  {{ url = "http://127.0.0.1:7650/", vkey = "{W1}" }},\n'
        f'  {{ url = "https://w2.example/witness", vkey = "{W2}" }},\n]\n'
    )


def test_no_witnesses_keeps_the_config_digest_of_before(tmp_path: Path) -> None:
    config = _load(tmp_path, "")
    assert config.witnesses is None
    assert config.digest() == DEFAULT_DIGEST  # data directories made earlier boot unchanged


def test_two_witnesses_and_a_quorum(tmp_path: Path) -> None:
    config = _load(tmp_path, _two())
    assert config.witnesses is not None
    assert config.witnesses.minimum == 2
    assert [w.url for w in config.witnesses.witness] == [
        "http://127.0.0.1:7650",  # the trailing slash is dropped: `<url>/add-checkpoint`
        "https://w2.example/witness",
    ]
    assert [w.verifier().vkey for w in config.witnesses.witness] == [W1, W2]
    assert config.digest() != DEFAULT_DIGEST  # naming witnesses is a configuration change


def test_min_defaults_to_every_witness_listed(tmp_path: Path) -> None:
    config = _load(tmp_path, _two(min_line=""))
    assert config.witnesses is not None and config.witnesses.minimum == 2


def test_an_array_of_tables_is_the_same_configuration(tmp_path: Path) -> None:
    inline = _load(tmp_path, f'[witnesses]\nwitness = [{{ url = "http://a", vkey = "{W1}" }}]\n')
    tables = _load(tmp_path, f'[[witnesses.witness]]\nurl = "http://a"\nvkey = "{W1}"\n')
    assert inline == tables and inline.digest() == tables.digest()


@pytest.mark.parametrize(
    ("table", "where", "message"),
    [
        (_two("min = 3\n"), "witnesses", "`min = 3` cosignatures cannot come from the `2`"),
        (_two("min = 0\n"), "witnesses.min", "greater than or equal to 1"),
        (_two('min = "2"\n'), "witnesses.min", "valid integer"),
        ("[witnesses]\nmin = 1\n", "witnesses.witness", "Field required"),
        ("[witnesses]\nwitness = []\n", "witnesses.witness", "at least 1 item"),
        (_two().replace("http://127.0.0.1:7650/", "ftp://x"), "witness.0.url", "accepted: `http"),
        (_two().replace("127.0.0.1", "user:pw@127.0.0.1"), "witness.0.url", "without credentials"),
        (_two().replace(":7650/", ":99999"), "witness.0.url", "is not accepted"),
        (_two().replace(":7650/", ":7650/?a=1"), "witness.0.url", "is not accepted"),
        (_two().replace(W1, "w1+00000000+AAAA"), "witness.0.vkey", "cosigner key"),
        (_two().replace(W2, W1), "witnesses", "is listed twice"),
        (_two().replace("https://w2.example/witness", "http://127.0.0.1:7650"), "witnesses", "url"),
        (_two().replace("vkey = ", 'name = "x", vkey = '), "witness.0.name", "Extra inputs"),
        (_two() + "retries = 3\n", "witnesses.retries", "Extra inputs"),
        (_two() + "max_backoff_seconds = 0\n", "max_backoff_seconds", "greater than or equal"),
        ("witnesses = 2\n", "witnesses", "valid dictionary"),
    ],
)
def test_bad_witnesses_table_is_a_precise_config_error(
    tmp_path: Path, table: str, where: str, message: str
) -> None:
    if table.startswith("witnesses ="):  # a key, not a table: it must come before any table
        (tmp_path / "sop.toml").write_text(table + DEFAULT_CONFIG)
        with pytest.raises(ConfigError) as caught:
            load_config(tmp_path)
    else:
        with pytest.raises(ConfigError) as caught:
            _load(tmp_path, table)
    text = str(caught.value)
    assert message in text, text
    assert f"sop.toml:{where}" in text or f"sop.toml:witnesses.{where}" in text, text
