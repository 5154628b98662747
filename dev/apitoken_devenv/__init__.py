"""The local development environment: a real control plane built from Go modules, and the demo."""
