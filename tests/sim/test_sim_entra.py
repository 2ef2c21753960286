"""Simulated Entra ID, driven through azure-identity.

Covers: OpenID configuration; ClientSecretCredential and WorkloadIdentityCredential (token file
written by the simulator) against ``authority=`` with instance discovery off; token audiences
per scope (the Batch double slash); refusals with Entra's AADSTS bodies (wrong secret, unknown
client, unmatched federated subject, bad scope); services refusing missing, expired and
wrong-audience tokens as Azure does.
"""

from __future__ import annotations

import time
from typing import Any

import pytest
from azure.core.exceptions import ClientAuthenticationError
from azure.identity import ClientSecretCredential, WorkloadIdentityCredential

from batchsim.entra.tokens import decode_jwt_unverified, encode_jwt


def test_openid_configuration_has_what_msal_reads(info: dict[str, Any], raw: Any) -> None:
    url = f"{info['authorityHost']}/{info['tenantId']}/v2.0/.well-known/openid-configuration"
    doc = raw("GET", url).json()
    assert doc["issuer"] == f"{info['authorityHost']}/{info['tenantId']}/v2.0"
    assert doc["token_endpoint"] == f"{info['authorityHost']}/{info['tenantId']}/oauth2/v2.0/token"
    assert doc["authorization_endpoint"].startswith(info["authorityHost"])


def test_client_secret_credential_gets_tokens_per_audience(
    operator_credential: Any, info: dict[str, Any]
) -> None:
    scopes = {
        "https://management.azure.com/.default": "https://management.azure.com/",
        "https://batch.core.windows.net//.default": "https://batch.core.windows.net/",
        f"{info['keyVaultAudience']}/.default": f"{info['keyVaultAudience']}/",
    }
    for scope, audience in scopes.items():
        _, claims = decode_jwt_unverified(operator_credential.get_token(scope).token)
        assert claims["aud"] == audience
        assert claims["oid"] == info["principals"]["operator"]["objectId"]
        assert claims["appid"] == info["principals"]["operator"]["clientId"]
        assert claims["tid"] == info["tenantId"]


def test_workload_identity_credential_signs_in_with_the_token_file(
    workload_credential: Any, info: dict[str, Any]
) -> None:
    token = workload_credential.get_token("https://management.azure.com/.default").token
    _, claims = decode_jwt_unverified(token)
    assert claims["oid"] == info["principals"]["workload"]["objectId"]
    assert claims["aud"] == "https://management.azure.com/"


def test_wrong_client_secret_is_refused_with_aadsts7000215(info: dict[str, Any]) -> None:
    op = info["principals"]["operator"]
    cred = ClientSecretCredential(
        info["tenantId"],
        op["clientId"],
        "not-the-secret",
        authority=info["authorityHost"],
        disable_instance_discovery=True,
        connection_verify=info["caBundle"],
    )
    with pytest.raises(ClientAuthenticationError, match="AADSTS7000215"):
        cred.get_token("https://management.azure.com/.default")


def test_unknown_client_is_refused_with_aadsts700016(info: dict[str, Any]) -> None:
    cred = ClientSecretCredential(
        info["tenantId"],
        "99999999-0000-0000-0000-000000000000",
        "x",
        authority=info["authorityHost"],
        disable_instance_discovery=True,
        connection_verify=info["caBundle"],
    )
    with pytest.raises(ClientAuthenticationError, match="AADSTS700016"):
        cred.get_token("https://management.azure.com/.default")


def test_federated_assertion_with_unregistered_subject_is_refused(
    info: dict[str, Any], sim: Any, tmp_path: Any, control: Any
) -> None:
    # A principal trusting another subject: the simulator's token file must not sign it in.
    other = control.add_principal(
        "other",
        federated=[
            {"issuer": "https://oidc.sim.test/cluster", "subject": "system:serviceaccount:x:y"}
        ],
    )
    cred = WorkloadIdentityCredential(
        tenant_id=info["tenantId"],
        client_id=other["clientId"],
        token_file_path=info["federatedTokenFile"],
        authority=info["authorityHost"],
        disable_instance_discovery=True,
        connection_verify=info["caBundle"],
    )
    with pytest.raises(ClientAuthenticationError, match="AADSTS70021"):
        cred.get_token("https://management.azure.com/.default")


def test_foreign_issuer_assertion_is_refused_unless_its_issuer_vouches_for_it(
    info: dict[str, Any], control: Any, tmp_path: Any
) -> None:
    control.add_principal(
        "kind-cluster",
        client_id="50000000-0000-0000-0000-000000000001",
        federated=[
            {"issuer": "https://kubernetes.default.svc", "subject": "system:serviceaccount:ns:sa"}
        ],
    )
    now = int(time.time())
    assertion = encode_jwt(
        {
            "iss": "https://kubernetes.default.svc",
            "sub": "system:serviceaccount:ns:sa",
            "aud": ["api://AzureADTokenExchange"],
            "iat": now,
            "nbf": now,
            "exp": now + 3600,
        },
        b"a key the simulator does not know",
    )
    token_file = tmp_path / "token"
    token_file.write_text(assertion)
    cred = WorkloadIdentityCredential(
        tenant_id=info["tenantId"],
        client_id="50000000-0000-0000-0000-000000000001",
        token_file_path=str(token_file),
        authority=info["authorityHost"],
        disable_instance_discovery=True,
        connection_verify=info["caBundle"],
    )
    # Matching issuer and subject are not enough: Entra fetches the issuer's keys (here
    # unreachable) to check the signature (test_sim_tenancy covers a reachable issuer).
    with pytest.raises(ClientAuthenticationError, match="AADSTS50166"):
        cred.get_token("https://batch.core.windows.net//.default")


def test_scope_without_default_suffix_is_refused(info: dict[str, Any], raw: Any) -> None:
    op = info["principals"]["operator"]
    answer = raw(
        "POST",
        f"{info['authorityHost']}/{info['tenantId']}/oauth2/v2.0/token",
        data=f"grant_type=client_credentials&client_id={op['clientId']}&client_secret="
        f"{op['clientSecret']}&scope=https://management.azure.com/user_impersonation",
        headers={"Content-Type": "application/x-www-form-urlencoded"},
    )
    assert answer.status == 400
    assert answer.json()["error"] == "invalid_scope"
    assert answer.json()["error_codes"] == [1002012]


def test_arm_refuses_missing_token_with_challenge(
    info: dict[str, Any], demo: dict[str, Any], raw: Any
) -> None:
    url = (
        f"{info['resourceManager']}subscriptions/{demo['subscriptionId']}/resourceGroups/"
        f"{demo['resourceGroup']}/providers/Microsoft.Batch/batchAccounts/"
        f"{demo['batchAccount']}?api-version=2025-06-01"
    )
    answer = raw("GET", url)
    assert answer.status == 401
    assert answer.json()["error"]["code"] == "AuthenticationFailed"
    assert answer.headers["WWW-Authenticate"].startswith("Bearer authorization_uri=")


def test_arm_refuses_a_batch_token(
    info: dict[str, Any], demo: dict[str, Any], raw: Any, operator_credential: Any
) -> None:
    token = operator_credential.get_token("https://batch.core.windows.net//.default").token
    url = (
        f"{info['resourceManager']}subscriptions/{demo['subscriptionId']}/resourceGroups/"
        f"{demo['resourceGroup']}?api-version=2024-03-01"
    )
    answer = raw("GET", url, token=token)
    assert answer.status == 401
    assert answer.json()["error"]["code"] == "InvalidAuthenticationTokenAudience"


def test_arm_refuses_an_expired_token(
    info: dict[str, Any], demo: dict[str, Any], raw: Any, sim: Any
) -> None:
    expired = sim.sim.tokens.mint(
        audience="https://management.azure.com/", object_id="o", app_id="a", lifetime_s=-10
    )
    url = (
        f"{info['resourceManager']}subscriptions/{demo['subscriptionId']}/resourceGroups/"
        f"{demo['resourceGroup']}?api-version=2024-03-01"
    )
    answer = raw("GET", url, token=expired)
    assert answer.status == 401
    assert answer.json()["error"]["code"] == "ExpiredAuthenticationToken"


def test_batch_refuses_an_arm_token(demo: dict[str, Any], raw: Any, arm_token: str) -> None:
    answer = raw(
        "GET",
        f"https://{demo['accountEndpoint']}/pools/p/nodes?api-version=2025-06-01",
        token=arm_token,
    )
    assert answer.status == 401
    body = answer.json()
    assert body["code"] == "AuthenticationFailed"
    assert body["message"]["lang"] == "en-US"
    assert "RequestId:" in body["message"]["value"]
