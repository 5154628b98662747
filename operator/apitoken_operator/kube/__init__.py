"""Kubernetes I/O through kubernetes_asyncio, so no call blocks kopf's event loop."""
