"""The ApiToken API: its group, its versioned models and the CRD generated from them.

Imports only pydantic and the standard library (pyyaml only in `crd.write`), so every layer, the pure
`reconcile` included, can use it.
"""
