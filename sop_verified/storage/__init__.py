"""storage: backends behind the kernel ports (SQLite, the embedded default)."""
