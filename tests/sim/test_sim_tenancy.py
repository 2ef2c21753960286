"""Tenancy in the simulator: federated credentials verified as Entra verifies them, role
assignments, and RBAC-mode vaults.

Covers: a federated identity credential written through ARM makes a user-assigned identity a
principal Entra signs in with an assertion from an external issuer, whose signature is checked
against the keys the issuer publishes (OIDC discovery, then JWKS, over HTTPS); an assertion
signed by another key, an unsigned one, one for another subject and one from an unreachable
issuer are refused with Entra's codes (AADSTS50013, 70021, 50166); role assignments are created
(201), read, listed by principal (parent scopes included), refused as duplicates under another
name (409 RoleAssignmentExists), idempotent under the same name, deleted (200, then 204); an
RBAC vault ignores access policies and lets a principal read only once its role assignment has
propagated (403 meanwhile); a principal without role assignments gets 403 AuthorizationFailed
from ARM and 403 from Batch until a role reaches it, may name on a pool only identities it may
assign (403 LinkedAuthorizationFailed), and as Contributor may not grant roles; the request log
names the principal of each call.
"""

from __future__ import annotations

import base64
import json
import ssl
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
import trustme
from azure.core.exceptions import ClientAuthenticationError, HttpResponseError
from azure.identity import ClientAssertionCredential
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from batchsim.entra.tokens import decode_jwt_unverified

SECRETS_USER = "4633458b-17de-408a-b874-0445c86b69e6"
CERTIFICATE_USER = "db79e9a7-68ee-4b58-9aeb-b90e7c24fcba"
AUDIENCE = "api://AzureADTokenExchange"


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


class Issuer:
    """A Kubernetes-like service-account issuer: discovery + JWKS over HTTPS, RS256 tokens."""

    def __init__(self, ca: trustme.CA) -> None:
        self.key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        self.kid = "k1"
        cert = ca.issue_cert("127.0.0.1")
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        cert.configure_cert(context)
        issuer = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                if self.path == "/.well-known/openid-configuration":
                    body = {"issuer": issuer.url, "jwks_uri": f"{issuer.url}/openid/v1/jwks"}
                elif self.path == "/openid/v1/jwks":
                    numbers = issuer.key.public_key().public_numbers()
                    body = {
                        "keys": [
                            {
                                "kty": "RSA",
                                "alg": "RS256",
                                "use": "sig",
                                "kid": issuer.kid,
                                "n": _b64(numbers.n.to_bytes(256, "big")),
                                "e": _b64(numbers.e.to_bytes(3, "big")),
                            }
                        ]
                    }
                else:
                    self.send_response(404)
                    self.end_headers()
                    return
                data = json.dumps(body).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *_: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.socket = context.wrap_socket(self.server.socket, server_side=True)
        self.url = f"https://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def token(
        self,
        subject: str,
        *,
        key: rsa.RSAPrivateKey | None = None,
        alg: str = "RS256",
        issuer: str | None = None,
    ) -> str:
        now = int(time.time())
        header = {"alg": alg, "kid": self.kid, "typ": "JWT"}
        claims = {
            "iss": issuer or self.url,
            "sub": subject,
            "aud": [AUDIENCE],
            "iat": now,
            "nbf": now,
            "exp": now + 3600,
        }
        signing_input = f"{_b64(json.dumps(header).encode())}.{_b64(json.dumps(claims).encode())}"
        if alg == "none":
            return signing_input + "."
        signature = (key or self.key).sign(
            signing_input.encode(), padding.PKCS1v15(), hashes.SHA256()
        )
        return f"{signing_input}.{_b64(signature)}"


@pytest.fixture
def issuer(control: Any) -> Iterator[Issuer]:
    ca = trustme.CA()
    control.set_settings(trustIssuerCa=ca.cert_pem.bytes().decode())
    running = Issuer(ca)
    yield running
    running.server.shutdown()


@pytest.fixture
def arm_call(raw: Any, operator_credential: Any, info: dict[str, Any]) -> Callable[..., Any]:
    def call(method: str, path: str, api_version: str, body: Any = None, query: str = "") -> Any:
        token = operator_credential.get_token("https://management.azure.com/.default").token
        url = f"{info['resourceManager'].rstrip('/')}{path}?api-version={api_version}{query}"
        return raw(method, url, token=token, body=body)

    return call


@pytest.fixture
def team(control: Any, demo: dict[str, Any]) -> dict[str, Any]:
    return dict(control.add_identity(demo["subscriptionId"], "team-a", "team-a-nodes"))


def _add_fic(arm_call: Callable[..., Any], identity_id: str, issuer: str, subject: str) -> Any:
    return arm_call(
        "PUT",
        f"{identity_id}/federatedIdentityCredentials/cluster",
        "2023-01-31",
        {"properties": {"issuer": issuer, "subject": subject, "audiences": [AUDIENCE]}},
    )


def _credential(info: dict[str, Any], client_id: str, token: str) -> ClientAssertionCredential:
    return ClientAssertionCredential(
        info["tenantId"],
        client_id,
        lambda: token,
        authority=info["authorityHost"],
        disable_instance_discovery=True,
        connection_verify=info["caBundle"],
    )


SUBJECT = "system:serviceaccount:team-a:batchcert"


def test_a_federated_credential_signs_in_with_the_issuers_own_signature(
    arm_call: Any, issuer: Issuer, team: dict[str, Any], info: dict[str, Any], control: Any
) -> None:
    answer = _add_fic(arm_call, team["id"], issuer.url, SUBJECT)
    assert answer.status == 201
    listed = arm_call("GET", f"{team['id']}/federatedIdentityCredentials", "2023-01-31").json()
    assert [f["properties"]["subject"] for f in listed["value"]] == [SUBJECT]
    credential = _credential(info, team["clientId"], issuer.token(SUBJECT))
    token = credential.get_token("https://management.azure.com/.default").token
    _, claims = decode_jwt_unverified(token)
    assert claims["oid"] == team["principalId"]
    assert control.requests(operation="Token", principal=team["principalId"], status=200)


@pytest.mark.parametrize(
    ("forge", "code"),
    [
        (lambda i: i.token(SUBJECT, key=rsa.generate_private_key(65537, 2048)), "AADSTS50013"),
        (lambda i: i.token(SUBJECT, alg="none"), "AADSTS50013"),
        (lambda i: i.token("system:serviceaccount:team-b:batchcert"), "AADSTS70021"),
    ],
)
def test_foreign_unsigned_and_other_subjects_tokens_are_refused(
    arm_call: Any,
    issuer: Issuer,
    team: dict[str, Any],
    info: dict[str, Any],
    forge: Callable[[Issuer], str],
    code: str,
) -> None:
    _add_fic(arm_call, team["id"], issuer.url, SUBJECT)
    credential = _credential(info, team["clientId"], forge(issuer))
    with pytest.raises(ClientAuthenticationError, match=code):
        credential.get_token("https://management.azure.com/.default")


def test_an_unreachable_issuer_is_aadsts50166(
    arm_call: Any, issuer: Issuer, team: dict[str, Any], info: dict[str, Any]
) -> None:
    gone = "https://127.0.0.1:1"
    _add_fic(arm_call, team["id"], gone, SUBJECT)
    credential = _credential(info, team["clientId"], issuer.token(SUBJECT, issuer=gone))
    with pytest.raises(ClientAuthenticationError, match="AADSTS50166"):
        credential.get_token("https://management.azure.com/.default")


def _vault_id(demo: dict[str, Any], name: str) -> str:
    return (
        f"/subscriptions/{demo['subscriptionId']}/resourceGroups/{demo['resourceGroup']}"
        f"/providers/Microsoft.KeyVault/vaults/{name}"
    )


def _assignment(scope: str, role: str, principal: str) -> dict[str, Any]:
    sub = scope.split("/")[2]
    return {
        "properties": {
            "roleDefinitionId": f"/subscriptions/{sub}/providers/Microsoft.Authorization/"
            f"roleDefinitions/{role}",
            "principalId": principal,
            "principalType": "ServicePrincipal",
        }
    }


def test_role_assignments_are_created_listed_refused_as_duplicates_and_deleted(
    arm_call: Any, demo: dict[str, Any], team: dict[str, Any]
) -> None:
    scope = _vault_id(demo, demo["vault"])
    name = str(uuid.uuid4())
    path = f"{scope}/providers/Microsoft.Authorization/roleAssignments/{name}"
    body = _assignment(scope, SECRETS_USER, team["principalId"])
    created = arm_call("PUT", path, "2022-04-01", body)
    assert created.status == 201
    assert created.json()["properties"]["scope"] == scope
    again = arm_call("PUT", path, "2022-04-01", body)
    assert again.status == 201  # same name, same content: nothing new
    other = f"{scope}/providers/Microsoft.Authorization/roleAssignments/{uuid.uuid4()}"
    duplicate = arm_call("PUT", other, "2022-04-01", body)
    assert duplicate.status == 409
    assert duplicate.json()["error"]["code"] == "RoleAssignmentExists"
    # Listing at the vault includes assignments at parent scopes; filtered by principal.
    rg_scope = scope.split("/providers/")[0]
    arm_call(
        "PUT",
        f"{rg_scope}/providers/Microsoft.Authorization/roleAssignments/{uuid.uuid4()}",
        "2022-04-01",
        _assignment(rg_scope, CERTIFICATE_USER, team["principalId"]),
    )
    listing = f"{scope}/providers/Microsoft.Authorization/roleAssignments"
    query = f"&$filter=assignedTo('{team['principalId']}')"
    listed = arm_call("GET", listing, "2022-04-01", query=query).json()["value"]
    assert len(listed) == 2
    assert arm_call("GET", path, "2022-04-01").status == 200
    assert arm_call("DELETE", path, "2022-04-01").status == 200
    assert arm_call("DELETE", path, "2022-04-01").status == 204
    assert arm_call("GET", path, "2022-04-01").status == 404


def test_an_unknown_principal_or_a_non_guid_name_is_refused(
    arm_call: Any, demo: dict[str, Any]
) -> None:
    scope = _vault_id(demo, demo["vault"])
    base = f"{scope}/providers/Microsoft.Authorization/roleAssignments/"
    body = _assignment(scope, SECRETS_USER, str(uuid.uuid4()))
    assert arm_call("PUT", base + str(uuid.uuid4()), "2022-04-01", body).status == 400
    assert arm_call("PUT", base + "not-a-guid", "2022-04-01", body).status == 400


def test_an_rbac_vault_answers_403_until_the_assignment_has_propagated(
    arm_call: Any,
    issuer: Issuer,
    team: dict[str, Any],
    demo: dict[str, Any],
    info: dict[str, Any],
    control: Any,
) -> None:
    from azure.keyvault.certificates import CertificateClient

    control.add_vault(demo["subscriptionId"], demo["resourceGroup"], "teamarbac", rbac=True)
    control.add_certificate("teamarbac", "web", subject="CN=web")
    vault = arm_call("GET", _vault_id(demo, "teamarbac"), "2023-07-01").json()
    assert vault["properties"]["enableRbacAuthorization"] is True
    control.grant("teamarbac", team["principalId"], {"certificates": ["get"]})  # ignored (RBAC)
    _add_fic(arm_call, team["id"], issuer.url, SUBJECT)
    credential = _credential(info, team["clientId"], issuer.token(SUBJECT))
    client = CertificateClient(
        f"https://teamarbac.vault.sim.test:{info['port']}",
        credential,
        connection_verify=info["caBundle"],
        retry_total=0,
    )
    with pytest.raises(HttpResponseError) as refused:
        client.get_certificate("web")
    assert refused.value.status_code == 403
    scope = _vault_id(demo, "teamarbac")
    arm_call(
        "PUT",
        f"{scope}/providers/Microsoft.Authorization/roleAssignments/{uuid.uuid4()}",
        "2022-04-01",
        _assignment(scope, CERTIFICATE_USER, team["principalId"]),
    )
    with pytest.raises(HttpResponseError) as propagating:
        client.get_certificate("web")
    assert propagating.value.status_code == 403
    control.advance(121)
    assert client.get_certificate("web").name == "web"
    assert control.requests(service="keyvault", principal=team["principalId"], status=200)


CONTRIBUTOR = "b24988ac-6180-42a0-ab88-20f7382dd24c"
MANAGED_IDENTITY_OPERATOR = "f1a07417-d97a-45cb-824c-7a7467783830"


def test_a_principal_without_role_assignments_gets_403_everywhere_until_assigned(
    arm_call: Any,
    raw: Any,
    issuer: Issuer,
    team: dict[str, Any],
    demo: dict[str, Any],
    info: dict[str, Any],
    control: Any,
    pool_body: Callable[..., dict[str, Any]],
) -> None:
    _add_fic(arm_call, team["id"], issuer.url, SUBJECT)
    credential = _credential(info, team["clientId"], issuer.token(SUBJECT))
    arm_token = credential.get_token("https://management.azure.com/.default").token
    batch_token = credential.get_token("https://batch.core.windows.net//.default").token
    rg = f"/subscriptions/{demo['subscriptionId']}/resourceGroups/{demo['resourceGroup']}"
    account = f"{rg}/providers/Microsoft.Batch/batchAccounts/{demo['batchAccount']}"
    base = info["resourceManager"].rstrip("/")

    def arm_as_team(method: str, path: str, body: Any = None) -> Any:
        return raw(method, f"{base}{path}?api-version=2024-07-01", token=arm_token, body=body)

    refused = arm_as_team("GET", account)
    assert refused.status == 403
    assert refused.json()["error"]["code"] == "AuthorizationFailed"
    assert team["principalId"] in refused.json()["error"]["message"]
    nodes = f"https://{demo['accountEndpoint']}/pools/x/nodes?api-version=2024-07-01.20.0"
    assert raw("GET", nodes, token=batch_token).status == 403
    # Contributor on the resource group, once propagated: ARM and Batch answer.
    arm_call(
        "PUT",
        f"{rg}/providers/Microsoft.Authorization/roleAssignments/{uuid.uuid4()}",
        "2022-04-01",
        _assignment(rg, CONTRIBUTOR, team["principalId"]),
    )
    assert arm_as_team("GET", account).status == 403  # not propagated yet
    control.advance(121)
    assert arm_as_team("GET", account).status == 200
    assert raw("GET", nodes, token=batch_token).status != 403
    # Naming an identity on a pool needs assign/action on it: Contributor on the group has it
    # for the group's identities, not for another team's group.
    assert arm_as_team("PUT", f"{account}/pools/teampool", pool_body()).status == 200
    theirs = control.add_identity(demo["subscriptionId"], "team-b", "team-b-nodes")["id"]
    body = pool_body()
    body["identity"]["userAssignedIdentities"] = {theirs: {}}
    created = arm_as_team("PUT", f"{account}/pools/theirpool", body)
    assert created.status == 403
    assert created.json()["error"]["code"] == "LinkedAuthorizationFailed"
    assert theirs in created.json()["error"]["message"]
    # Contributor cannot grant roles (Microsoft.Authorization writes).
    grant = raw(
        "PUT",
        f"{base}{rg}/providers/Microsoft.Authorization/roleAssignments/{uuid.uuid4()}"
        "?api-version=2022-04-01",
        token=arm_token,
        body=_assignment(rg, CONTRIBUTOR, team["principalId"]),
    )
    assert grant.status == 403
    assert control.requests(service="arm", principal=team["principalId"], status=403)
