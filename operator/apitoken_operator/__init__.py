"""dynatrace-apitoken-operator: Dynatrace API tokens declared as Kubernetes ApiToken resources."""

from apitoken_operator.version import __version__

__all__ = ["__version__"]
