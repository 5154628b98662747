"""ApiToken manifests that adopt existing tokens: names, checks, documents and their YAML.

Pure functions, no I/O. Every field the operator compares (name, scopes, enabled, personalAccessToken,
expirationDate) is written exactly as Dynatrace reported it, so that applying the manifests makes the
operator adopt each token without a create and without a PUT. A token that cannot be written that
way (a name the CRD rejects, a scope outside the CRD's pattern, an id in an unknown format) is
refused with `Unexportable`, never approximated: an approximated field would be "corrected" in
Dynatrace by the first reconcile.
"""

from __future__ import annotations

import base64
import hashlib
import re
import unicodedata
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import yaml

from apitoken_operator.api import v1alpha1
from apitoken_operator.api.group import API_VERSION, KIND
from apitoken_operator.dynatrace.dates import DateFormatError, is_relative, parse_date
from apitoken_operator.dynatrace.models import ApiToken
from apitoken_operator.dynatrace.secrets import TOKEN_ID_PATTERN
from apitoken_operator.reconcile import creation
from apitoken_operator.reconcile.attention import ROTATE_ANNOTATION

__all__ = [
    "API_VERSION",
    "DELETION_POLICIES",
    "KIND",
    "NAME_MAX_LENGTH",
    "SUFFIX_LENGTH",
    "Manifest",
    "Unexportable",
    "build_manifests",
    "check_token",
    "metadata_name",
    "render_stream",
    "slug",
]

DELETION_POLICIES = ("Orphan", "Delete")
#: A DNS-1123 label: metadata.name also names the Secret, and labels and selectors are happiest at 63.
NAME_MAX_LENGTH = 63
#: Characters of the id's digest appended to every name (40 bits of base32).
SUFFIX_LENGTH = 8
#: Base32 characters in a SHA-256 digest (without padding): the longest suffix.
_DIGEST_LENGTH = 52
#: The slug when a token's name has no ASCII letter or digit at all (e.g. a name in Chinese).
FALLBACK_SLUG = "token"

# What the CRD accepts: the API's own limits (the CRD is generated from them).
_NAME_MAX = v1alpha1.NAME_MAX_LENGTH
_SCOPES_MAX = v1alpha1.SCOPES_MAX_ITEMS
_SCOPE_MAX = v1alpha1.SCOPE_MAX_LENGTH
_SCOPE = re.compile(v1alpha1.SCOPE_PATTERN)
_EXPIRATION_MAX = v1alpha1.EXPIRATION_MAX_LENGTH
_NOT_ALNUM = re.compile(r"[^a-z0-9]+")
#: Any fixed instant: an absolute date is parsed only to check its format.
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


class Unexportable(ValueError):
    """The token cannot be declared faithfully by an ApiToken; the message says why (never a secret)."""


def slug(text: str, *, limit: int = NAME_MAX_LENGTH) -> str:
    """Lower-case ASCII letters and digits joined by single hyphens, at most `limit` characters.

    Accents are dropped (`Überwachung` → `uberwachung`); anything else that is not a letter or digit
    becomes a hyphen. Empty when nothing is left.
    """
    decomposed = unicodedata.normalize("NFKD", text)
    ascii_text = decomposed.encode("ascii", "ignore").decode("ascii").lower()
    return _NOT_ALNUM.sub("-", ascii_text).strip("-")[:limit].rstrip("-")


def id_suffix(token_id: str, length: int = SUFFIX_LENGTH) -> str:
    """A digest of the id in lower-case base32: stable, spread evenly whatever the id's structure."""
    digest = base64.b32encode(hashlib.sha256(token_id.encode("utf-8")).digest()).decode("ascii")
    return digest.lower()[:length]


def metadata_name(token_name: str, token_id: str, *, suffix_length: int = SUFFIX_LENGTH) -> str:
    """`<slug of the token name>-<digest of the id>`: a DNS-1123 label of at most 63 characters."""
    suffix = id_suffix(token_id, suffix_length)
    stem = slug(token_name, limit=NAME_MAX_LENGTH - len(suffix) - 1) or FALLBACK_SLUG
    return f"{stem}-{suffix}"


def check_token(token: ApiToken) -> None:
    """Raise `Unexportable` unless the token can be declared exactly as Dynatrace reports it."""
    if token.id is None or not TOKEN_ID_PATTERN.fullmatch(token.id):
        raise Unexportable("its id is not in the documented format dt0c01.<24 characters>")
    name = token.name
    if name is None or not name:
        raise Unexportable("it has no name (spec.name is required)")
    if len(name) > _NAME_MAX:
        raise Unexportable(f"its name is longer than {_NAME_MAX} characters (the CRD's limit)")
    if name.strip() != name:
        raise Unexportable("its name starts or ends with whitespace, which the CRD rejects")
    if not _encodable(name):
        raise Unexportable("its name is not valid Unicode text")
    if creation.is_marked(name):
        raise Unexportable(
            "it is being created by an apitoken-operator (its name carries a create attempt's mark), "
            "or was left by a create whose answer was lost, which that operator deletes"
        )
    if token.enabled is None:
        raise Unexportable("Dynatrace did not report whether it is enabled")
    if token.scopes is None:
        raise Unexportable("Dynatrace did not report its scopes")
    scopes = set(token.scopes)
    if not scopes:
        raise Unexportable("it has no scopes (spec.scopes needs at least one)")
    if len(scopes) > _SCOPES_MAX:
        raise Unexportable(f"it has more than {_SCOPES_MAX} scopes (the CRD's limit)")
    for scope in sorted(scopes):
        if len(scope) > _SCOPE_MAX or not _SCOPE.match(scope):
            raise Unexportable(f"its scope {ascii(scope)[:140]} is not a scope name the CRD accepts")
    expiration = token.expiration_date
    if expiration is not None:
        if len(expiration) > _EXPIRATION_MAX or is_relative(expiration):
            raise Unexportable(f"its expirationDate {ascii(expiration)[:80]} is not an absolute date")
        try:
            parse_date(expiration, now=_EPOCH)
        except DateFormatError as error:
            raise Unexportable(f"its expirationDate {ascii(expiration)[:80]} cannot be read") from error


def _encodable(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:  # a lone surrogate decoded from JSON
        return False
    return True


@dataclass(frozen=True)
class Manifest:
    """One ApiToken document and the comment written above it."""

    name: str
    token_id: str
    document: dict[str, Any]
    header: str

    def render(self) -> str:
        """The header comment followed by the document, as YAML that loads back to the same values.

        Unicode is written as is, except in a document holding a character YAML reads as a line break
        (NEL, LS, PS) or a byte order mark: PyYAML would write those raw and read them back as a space,
        so such a document is written with escapes (`\\x85`) instead.
        """
        body = yaml.safe_dump(
            self.document,
            sort_keys=False,
            allow_unicode=not _needs_escapes(self.document),
            default_flow_style=False,
            width=4096,
        )
        return self.header + body


_YAML_BREAKS = re.compile("[\x85\u2028\u2029\ufeff]")


def _needs_escapes(node: Any) -> bool:
    if isinstance(node, str):
        return _YAML_BREAKS.search(node) is not None
    if isinstance(node, dict):
        return any(_needs_escapes(key) or _needs_escapes(value) for key, value in node.items())
    if isinstance(node, list):
        return any(_needs_escapes(item) for item in node)
    return False


def build_document(
    token: ApiToken,
    *,
    name: str,
    namespace: str | None = None,
    deletion_policy: str = "Orphan",
    connection_secret: str | None = None,
) -> dict[str, Any]:
    """The ApiToken adopting `token`; call `check_token` first."""
    assert token.id is not None and token.name is not None and token.scopes is not None
    metadata: dict[str, Any] = {"name": name}
    if namespace is not None:
        metadata["namespace"] = namespace
    spec: dict[str, Any] = {
        "name": token.name,
        "scopes": sorted(set(token.scopes)),
        "enabled": token.enabled is True,
        "personalAccessToken": token.personal_access_token is True,
    }
    if token.expiration_date is not None:
        spec["expirationDate"] = token.expiration_date
    spec["adoptTokenId"] = token.id
    spec["deletionPolicy"] = deletion_policy
    spec["secret"] = {"name": name}
    if connection_secret is not None:
        spec["connectionSecretRef"] = {"name": connection_secret}
    return {"apiVersion": API_VERSION, "kind": KIND, "metadata": metadata, "spec": spec}


def header(token: ApiToken, *, source: str) -> str:
    """Comment lines saying where the document came from and why its Secret starts empty."""
    facts = [f"the Dynatrace token {token.id}"]
    if token.owner:
        facts.append(f"owner {_one_line(token.owner)}")
    if token.creation_date:
        facts.append(f"created {_one_line(token.creation_date)}")
    lines = [
        f"Exported by `apitoken-operator export` from {_one_line(source)}; adopts",
        ", ".join(facts) + ".",
        "The token's secret is not included: Dynatrace returns a secret only once, when the token is",
        "created. The operator reports in the ApiToken's status that the Secret holds no value yet;",
        f"rotating the token (annotate {ROTATE_ANNOTATION}=<any new value>) fills the Secret.",
    ]
    return "".join(f"# {line}\n" for line in lines)


def _one_line(text: str) -> str:
    """Printable ASCII only, so that nothing in it can end the comment (YAML also breaks on U+2028)."""
    return "".join(char if " " <= char <= "~" else ascii(char)[1:-1] for char in text)


def build_manifests(
    tokens: Iterable[ApiToken],
    *,
    source: str,
    namespace: str | None = None,
    deletion_policy: str = "Orphan",
    connection_secret: str | None = None,
) -> list[Manifest]:
    """One manifest per token (each already checked), sorted by metadata.name, every name unique.

    Two names can only collide when two tokens' slugs and id digests both agree; those tokens get
    longer digests until they differ. That never happens in practice (40 bits among tokens of one
    name), but the export must be correct even then.
    """
    pending = {token.id: token for token in tokens if token.id is not None}
    names: dict[str, str] = {}
    length = SUFFIX_LENGTH
    undecided = sorted(pending)
    while undecided:
        proposed = {
            token_id: metadata_name(pending[token_id].name or "", token_id, suffix_length=length)
            for token_id in undecided
        }
        taken = set(names.values())
        counts = Counter(proposed.values())
        retry = []
        for token_id, value in proposed.items():
            if counts[value] == 1 and value not in taken:
                names[token_id] = value
            else:
                retry.append(token_id)
        if retry and length == _DIGEST_LENGTH:
            raise AssertionError("two token ids have the same SHA-256 digest")  # pragma: no cover
        undecided = retry
        length = min(length * 2, _DIGEST_LENGTH)
    manifests = [
        Manifest(
            name=names[token_id],
            token_id=token_id,
            document=build_document(
                token,
                name=names[token_id],
                namespace=namespace,
                deletion_policy=deletion_policy,
                connection_secret=connection_secret,
            ),
            header=header(token, source=source),
        )
        for token_id, token in pending.items()
    ]
    return sorted(manifests, key=lambda manifest: manifest.name)


def render_stream(manifests: Iterable[Manifest]) -> str:
    """One multi-document YAML stream: each document starts with `---` and its header comment."""
    return "".join(f"---\n{manifest.render()}" for manifest in manifests)
