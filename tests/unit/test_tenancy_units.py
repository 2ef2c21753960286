"""Tenancy: the install-time policy, the per-object Azure context, the ServiceAccount assertion.

Covers: the default policy is one trust domain (every namespace may use the operator's identity,
nothing is restricted); parsing refuses unknown keys and wrong types; each allow-list kind
refuses what it does not list and names its rule, ``"*"`` applies to unlisted namespaces; the
context resolver refuses before any ServiceAccount read when an allow-list refuses, uses an
annotated ServiceAccount (one context per identity, reused), falls back only where allowed and
refuses clearly otherwise, remembers ServiceAccount answers (absence too) for its TTL; the
assertion asks for a ServiceAccount token only when the one held is missing or 80 % old.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from batchcert.adapters.credentials import (
    CLIENT_ID_ANNOTATION,
    TOKEN_EXCHANGE_AUDIENCE,
    ServiceAccountAssertion,
    WorkloadIdentity,
)
from batchcert.config import load_config
from batchcert.models.spec import parse_spec
from batchcert.reconcile.contexts import AzureContexts, Resolved
from batchcert.tenancy import Refusal, TenancyPolicy, check_allowed, parse_policy
from support.builders import IDENTITY, base_spec

SUB = "00000000-0000-0000-0000-000000000000"
ACCOUNT = f"/subscriptions/{SUB}/resourceGroups/ACR/providers/Microsoft.Batch/batchAccounts/mybatchaccount"


def _policy(entry: dict[str, Any], **top: Any) -> TenancyPolicy:
    return parse_policy({"namespaces": {"team-a": entry}, **top})


def test_the_default_is_one_trust_domain() -> None:
    policy = TenancyPolicy()
    assert policy.may_use_operator_identity("anything")
    assert check_allowed(policy, "anything", parse_spec(base_spec())) is None
    assert load_config({}).tenancy == policy


@pytest.mark.parametrize(
    "data",
    [
        {"operatorIdentityNamespaces": "team-a"},
        {"namespaces": []},
        {"namespaces": {"a": {"vault": ["x"]}}},
        {"namespaces": {"a": {"vaults": "x"}}},
    ],
)
def test_a_malformed_policy_is_refused(data: dict[str, Any]) -> None:
    with pytest.raises(ValueError, match=r"must|unknown"):
        parse_policy(data)


def test_the_policy_file_is_read_from_the_environment(tmp_path: Any) -> None:
    path = tmp_path / "tenancy.json"
    path.write_text('{"operatorIdentityNamespaces": ["platform"]}')
    policy = load_config({"BATCHCERT_TENANCY_FILE": str(path)}).tenancy
    assert policy.may_use_operator_identity("platform")
    assert not policy.may_use_operator_identity("team-a")


@pytest.mark.parametrize(
    ("entry", "rule"),
    [
        ({"subscriptions": ["11111111-1111-1111-1111-111111111111"]}, "subscriptions"),
        ({"resourceGroups": [f"/subscriptions/{SUB}/resourceGroups/other"]}, "resourceGroups"),
        ({"batchAccounts": [ACCOUNT.replace("mybatchaccount", "theirs")]}, "batchAccounts"),
        ({"identities": [IDENTITY.replace("testumaforpools", "theirs")]}, "identities"),
        ({"vaults": ["theirkv"]}, "vaults"),
        ({"vaults": []}, "vaults"),
    ],
)
def test_each_allow_list_refuses_what_it_does_not_list(entry: dict[str, Any], rule: str) -> None:
    refusal = check_allowed(_policy(entry), "team-a", parse_spec(base_spec()))
    assert refusal is not None
    assert refusal.rule == f"namespaces.team-a.{rule}"
    assert f"rule namespaces.team-a.{rule}" in refusal.message


def test_what_is_listed_is_allowed_whatever_its_case() -> None:
    entry = {
        "subscriptions": [SUB],
        "resourceGroups": [f"/subscriptions/{SUB}/resourceGroups/acr"],
        "batchAccounts": [ACCOUNT.upper()],
        "identities": [IDENTITY.lower()],
        "vaults": ["MYKV"],
    }
    assert check_allowed(_policy(entry), "team-a", parse_spec(base_spec())) is None


def test_grant_vaults_are_checked_too() -> None:
    spec = base_spec()
    theirs = f"/subscriptions/{SUB}/resourceGroups/ACR/providers/Microsoft.KeyVault/vaults/theirkv"
    spec["identity"] = dict(spec["identity"], grantSecretsAccess={"vaults": [theirs]})
    refusal = check_allowed(_policy({"vaults": ["mykv"]}), "team-a", parse_spec(spec))
    assert refusal is not None and "theirkv" in refusal.message


def test_the_star_entry_applies_to_unlisted_namespaces() -> None:
    policy = parse_policy({"namespaces": {"*": {"vaults": []}, "team-a": {}}})
    assert check_allowed(policy, "team-a", parse_spec(base_spec())) is None
    refusal = check_allowed(policy, "team-b", parse_spec(base_spec()))
    assert refusal is not None and refusal.rule == "namespaces.*.vaults"


class FakeAccounts:
    def __init__(self, accounts: dict[tuple[str, str], dict[str, Any]]) -> None:
        self.accounts = accounts
        self.reads = 0
        self.tokens = 0

    async def get_service_account(self, namespace: str, name: str) -> dict[str, Any] | None:
        self.reads += 1
        return self.accounts.get((namespace, name))

    async def create_token(
        self, namespace: str, name: str, *, audience: str, seconds: int
    ) -> tuple[str, float]:
        assert audience == TOKEN_EXCHANGE_AUDIENCE
        self.tokens += 1
        return f"token-{self.tokens}", NOW[0] + seconds


NOW = [1000.0]


def _annotated(client_id: str) -> dict[str, Any]:
    return {"metadata": {"annotations": {CLIENT_ID_ANNOTATION: client_id}}}


def _contexts(
    policy: TenancyPolicy, accounts: FakeAccounts
) -> tuple[AzureContexts[str], list[WorkloadIdentity]]:
    built: list[WorkloadIdentity] = []

    def build(identity: WorkloadIdentity) -> str:
        built.append(identity)
        return f"context of {identity.namespace}"

    return AzureContexts(policy, accounts, "operator", build, monotonic=lambda: NOW[0]), built


def test_an_annotated_service_account_gets_its_own_context_once() -> None:
    accounts = FakeAccounts({("team-a", "batchcert"): _annotated("client-a")})
    contexts, built = _contexts(TenancyPolicy(), accounts)

    async def twice() -> list[Resolved[str] | Refusal]:
        return [await contexts.resolve("team-a", base_spec()) for _ in range(2)]

    first, second = asyncio.run(twice())
    assert isinstance(first, Resolved) and first.context == "context of team-a"
    assert first == second
    assert [b.client_id for b in built] == ["client-a"]
    assert accounts.reads == 1  # remembered for the TTL
    assert built[0].subject == "system:serviceaccount:team-a:batchcert"


def test_the_spec_names_the_service_account() -> None:
    accounts = FakeAccounts({("team-a", "pools"): _annotated("client-a")})
    contexts, _ = _contexts(TenancyPolicy(), accounts)
    spec = base_spec(credentials={"serviceAccountName": "pools"})
    resolved = asyncio.run(contexts.resolve("team-a", spec))
    assert isinstance(resolved, Resolved) and resolved.identity is not None


def test_without_a_service_account_the_fallback_is_the_policys_choice() -> None:
    accounts = FakeAccounts({("team-a", "batchcert"): {"metadata": {}}})  # not annotated
    allowed, _ = _contexts(TenancyPolicy(), accounts)
    resolved = asyncio.run(allowed.resolve("team-a", base_spec()))
    assert isinstance(resolved, Resolved) and resolved.context == "operator"

    closed, _ = _contexts(parse_policy({"operatorIdentityNamespaces": ["platform"]}), accounts)
    refused = asyncio.run(closed.resolve("team-a", base_spec()))
    assert isinstance(refused, Refusal) and refused.rule == "operatorIdentityNamespaces"
    assert "ServiceAccount batchcert" in refused.message


def test_an_allow_list_refuses_before_any_kubernetes_read() -> None:
    accounts = FakeAccounts({})
    contexts, _ = _contexts(_policy({"vaults": []}), accounts)
    refused = asyncio.run(contexts.resolve("team-a", base_spec()))
    assert isinstance(refused, Refusal) and accounts.reads == 0


def test_the_assertion_is_requested_again_only_when_80_percent_old() -> None:
    accounts = FakeAccounts({})
    identity = WorkloadIdentity("team-a", "batchcert", "client-a")
    assertion = ServiceAccountAssertion(accounts, identity, clock=lambda: NOW[0], seconds=1000)

    async def scenario() -> list[str]:
        seen = []
        for advance in (0, 500, 299, 2):
            NOW[0] += advance
            await assertion.ensure_fresh()
            seen.append(assertion.current())
        return seen

    assert asyncio.run(scenario()) == ["token-1", "token-1", "token-1", "token-2"]


def test_each_credential_gets_its_own_caches_over_shared_connections() -> None:
    """The handlers' wiring: one Azure context per workload identity (clients, certificate
    watcher, reconciler and so its shared facts), the operator's for the fallback; connections
    and the ARM pacer shared."""
    from batchcert.config import Config
    from batchcert.handlers import build_services, stop_loops

    accounts = FakeAccounts(
        {
            ("team-a", "batchcert"): _annotated("client-a"),
            ("team-b", "batchcert"): _annotated("client-b"),
        }
    )

    async def scenario() -> None:
        services = build_services(Config(), accounts)
        try:
            with pytest.MonkeyPatch.context() as env:
                env.setenv("AZURE_TENANT_ID", "tenant")
                a = await services.contexts.resolve("team-a", base_spec())
                b = await services.contexts.resolve("team-b", base_spec())
                legacy = await services.contexts.resolve("legacy", base_spec())
            assert isinstance(a, Resolved) and isinstance(b, Resolved)
            assert isinstance(legacy, Resolved)
            assert legacy.context.reconciler is services.reconciler
            contexts = [a.context, b.context, legacy.context]
            for attribute in ("clients", "watcher", "reconciler"):
                assert len({id(getattr(c, attribute)) for c in contexts}) == 3
            assert a.context.clients.pacer is services.clients.pacer
            assert a.context.clients.credential is not services.clients.credential
            assert len(services.loops) == 2  # a certificate-refresh loop per namespace context
        finally:
            await stop_loops(services)
            for context in services.contexts.contexts:
                await context.clients.close()

    asyncio.run(scenario())


class BrokenAccounts(FakeAccounts):
    async def get_service_account(self, namespace: str, name: str) -> dict[str, Any] | None:
        raise PermissionError("serviceaccounts is forbidden")

    async def create_token(
        self, namespace: str, name: str, *, audience: str, seconds: int
    ) -> tuple[str, float]:
        raise PermissionError("serviceaccounts/token is forbidden")


def test_an_unreadable_service_account_is_refused_never_replaced_by_the_operator() -> None:
    contexts, _ = _contexts(TenancyPolicy(), BrokenAccounts({}))
    refused = asyncio.run(contexts.resolve("team-a", base_spec()))
    assert isinstance(refused, Refusal)
    assert refused.reason == "ServiceAccountUnavailable"
    assert "team-a/batchcert" in refused.message and "PermissionError" in refused.message


def test_a_token_request_failure_is_an_authentication_error_the_adapters_classify() -> None:
    from azure.core.exceptions import ClientAuthenticationError

    from batchcert.adapters.credentials import NamespaceCredential

    identity = WorkloadIdentity("team-a", "batchcert", "client-a")
    credential = NamespaceCredential(
        identity,
        ServiceAccountAssertion(BrokenAccounts({}), identity),
        tenant_id="tenant",
        authority="https://login.example",
        disable_instance_discovery=True,
    )

    async def ask() -> None:
        try:
            await credential.get_token("https://management.azure.com/.default")
        finally:
            await credential.close()

    with pytest.raises(ClientAuthenticationError, match="team-a/batchcert: PermissionError"):
        asyncio.run(ask())
