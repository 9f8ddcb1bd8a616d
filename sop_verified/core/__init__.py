"""core: the authority (kernel, capabilities, policy, proof gate); decisions, I/O via ports."""
