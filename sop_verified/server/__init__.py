"""server: the HTTP adapter of the Runtime Bridge and the admin API (not built yet)."""
