"""storage: backends behind backend-neutral ports (storage/ports.py); SQLite is the default."""
