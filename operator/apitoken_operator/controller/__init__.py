"""The controller: gathers state from Kubernetes and Dynatrace, asks `reconcile.plan`, carries it out."""
