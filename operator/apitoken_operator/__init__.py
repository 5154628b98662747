"""dynatrace-apitoken-operator: Dynatrace API tokens declared as Kubernetes ApiToken resources."""

from apitoken_operator import lazy_client
from apitoken_operator.version import __version__

# Before anything imports kopf or kubernetes_asyncio (see lazy_client: ~45 MB of models not loaded)
lazy_client.install()

__all__ = ["__version__"]
