"""Pure reconcile decisions: observed state in, actions out.

All the functions here are purely computational. No external calls or any I/O activities are done here
(no Kubernetes, no Dynatrace, no kopf, no clock): `now` arrives in the input.
"""

from apitoken_operator.reconcile.model import Desired, Input, Recorded, SecretFacts
from apitoken_operator.reconcile.plan import Plan, plan

__all__ = ["Desired", "Input", "Plan", "Recorded", "SecretFacts", "plan"]
