"""Inputs for the planner, built by hand (table tests) or generated (hypothesis properties).

Token ids follow the real format `dt0c01.<24 of [A-Z0-9]>`. Full tokens (id + 64-character secret part)
are only ever made at run time: a full token literal in the repository would trip its leak checks.
"""

from __future__ import annotations

import secrets
import string
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

from hypothesis import strategies as st

from apitoken_operator.dynatrace.dates import format_date
from apitoken_operator.dynatrace.models import ApiToken
from apitoken_operator.reconcile import creation
from apitoken_operator.reconcile.model import Desired, Input, PendingCreate, Recorded, SecretFacts
from apitoken_operator.reconcile.secret_layout import secret_annotations, secret_labels
from apitoken_operator.settings import PolicySettings

NOW = datetime(2030, 6, 1, 12, 0, 0, tzinfo=UTC)
REFERENCE = "team-a/web"
ALPHABET = string.ascii_uppercase + string.digits
OLD_SECRET = "web-previous"


def tid(n: int) -> str:
    """A well-formed token id, deterministic and easy to tell apart in failures."""
    return f"dt0c01.{n:024d}"


def secret_part() -> str:
    """A random 64-character secret part, made at run time."""
    return "".join(secrets.choice(ALPHABET) for _ in range(64))


def full_token(token_id: str) -> str:
    return f"{token_id}.{secret_part()}"


def desired(**changes: Any) -> Desired:
    base = Desired(
        name="web ingest",
        scopes=frozenset({"metrics.ingest", "logs.ingest"}),
        enabled=True,
        secret_name="web",
        secret_labels={"team": "a"},
        secret_annotations={"note": "hello"},
    )
    return replace(base, **changes)


def token_for(want: Desired, token_id: str, **changes: Any) -> ApiToken:
    """The token as Dynatrace would report it when it matches `want`."""
    fields: dict[str, Any] = {
        "id": token_id,
        "name": want.name,
        "enabled": want.enabled,
        "personal_access_token": want.personal_access_token,
        "owner": "ci@example.com",
        "creation_date": format_date(NOW - timedelta(days=1)),
        "expiration_date": _observed_expiry(want.expiration_date),
        "scopes": sorted(want.scopes),
    }
    fields.update(changes)
    return ApiToken(**fields)


def _observed_expiry(wanted: str | None) -> str | None:
    if wanted is None:
        return None
    if wanted.startswith("now"):
        return format_date(NOW + timedelta(days=30))
    return wanted


def owned_secret(want: Desired, token_id: str, *, reference: str = REFERENCE, **changes: Any) -> SecretFacts:
    """The Secret as the operator writes it for `token_id`."""
    base = SecretFacts(
        name=want.secret_name,
        exists=True,
        owned=True,
        value_token_id=token_id,
        annotated_token_id=token_id,
        labels={**secret_labels(want), "foreign": "kept"},
        annotations={**secret_annotations(want, token_id=token_id, owner=reference), "x": "y"},
        keys=frozenset({want.secret_key}),
        token_ids={want.secret_key: token_id},
    )
    return replace(base, **changes)


def converged(want: Desired | None = None, *, token_id: str | None = None, **changes: Any) -> Input:
    """An input where the token, the Secret and the declaration agree: the plan must be InSync."""
    want = want or desired()
    token_id = token_id or tid(1)
    base = Input(
        desired=want,
        recorded=Recorded(
            token_id=token_id, secret_name=want.secret_name, expiration_requested=want.expiration_date
        ),
        secret=owned_secret(want, token_id),
        now=NOW,
        token=token_for(want, token_id),
        reference=REFERENCE,
    )
    return replace(base, **changes)


#: a create attempt's id (a uuid4's hex digits, as the operator makes them)
ATTEMPT = "a1" * 16


def pending(*, replaces: str | None = None, name: str = "web ingest") -> PendingCreate:
    """An intent as the operator records it: the name sent is marked with the attempt."""
    return PendingCreate(
        attempt=ATTEMPT,
        name=creation.marked_name(name, ATTEMPT),
        started_at=NOW - timedelta(minutes=1),
        owner="ci@example.com",
        replaces=replaces,
    )


# --- hypothesis strategies -----------------------------------------------------------------------------


def _base36(number: int, width: int) -> str:
    digits = []
    for _ in range(width):
        number, digit = divmod(number, 36)
        digits.append(ALPHABET[digit])
    return "".join(reversed(digits))


#: one draw each (cheap), covering the whole format
token_ids = st.integers(0, 36**24 - 1).map(lambda n: f"dt0c01.{_base36(n, 24)}")
secret_parts = st.integers(0, 36**64 - 1).map(lambda n: _base36(n, 64))
scope_names = st.sampled_from(
    ["metrics.ingest", "logs.ingest", "entities.read", "apiTokens.read", "apiTokens.write", "DataExport"]
)
scope_sets = st.frozensets(scope_names, min_size=1, max_size=4)
token_names = st.sampled_from(["web ingest", "other name", "web"])
#: any date a token may carry (past ones too: expired tokens)
absolute_dates = st.datetimes(
    min_value=datetime(2025, 1, 1), max_value=datetime(2040, 1, 1), timezones=st.just(UTC)
).map(format_date)
#: dates after NOW, which a create can ask for
future_dates = st.datetimes(
    min_value=datetime(2030, 7, 1), max_value=datetime(2040, 1, 1), timezones=st.just(UTC)
).map(format_date)
expiry_texts = st.one_of(
    st.none(),
    st.sampled_from(["now+30d", "now+60d", "now+1y/d", "not a date", "2031-01-01T00:00:00+01:00"]),
    future_dates,
    st.text(min_size=1, max_size=12),
)
#: renewBefore values shorter than every relative window above (a longer one is tested on its own)
renew_befores = st.sampled_from([None, timedelta(hours=1), timedelta(days=7)])
grace_periods = st.sampled_from([timedelta(0), timedelta(hours=1), timedelta(days=2)])
secret_names = st.sampled_from(["web", "web-2"])
secret_keys = st.sampled_from(["token", "apiToken"])
small_maps = st.dictionaries(
    st.sampled_from(["team", "app", "note"]), st.sampled_from(["a", "b"]), max_size=2
)


@st.composite
def desireds(draw: st.DrawFn) -> Desired:
    return Desired(
        name=draw(token_names),
        scopes=draw(scope_sets),
        enabled=draw(st.booleans()),
        personal_access_token=draw(st.booleans()),
        expiration_date=draw(expiry_texts),
        deletion_policy=draw(st.sampled_from(["Delete", "Orphan"])),
        secret_name=draw(secret_names),
        secret_key=draw(secret_keys),
        secret_labels=draw(small_maps),
        secret_annotations=draw(small_maps),
        renew_before=draw(renew_befores),
        grace_period=draw(grace_periods),
    )


@st.composite
def api_tokens(draw: st.DrawFn, token_id: str | None) -> ApiToken:
    """A token with the given id and any (possibly unknown) other properties."""
    return ApiToken(
        id=token_id,
        name=draw(st.one_of(st.none(), token_names)),
        enabled=draw(st.one_of(st.none(), st.booleans())),
        personal_access_token=draw(st.one_of(st.none(), st.booleans())),
        owner=draw(st.sampled_from([None, "ci@example.com", "someone@example.com"])),
        creation_date=draw(st.one_of(st.none(), absolute_dates)),
        expiration_date=draw(st.one_of(st.none(), absolute_dates, st.just("garbage"))),
        scopes=draw(st.one_of(st.none(), st.lists(scope_names, max_size=4))),
    )


@st.composite
def secret_facts(draw: st.DrawFn, name: str, ids: list[str], want: Desired, reference: str) -> SecretFacts:
    exists = draw(st.booleans())
    if not exists:
        return SecretFacts(name=name)
    maybe_id = st.one_of(st.none(), st.sampled_from(ids))
    value = draw(maybe_id)
    annotated = draw(st.one_of(st.just(value), maybe_id))
    other_key = "apiToken" if want.secret_key == "token" else "token"
    token_ids = {want.secret_key: value} if value else {}
    if draw(st.booleans()):
        token_ids[other_key] = draw(st.sampled_from(ids))
    if draw(st.booleans()):  # the managed metadata is in place
        labels: dict[str, str] = secret_labels(want)
        annotations: dict[str, str] = secret_annotations(want, token_id=annotated or "", owner=reference)
    else:
        labels, annotations = draw(small_maps), draw(small_maps)
    owned = draw(st.booleans())
    shared = want.secret_shared
    written = frozenset(token_ids) if shared and owned else frozenset()
    return SecretFacts(
        name=name,
        exists=True,
        owned=owned,
        value_token_id=value,
        annotated_token_id=annotated,
        labels=labels,
        annotations=annotations,
        keys=frozenset(token_ids) | draw(st.frozensets(st.sampled_from(["token", "other"]))),
        token_ids=token_ids,
        shared=shared,
        joinable=shared and draw(st.booleans()),
        key_writer=draw(st.sampled_from([None, "team-a/other"])) if shared and not owned else None,
        written_keys=written,
    )


def sometimes(draw: st.DrawFn) -> bool:
    """True a quarter of the time: most generated inputs stay close to converged."""
    return draw(st.integers(0, 3)) == 0


rotation_requests = st.sampled_from([None, "1", "2"])


@st.composite
def retiring_lists(draw: st.DrawFn, ids: list[str], keep: str | None) -> tuple[tuple[str, datetime], ...]:
    """Rotated-out tokens (never the current one), due or not."""
    others = [i for i in ids if i != keep]
    if not others:
        return ()
    chosen = draw(st.lists(st.sampled_from(others), unique=True, max_size=2))
    return tuple((i, NOW + timedelta(minutes=draw(st.integers(-90, 90)))) for i in chosen)


@st.composite
def random_inputs(draw: st.DrawFn) -> Input:
    """Any input gather could produce, drawn from a small pool of ids so that they collide often."""
    ids = draw(st.lists(token_ids, min_size=1, max_size=4, unique=True))
    want = draw(desireds())
    if sometimes(draw):
        want = replace(want, adopt_token_id=draw(st.sampled_from(ids)))
    if sometimes(draw):
        want = replace(want, secret_shared=True)
    recorded_id = draw(st.one_of(st.none(), st.sampled_from(ids)))
    recorded_secret = draw(st.sampled_from([None, want.secret_name, OLD_SECRET]))
    pending_create = None
    if draw(st.booleans()):
        pending_create = draw(pendings(want, recorded_id))
    recorded = Recorded(
        token_id=recorded_id,
        secret_name=recorded_secret,
        pending=pending_create,
        expiration_requested=draw(st.one_of(st.none(), st.just(want.expiration_date), expiry_texts)),
        secret_available=draw(st.booleans()),
        last_rotation_request=draw(rotation_requests),
        retiring=draw(retiring_lists(ids, recorded_id)),
    )
    # as gather does: the recorded token, else (no create pending) the one to adopt
    wanted = recorded_id or (want.adopt_token_id if pending_create is None else None)
    token = None
    if wanted is not None and draw(st.booleans()):
        token = draw(st.one_of(st.just(token_for(want, wanted)), api_tokens(wanted)))
    candidates: tuple[ApiToken, ...] = ()
    if pending_create is not None:
        chosen = draw(st.lists(st.sampled_from(ids), unique=True, max_size=3))
        candidates = tuple(draw(api_tokens(i)) for i in chosen)
    previous = None
    if recorded_secret == OLD_SECRET:
        previous = draw(secret_facts(OLD_SECRET, ids, want, REFERENCE))
    deleting = draw(st.booleans())
    policy = draw(
        st.sampled_from(
            [
                None,
                PolicySettings(adoption_namespaces=("team-*",), max_tokens_per_namespace=None),
                PolicySettings(adoption_namespaces=(), max_tokens_per_namespace=2),
            ]
        )
    )
    return Input(
        desired=want,
        recorded=recorded,
        secret=draw(secret_facts(want.secret_name, ids, want, REFERENCE)),
        now=NOW,
        token=token,
        previous_secret=previous,
        lost_create_candidates=candidates,
        deleting=deleting,
        default_policy=policy,
        namespace_holding=draw(st.integers(0, 3)),
        connection_problem=draw(st.sampled_from([None, "refused"])) if deleting else None,
        reference=REFERENCE,
        release_requested=draw(st.booleans()),
        rotation_request=draw(rotation_requests),
        foreign_create_window=draw(st.sampled_from([None, timedelta(minutes=3)])),
    )


@st.composite
def pendings(draw: st.DrawFn, want: Desired, recorded_id: str | None) -> PendingCreate:
    return PendingCreate(
        attempt=ATTEMPT,
        name=creation.marked_name(want.name, ATTEMPT),
        started_at=NOW - timedelta(minutes=draw(st.integers(0, 60))),
        owner=draw(st.sampled_from([None, "ci@example.com"])),
        replaces=draw(st.sampled_from([None, recorded_id])),
        grace_seconds=draw(st.sampled_from([0, 3600])),
        started_here=draw(st.booleans()),
        writer_gone=draw(st.booleans()),
    )


KNOCKS = (
    "token",
    "token-gone",
    "secret",
    "secret-name",
    "pending",
    "rotation",
    "adopted",
    "status",
    "spec",
    "renewal",
    "deleting",
    "release",
    "credential",
)


@st.composite
def near_converged_inputs(draw: st.DrawFn) -> Input:
    """A converged input with a few things knocked out of line, so that every check gets its turn."""
    ids = draw(st.lists(token_ids, min_size=3, max_size=4, unique=True))
    want = draw(desireds())
    mine, new, other = ids[0], ids[1], ids[2]
    state = converged(want, token_id=mine)
    recorded, secret = state.recorded, state.secret
    token: ApiToken = token_for(want, mine)
    changes: dict[str, Any] = {}
    knocks = draw(st.sets(st.sampled_from(KNOCKS), min_size=1, max_size=3))
    if "token" in knocks:  # the token drifted, expired, or is reported with unknown fields
        token = draw(
            st.one_of(
                api_tokens(mine),
                st.builds(_drifted, st.just(token), token_names, scope_sets),
                absolute_dates.map(lambda date: _expiring(token, date)),
            )
        )
    changes["token"] = None if "token-gone" in knocks else token
    if "secret" in knocks:  # the Secret changed
        secret = draw(
            st.sampled_from(
                [
                    SecretFacts(name=want.secret_name),
                    replace(secret, owned=False),
                    replace(secret, value_token_id=other, token_ids={want.secret_key: other}),
                    replace(secret, annotated_token_id=other),
                    replace(secret, labels={}),
                    replace(secret, annotations={}),
                    replace(secret, value_token_id=None, token_ids={"moved": mine}),
                    owned_secret(want, new),
                ]
            )
        )
    if "secret-name" in knocks:  # spec.secret.name changed: the old Secret is recorded
        recorded = replace(recorded, secret_name=OLD_SECRET)
        changes["previous_secret"] = draw(
            st.sampled_from(
                [
                    owned_secret(want, mine, name=OLD_SECRET),
                    owned_secret(want, mine, name=OLD_SECRET, owned=False),
                    SecretFacts(name=OLD_SECRET),
                ]
            )
        )
        if draw(st.booleans()):
            secret = SecretFacts(name=want.secret_name)
    if "pending" in knocks:  # a create was started: maybe its token is in the Secret
        recorded = replace(recorded, pending=draw(pendings(want, mine)))
        chosen = draw(st.lists(st.sampled_from(ids), unique=True, max_size=3))
        changes["lost_create_candidates"] = tuple(token_for(want, i) for i in chosen)
        if draw(st.booleans()):
            secret = owned_secret(want, draw(st.sampled_from(ids)))
    if "credential" in knocks:  # a token of the object's is (or the adopted one would be) a credential
        changes["credential_token_ids"] = frozenset({draw(st.sampled_from(ids))})
        changes["adopt_claimed"] = draw(st.booleans())
    if "pending" in knocks or "status" in knocks:  # a lookup may have proven the Secret's value
        changes["secret_proven"] = draw(st.booleans())
    if "rotation" in knocks:  # rotations: requested, done, or tokens still retiring
        recorded = replace(
            recorded, last_rotation_request="1", retiring=draw(retiring_lists(ids, recorded.token_id))
        )
        changes["rotation_request"] = draw(rotation_requests)
    if "adopted" in knocks:  # an adopted token, whose secret is not known
        want = replace(want, adopt_token_id=draw(st.sampled_from([mine, new])))
        recorded = replace(recorded, secret_available=False)
        if draw(st.booleans()):
            secret = SecretFacts(name=want.secret_name)
    if "status" in knocks:  # the status was lost or changed
        recorded = replace(
            recorded,
            token_id=draw(st.sampled_from([None, mine, new])),
            expiration_requested=draw(expiry_texts),
        )
    if "spec" in knocks:  # the spec changed
        want = replace(
            want,
            personal_access_token=draw(st.booleans()),
            expiration_date=draw(expiry_texts),
            enabled=draw(st.booleans()),
        )
    if "renewal" in knocks and changes["token"] is not None:  # relative expiry, renewal due or not
        want = replace(want, expiration_date="now+30d", renew_before=timedelta(days=7))
        recorded = replace(recorded, expiration_requested="now+30d")
        expires = NOW + timedelta(hours=draw(st.integers(-24, 24 * 10)))
        changes["token"] = token = token.model_copy(update={"expiration_date": format_date(expires)})
    observed_id = recorded.token_id or (want.adopt_token_id if recorded.pending is None else None)
    if observed_id != mine and changes["token"] is not None:
        changes["token"] = None if observed_id is None else token.model_copy(update={"id": observed_id})
    return replace(
        state,
        desired=want,
        recorded=recorded,
        secret=secret,
        deleting="deleting" in knocks,
        release_requested="release" in knocks,
        **changes,
    )


def _expiring(token: ApiToken, date: str) -> ApiToken:
    return token.model_copy(update={"expiration_date": date})


def _drifted(token: ApiToken, name: str, scopes: frozenset[str]) -> ApiToken:
    return token.model_copy(update={"name": name, "scopes": sorted(scopes)})


#: what the properties run on: mostly near converged, some anything at all
inputs = st.sampled_from([near_converged_inputs()] * 3 + [random_inputs()]).flatmap(lambda inputs: inputs)
