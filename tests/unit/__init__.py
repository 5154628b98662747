"""Fast, I/O-free unit tests of the pure decision layer (no cluster, no Dynatrace, no clock)."""
