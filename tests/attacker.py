"""The attacker of the threat model (INV-11): write access to ``sop.db``, none to the key files.

He opens the database with plain ``sqlite3`` (no SOP functions registered)
and drops whatever triggers stand in his way, the state seal's included,
before editing rows. Tests use :func:`attacker_db` to act as him.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

__all__ = ["attacker_db", "drop_triggers"]


def drop_triggers(db: sqlite3.Connection) -> None:
    """Drop every trigger of the database (insert-only guards and the seal's upkeep)."""
    names = [r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type = 'trigger'")]
    for name in names:
        db.execute(f'DROP TRIGGER "{name}"')


def attacker_db(path: Path) -> sqlite3.Connection:
    """A connection to the database at ``path`` with every trigger dropped (autocommit)."""
    db = sqlite3.connect(str(path), isolation_level=None)
    drop_triggers(db)
    return db
