"""The API group and the names under it: the one definition every other module imports.

Annotations, labels and the finalizer share the group as their prefix, so a rename is one edit here.
"""

from __future__ import annotations

GROUP = "dynatrace.apitokens.io"
VERSION = "v1alpha1"
API_VERSION = f"{GROUP}/{VERSION}"
KIND = "ApiToken"
LIST_KIND = f"{KIND}List"
PLURAL = "apitokens"
SINGULAR = "apitoken"
SHORT_NAMES = ("dtapitoken", "dtat")
CATEGORIES = ("dynatrace",)
#: the CustomResourceDefinition's name
CRD_NAME = f"{PLURAL}.{GROUP}"
#: the prefix of the operator's annotations, labels and finalizer: `dynatrace.apitokens.io/<name>`
PREFIX = f"{GROUP}/"


def qualified(name: str) -> str:
    """`name` under the group's prefix, e.g. `rotate` → `dynatrace.apitokens.io/rotate`."""
    return PREFIX + name
