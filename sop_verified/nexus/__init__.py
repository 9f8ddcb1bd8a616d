"""nexus: wiring only — deterministic boot, service registry, health, the SOP facade."""
