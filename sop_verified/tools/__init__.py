"""Tools without authority: canonical JSON, hashing, paths and globs, Merkle, notes.

Nothing here decides anything; core/ calls these, never the other way round.
"""

__all__: list[str] = []
