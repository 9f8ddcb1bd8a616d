"""nexus."""
