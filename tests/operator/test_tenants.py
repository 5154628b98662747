"""A hostile namespace against the real API server, the operator process and the emulator (issue #14).

The people who create ApiTokens may be attackers; the default connection is a privileged credential.
Every test here runs the operator as the chart installs it (`rbac.scope=namespaces`: Roles in the watched
namespaces, one readable Secret, the default connection, in the operator's namespace) under its
ServiceAccount's token, and the attacker as a ServiceAccount with the rights of the built-in `edit` role in
its own namespace (`evil-*`), the chart's aggregated ApiToken rules (`rbac.aggregateToDefaultRoles`)
included: what a team member gets.
A second namespace (`victim-*`) holds an ApiToken made through the default connection.

Each attack is refused with a condition and a Warning Event on the hostile object (or, where the CRD
schema can refuse, by the API server), and every token outside the attacker's own is left byte for byte
as it was: the emulator's full records (every field, the secret's hash included) are compared before and
after. The default connection's own token is the one exception: it is used for every call, so its
`lastUsedDate` and `lastUsedIpAddress` move; every other field of it is compared.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import pathlib
import uuid
from collections.abc import Iterator
from typing import Any

import kubernetes
import pytest
from kubernetes.client import ApiException

from apitoken_devenv import binaries
from tests.fixtures.cluster import Cluster, wait_until
from tests.fixtures.operator import (
    CONNECTION,
    CONNECTION_LABEL,
    GROUP,
    PLURAL,
    VERSION,
    OperatorEnv,
    settle,
    tidy_namespace,
)
from tests.manifests.test_chart import Helm
from tests.operator.test_rbac import account_name, permission_problems, service_account_kubeconfig

pytestmark = pytest.mark.controlplane

#: Escalating scopes the issue found minted through the default connection, and the classic ones.
ESCALATING = [
    "apiTokens.write",
    "apiTokens.read",
    "TenantTokenManagement",
    "tenantTokenRotation.write",
    "settings.write",
    "credentialVault.read",
    "InstallerDownload",
]
#: What the default connection's adoption policy says when a namespace is not allowed to adopt.
POLICY_REFUSAL = "may not adopt tokens through the operator's default connection"
CREDENTIAL_REFUSAL = "is the token the operator's connection authenticates with"
CLAIMED_REFUSAL = "is managed by another ApiToken"
#: Fields of the default connection's token that its own use moves.
USE_FIELDS = ("lastUsedDate", "lastUsedIpAddress")
#: A secret part of the right shape that is nobody's secret.
GARBAGE = "G" * 64


@dataclasses.dataclass
class Tenancy:
    """The operator's namespace (`env`), the attacker's (`evil`, acting with its own rights) and the
    victim's (`victim`, acted on by the admin), all on one emulator."""

    env: OperatorEnv
    #: the attacker's namespace, as the attacker (its ServiceAccount's token)
    evil: OperatorEnv
    #: the same namespace as the admin sees it (conditions, Events, Secrets)
    evil_seen: OperatorEnv
    victim: OperatorEnv
    operator_kubeconfig: pathlib.Path

    def start(self, *flags: str) -> None:
        """The operator under the chart's ServiceAccount, watching the three namespaces, shipped policy."""
        self.env.start(
            "--default-connection",
            f"{self.env.namespace}/{CONNECTION}",
            "--namespace",
            self.evil.namespace,
            "--namespace",
            self.victim.namespace,
            *flags,
            default_connection=False,
            kubeconfig=self.operator_kubeconfig,
            any_scope=False,
        )

    def restart(self, *flags: str) -> None:
        self.env.stop()
        self.start(*flags)

    def admin_id(self) -> str:
        return self.env.emulator.admin_token.token_id

    def refused(
        self, name: str, reason: str, mentions: str | tuple[str, ...], *, timeout: float = 60
    ) -> None:
        """Refused with `reason`: Ready=False and Stalled=True saying `mentions` (one of them, given
        several), a Warning Event, no id."""
        seen = self.evil_seen
        ready = seen.wait_condition(name, "Ready", "False", reason, timeout=timeout)
        texts = (mentions,) if isinstance(mentions, str) else mentions
        assert any(text in ready["message"] for text in texts), (name, ready["message"])
        seen.wait_condition(name, "Stalled", "True", reason)
        assert "id" not in ((seen.get(name) or {}).get("status") or {}), name
        wait_until(
            lambda: any(e.type == "Warning" and e.reason == reason for e in seen.events(name)),
            timeout=10,
            what=f"a Warning Event {reason} on {name}",
        )


def snapshot(env: OperatorEnv) -> dict[str, dict[str, Any]]:
    """Every token's full record (the emulator's state: every wire field, the secret's hash, its order),
    read on the emulator's loop and copied, so later changes cannot reach the copy."""
    states = env.emulator.call(lambda: [record.to_state() for record in env.emulator.store])
    return {state["id"]: json.loads(json.dumps(state, default=str)) for state in states}


def changed_outside(
    before: dict[str, dict[str, Any]],
    after: dict[str, dict[str, Any]],
    *,
    admin_id: str,
    credentials: tuple[str, ...] = (),
) -> list[str]:
    """Tokens of `before` that are not byte for byte the same in `after` (the use fields of the tokens
    connections authenticate with aside: the admin's, and `credentials`)."""
    problems = []
    for token_id, record in before.items():
        now = after.get(token_id)
        if now is None:
            problems.append(f"{token_id} ({record['name']!r}) was deleted")
            continue
        was = record
        if token_id == admin_id or token_id in credentials:
            was = {k: v for k, v in record.items() if k not in USE_FIELDS}
            now = {k: v for k, v in now.items() if k not in USE_FIELDS}
        if now != was:
            fields = sorted(k for k in was.keys() | now.keys() if was.get(k) != now.get(k))
            problems.append(f"{token_id} ({was['name']!r}) changed: {fields}: {was} -> {now}")
    return problems


def recorded_ids(env: OperatorEnv) -> set[str]:
    """Token ids the namespace's ApiTokens record (their own and their retiring ones)."""
    items = env.custom.list_namespaced_custom_object(GROUP, VERSION, env.namespace, PLURAL)["items"]
    ids = set()
    for item in items:
        status = item.get("status") or {}
        ids |= {status.get("id"), *(r.get("id") for r in status.get("retiringTokens") or ())}
    return {i for i in ids if i}


def _secret(
    env: OperatorEnv, name: str, data: dict[str, str], *, labelled: bool = False, **meta: Any
) -> None:
    labels = {CONNECTION_LABEL: "true"} if labelled else {}
    env.core.create_namespaced_secret(
        env.namespace, {"metadata": {"name": name, "labels": labels, **meta}, "stringData": data}
    )


def forged(token_id: str) -> str:
    """A Secret value naming `token_id` (its public part) with a secret part that is nobody's."""
    return f"{token_id}.{GARBAGE}"


def tenant_kubeconfig(
    cluster: Cluster,
    k8s: kubernetes.client.ApiClient,
    namespace: str,
    path: pathlib.Path,
    *,
    roles: tuple[str, ...],
) -> pathlib.Path:
    """A ServiceAccount of `namespace` bound (RoleBindings, so only there) to the ClusterRoles `roles`."""
    core: Any = kubernetes.client.CoreV1Api(k8s)
    rbac: Any = kubernetes.client.RbacAuthorizationV1Api(k8s)
    core.create_namespaced_service_account(namespace, {"metadata": {"name": "team-member"}})
    for role in roles:
        rbac.create_namespaced_role_binding(
            namespace,
            {
                "metadata": {"name": f"team-member-{role.replace(':', '-')}"},
                "subjects": [{"kind": "ServiceAccount", "name": "team-member", "namespace": namespace}],
                "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": role},
            },
        )
    return service_account_kubeconfig(cluster, k8s, namespace, "team-member", path)


def can(client: kubernetes.client.ApiClient, namespace: str, verb: str, resource: str, sub: str = "") -> bool:
    authorization: Any = kubernetes.client.AuthorizationV1Api(client)
    review = authorization.create_self_subject_access_review(
        {
            "spec": {
                "resourceAttributes": {
                    "namespace": namespace,
                    "verb": verb,
                    "group": GROUP if resource == PLURAL else "",
                    "resource": resource,
                    "subresource": sub,
                }
            }
        }
    )
    return bool(review.status.allowed)


@pytest.fixture
def tenancy(
    operator_env: OperatorEnv,
    cluster: Cluster,
    k8s: kubernetes.client.ApiClient,
    tmp_path: pathlib.Path,
) -> Iterator[Tenancy]:
    env = operator_env
    core: Any = env.core
    suffix = uuid.uuid4().hex[:8]
    evil, victim = f"evil-{suffix}", f"victim-{suffix}"
    for name in (evil, victim):
        core.create_namespace({"metadata": {"name": name}})
    helm = Helm(binary=binaries.ensure_helm(), home=tmp_path / "helm", kubeconfig=cluster.kubeconfig)
    release = env.namespace
    tenant_client: kubernetes.client.ApiClient | None = None
    try:
        helm.install(
            release,
            env.namespace,
            {
                "crds": {"enabled": False},  # the session installed the CRD already
                "rbac": {"scope": "namespaces", "aggregateToDefaultRoles": True},
                "watchNamespaces": [env.namespace, evil, victim],
                "defaultConnection": {"existingSecret": CONNECTION, "namespace": env.namespace},
            },
        )
        operator_kubeconfig = service_account_kubeconfig(
            cluster, k8s, env.namespace, account_name(release), tmp_path / "operator.kubeconfig"
        )
        # What `edit` is in a full cluster: the rules aggregated into it (Kubernetes' own and the chart's).
        # The local control plane runs no clusterrole-aggregation controller, so `edit` itself is empty
        # there and its parts are bound directly.
        tenant = tenant_kubeconfig(
            cluster,
            k8s,
            evil,
            tmp_path / "tenant.kubeconfig",
            roles=(
                "system:aggregate-to-edit",
                "system:aggregate-to-view",
                f"{account_name(release)}-edit",
                f"{account_name(release)}-view",
            ),
        )
        tenant_client = cluster.api_client(tenant)
        yield Tenancy(
            env=env,
            evil=dataclasses.replace(env, namespace=evil, k8s=tenant_client),
            evil_seen=dataclasses.replace(env, namespace=evil),
            victim=dataclasses.replace(env, namespace=victim),
            operator_kubeconfig=operator_kubeconfig,
        )
        env.stop()  # before the release (its Roles) goes; the log is checked by the test or not at all
    finally:
        env.stop()
        for name in (evil, victim):
            tidy_namespace(env, name)
        helm.uninstall(release, env.namespace)
        if tenant_client is not None:
            tenant_client.close()
        for name in (evil, victim):
            with contextlib.suppress(ApiException):
                core.delete_namespace(name)


def make_victim(t: Tenancy) -> str:
    """An ApiToken of the victim's namespace through the default connection, Ready; its token id."""
    t.victim.apply("payments", {"name": "payments ingest", "scopes": ["metrics.ingest"], "enabled": True})
    token_id: str = t.victim.wait_ready("payments", timeout=60)["status"]["id"]
    return token_id


# --- the tests ------------------------------------------------------------------------------------------


def test_the_tenant_has_edit_rights_but_cannot_write_status(tenancy: Tenancy) -> None:
    """What the attacks below may and may not do: ApiTokens and Secrets of its namespace, no status, no
    other namespace. Writing status would let it plant `status.id`; RBAC is what stops that."""
    t = tenancy
    client = t.evil.k8s
    assert can(client, t.evil.namespace, "create", PLURAL)
    assert can(client, t.evil.namespace, "update", "secrets")
    assert not can(client, t.evil.namespace, "patch", PLURAL, "status")
    assert not can(client, t.evil.namespace, "update", PLURAL, "status")
    assert not can(client, t.victim.namespace, "get", PLURAL)
    assert not can(client, t.env.namespace, "get", "secrets")
    t.evil.apply("mine", {"name": "mine", "scopes": ["metrics.read"]})
    with pytest.raises(ApiException) as error:
        t.evil.custom.patch_namespaced_custom_object_status(
            GROUP, VERSION, t.evil.namespace, PLURAL, "mine", {"status": {"id": "dt0c01." + "A" * 24}}
        )
    assert error.value.status == 403


def test_a_hostile_namespace_is_refused_and_nothing_is_minted(tenancy: Tenancy) -> None:
    """Escalating scopes, personal access tokens, an unlabelled Secret, internal URLs, the default
    connection's Secret name borrowed, format characters in names: refused, nothing minted."""
    t = tenancy
    env, evil = t.env, t.evil
    url, admin = env.emulator.base_url, env.emulator.admin_token.reveal()
    port = url.rsplit(":", 1)[1]
    # The default connection's own credentials, copied into a Secret that never opted in.
    _secret(evil, "copied-credentials", {"apiUrl": url, "apiToken": admin})
    # Internal addresses (the fixture allows 127.0.0.0/8 for the emulator, nothing else).
    _secret(evil, "to-metadata", {"apiUrl": "http://169.254.169.254", "apiToken": admin}, labelled=True)
    _secret(evil, "to-pod-network", {"apiUrl": f"http://10.0.0.1:{port}", "apiToken": admin}, labelled=True)
    _secret(evil, "to-ipv6-loopback", {"apiUrl": f"http://[::1]:{port}", "apiToken": admin}, labelled=True)
    t.start()
    victim_id = make_victim(t)
    before = snapshot(env)

    refused: dict[str, tuple[dict[str, Any], str, str]] = {
        **{
            f"escalate-{scope.lower().replace('.', '-')}": (
                {"scopes": ["metrics.read", scope]},
                "PolicyDenied",
                f"{scope} (escalating",
            )
            for scope in ESCALATING
        },
        "escalate-case-trick": (
            {"scopes": ["APITOKENS.WRITE"]},
            "PolicyDenied",
            "APITOKENS.WRITE (escalating",
        ),
        "not-allowed": ({"scopes": ["logs.read"]}, "PolicyDenied", "logs.read (not in the allowed scopes)"),
        "personal": (
            {"scopes": ["metrics.read"], "personalAccessToken": True},
            "PolicyDenied",
            "personal access tokens",
        ),
        "unlabelled": (
            {"scopes": ["metrics.read"], "connectionSecretRef": {"name": "copied-credentials"}},
            "ConnectionInvalid",
            f"{CONNECTION_LABEL}=true",
        ),
        # The default connection's Secret by its name: looked up in the object's namespace, not the
        # operator's.
        "borrow-default": (
            {"scopes": ["logs.read"], "connectionSecretRef": {"name": CONNECTION}},
            "ConnectionMissing",
            f"{evil.namespace}/{CONNECTION} does not exist",
        ),
        "metadata": (
            {"scopes": ["metrics.read"], "connectionSecretRef": {"name": "to-metadata"}},
            "ConnectionNotAllowed",
            "169.254.169.254 is an internal address (link-local)",
        ),
        "pod-network": (
            {"scopes": ["metrics.read"], "connectionSecretRef": {"name": "to-pod-network"}},
            "ConnectionNotAllowed",
            "10.0.0.1 is an internal address (private)",
        ),
        "ipv6-loopback": (
            {"scopes": ["metrics.read"], "connectionSecretRef": {"name": "to-ipv6-loopback"}},
            "ConnectionNotAllowed",
            "::1 is an internal address (loopback)",
        ),
        # A name ending as the operator marks the tokens it is creating (the victim's create in flight
        # would look like this): a lost-create cleanup must never be led to another object's token.
        "marked-name": (
            {"name": f"payments ingest [creating {'0' * 32}]", "scopes": ["metrics.read"]},
            "InvalidSpec",
            "[creating <32 hex digits>]",
        ),
    }
    for name, (spec, _, _) in refused.items():
        evil.apply(name, {"name": name, **spec})
    # Names that would read as something else in Dynatrace and `kubectl get`: the API server refuses them.
    for i, trick in enumerate(
        ["pay\u202eloads", "zero\u200bwidth", "\ufeffbom", "line\u2028break", "bell\x07"]
    ):
        with pytest.raises(ApiException) as error:
            evil.apply(f"format-{i}", {"name": trick, "scopes": ["metrics.read"]})
        assert error.value.status == 422, (trick, error.value)
    # What the shipped policy does allow, through the default connection, still works.
    evil.apply("allowed", {"name": "allowed", "scopes": ["metrics.ingest", "entities.read"]})

    allowed = t.evil_seen.wait_ready("allowed", timeout=60)["status"]["id"]
    for name, (_, reason, mentions) in refused.items():
        t.refused(name, reason, mentions)
    settle(1.0)

    after = snapshot(env)
    assert changed_outside(before, after, admin_id=t.admin_id()) == []
    assert set(after) - set(before) == {allowed}, "only the allowed token was minted"
    assert after[victim_id] == before[victim_id]
    assert env.calls("create") == 2  # the victim's and the allowed one
    env.stop()
    log = env.log_text()
    assert "Traceback" not in log
    assert permission_problems(log) == [], "\n".join(permission_problems(log)[:10])


def test_adoption_through_the_default_connection_is_off_by_default(tenancy: Tenancy) -> None:
    """The default connection sees every token of the environment: adopting through it would hand any
    token to any namespace. Its own token, another namespace's, and one nobody records: all refused,
    each by the policy (which answers before the ownership checks), and none renamed, rescoped or
    disabled."""
    t = tenancy
    env, evil = t.env, t.evil
    t.start()
    victim_id = make_victim(t)
    unclaimed = env.emulator.create_token("made by hand", scopes=["metrics.read"]).token_id
    before = snapshot(env)

    attacks = {"adopt-admin": t.admin_id(), "adopt-victim": victim_id, "adopt-unclaimed": unclaimed}
    for name, token_id in attacks.items():
        evil.apply(name, {"name": f"{name} (renamed)", "scopes": ["metrics.read"], "adoptTokenId": token_id})
    # The policy speaks first, so a namespace that may not adopt learns nothing about the ids it names.
    for name in attacks:
        t.refused(name, "AdoptionRefused", POLICY_REFUSAL)
    settle(1.0)
    assert changed_outside(before, snapshot(env), admin_id=t.admin_id()) == []

    # The attacker gives up: deleting its objects deletes nothing in Dynatrace.
    for name in attacks:
        evil.delete(name)
    for name in attacks:
        t.evil_seen.wait_gone(name)
    settle(1.0)
    after = snapshot(env)
    assert changed_outside(before, after, admin_id=t.admin_id()) == []
    assert set(after) == set(before)
    assert t.victim.wait_ready("payments")["status"]["id"] == victim_id


def test_adoption_allowed_by_policy_still_never_takes_a_credential_or_another_objects_token(
    tenancy: Tenancy,
) -> None:
    """`--policy-adopt-namespace '*'` lets every namespace adopt through the default connection; the
    ownership checks still hold: never the connection's own token, never a token another ApiToken (of
    another namespace) records. A token nobody records is adopted: the control that the policy is on."""
    t = tenancy
    env, evil = t.env, t.evil
    t.start("--policy-adopt-namespace", "*")
    victim_id = make_victim(t)
    unclaimed = env.emulator.create_token("made by hand", scopes=["metrics.read"]).token_id
    before = snapshot(env)

    evil.apply("adopt-admin", {"name": "mine now", "scopes": ["metrics.read"], "adoptTokenId": t.admin_id()})
    evil.apply("adopt-victim", {"name": "mine now", "scopes": ["metrics.read"], "adoptTokenId": victim_id})
    evil.apply("adopt-unclaimed", {"name": "adopted", "scopes": ["metrics.read"], "adoptTokenId": unclaimed})
    t.refused("adopt-admin", "AdoptionRefused", CREDENTIAL_REFUSAL)
    t.refused("adopt-victim", "AdoptionRefused", CLAIMED_REFUSAL)
    assert t.evil_seen.wait_ready("adopt-unclaimed", timeout=60)["status"]["id"] == unclaimed
    wait_until(
        lambda: (r := env.emulator.emulator.record_of(unclaimed)) is not None and r.name == "adopted",
        what="the adopted token renamed",
    )
    settle(1.0)
    after = snapshot(env)
    assert (
        changed_outside({k: v for k, v in before.items() if k != unclaimed}, after, admin_id=t.admin_id())
        == []
    )

    for name in ("adopt-admin", "adopt-victim"):
        evil.delete(name)
        t.evil_seen.wait_gone(name)
    settle(1.0)
    assert (
        changed_outside(
            {k: v for k, v in before.items() if k != unclaimed}, snapshot(env), admin_id=t.admin_id()
        )
        == []
    )
    assert t.victim.wait_ready("payments")["status"]["id"] == victim_id


def test_a_secret_forged_with_another_namespaces_token_id_takes_nothing(tenancy: Tenancy) -> None:
    """The operator reads a token id from the Secret when the status has none (a lost status write). The
    tenant writes the Secret: a value naming the victim's token with a made-up secret part must not make
    the victim's token this object's (the operator proves a Secret's value by a lookup first), neither
    to keep in line (rename, rescope) nor to delete with the object. Three ways to get such a Secret:

    - made by the tenant, not owned by the ApiToken: the operator will not touch it (SecretNameTaken);
    - made by the tenant with a controller ownerReference to the ApiToken it forged by hand (an owner
      reference is the creator's to write), while the ApiToken had no id yet;
    - the operator's own Secret, its value overwritten by the tenant after the token was made.

    Not possible with the tenant's rights: clearing or setting `status.id` (no `apitokens/status`), which
    would make the operator take an id it never made; see the first test.
    """
    t = tenancy
    env, evil, seen = t.env, t.evil, t.evil_seen
    t.start()
    victim_id = make_victim(t)
    before = snapshot(env)

    # 1. The tenant's own Secret under the ApiToken's Secret name.
    _secret(evil, "prefilled", {"token": forged(victim_id)})
    evil.apply("prefilled", {"name": "prefilled", "scopes": ["metrics.read"]})
    t.refused("prefilled", "SecretNameTaken", "is not managed by this ApiToken")

    # 2. A Secret claiming to be owned by an ApiToken that has no token yet (held back by the policy).
    for name in ("owned-then-fixed", "owned-then-deleted"):
        body = evil.apply(name, {"name": name, "scopes": ["settings.write"]})
        t.refused(name, "PolicyDenied", "settings.write (escalating")
        owner = {
            "apiVersion": f"{GROUP}/{VERSION}",
            "kind": "ApiToken",
            "name": name,
            "uid": body["metadata"]["uid"],
            "controller": True,
        }
        _secret(evil, name, {"token": forged(victim_id)}, ownerReferences=[owner])
    # ... the spec fixed: the object gets a token of its own, and its Secret that token's secret.
    evil.patch_spec("owned-then-fixed", {"scopes": ["metrics.read"]})
    fixed = seen.wait_ready("owned-then-fixed", timeout=60)["status"]["id"]
    assert fixed != victim_id
    stored = seen.secret_value("owned-then-fixed")
    assert stored is not None and stored.token_id == fixed
    assert env.emulator.emulator.record_of(stored) is not None
    # ... deleted while the forged Secret is its own: nothing deleted but what it made (nothing).
    evil.delete("owned-then-deleted")
    seen.wait_gone("owned-then-deleted")

    # 3. The operator's own Secret, overwritten: the object's token is replaced, the victim's untouched.
    evil.apply("overwritten", {"name": "overwritten", "scopes": ["metrics.read"]})
    first = seen.wait_ready("overwritten", timeout=60)["status"]["id"]
    evil.core.patch_namespaced_secret(
        "overwritten", evil.namespace, {"stringData": {"token": forged(victim_id)}}
    )
    wait_until(
        lambda: (v := seen.secret_value("overwritten")) is not None and v.token_id not in (victim_id, first),
        timeout=60,
        what="the overwritten Secret to hold a new token of the object's own",
    )
    second = seen.wait_ready("overwritten", timeout=60)["status"]["id"]
    assert second not in (victim_id, first)
    settle(1.0)
    after = snapshot(env)
    assert changed_outside(before, after, admin_id=t.admin_id()) == []
    assert set(after) - set(before) <= recorded_ids(seen)

    # The tenant overwrites the Secret again and deletes everything: only its own tokens go.
    evil.core.patch_namespaced_secret(
        "overwritten", evil.namespace, {"stringData": {"token": forged(victim_id)}}
    )
    for name in ("prefilled", "owned-then-fixed", "overwritten"):
        evil.delete(name)
    for name in ("prefilled", "owned-then-fixed", "overwritten"):
        seen.wait_gone(name, timeout=60)
    settle(1.0)
    after = snapshot(env)
    assert changed_outside(before, after, admin_id=t.admin_id()) == []
    assert set(after) == set(before), "the tenant's own tokens deleted, nobody else's"
    assert t.victim.wait_ready("payments")["status"]["id"] == victim_id
    env.stop()
    log = env.log_text()
    assert "Traceback" not in log
    assert permission_problems(log) == [], "\n".join(permission_problems(log)[:10])


def test_a_namespace_connection_cannot_adopt_the_default_connections_token(tenancy: Tenancy) -> None:
    """The tenant holds a token of its own with apiTokens.write (a labelled connection Secret of its
    namespace) and adopts the default connection's token through it, right after the operator starts,
    before anything used the default connection. Adopting it would rename it and (enabled: false)
    disable it: every namespace on the default connection would stop working. The promise is "never the
    connection's own token"; the default connection's is one, whichever connection asks."""
    t = tenancy
    env, evil = t.env, t.evil
    own = env.emulator.create_token("tenant's own", scopes=["apiTokens.read", "apiTokens.write"])
    _secret(evil, "own", {"apiUrl": env.emulator.base_url, "apiToken": own.reveal()}, labelled=True)
    before = snapshot(env)
    evil.apply(
        "adopt-admin",
        {
            "name": "mine now",
            "scopes": ["metrics.read"],
            "adoptTokenId": t.admin_id(),
            "connectionSecretRef": {"name": "own"},
        },
    )
    t.start()  # nothing uses the default connection yet
    ready = wait_until(
        lambda: (c := t.evil_seen.condition("adopt-admin", "Ready")) and c.get("reason") != "Creating" and c,
        timeout=60,
        what="adopt-admin to be decided",
    )
    settle(1.0)
    changed = changed_outside(before, snapshot(env), admin_id=t.admin_id(), credentials=(own.token_id,))
    assert changed == [], f"the default connection's token was taken over (Ready: {ready}): {changed}"
    t.refused("adopt-admin", "AdoptionRefused", CREDENTIAL_REFUSAL)
    # The default connection still works.
    assert make_victim(t)
