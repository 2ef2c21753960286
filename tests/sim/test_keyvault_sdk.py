"""Conformance of the simulated Key Vault data plane, driven by the real Azure SDK clients.

Covers, through ``azure.keyvault.certificates.CertificateClient`` (sync and aio) signed in with
``azure.identity.ClientSecretCredential`` against the simulated Entra ID, over HTTPS with
certificate verification on: the 401 challenge flow and the SDK's unweakened challenge-resource
check; wrong audience → 401; no access policy → 403 with the real message; create (pending on
the simulated clock, or completed before the first poll) → get → versions with paging; policy
round trip; soft delete, recover, purge; throttling with Retry-After honoured by the SDK's retry
policy; bad input and other refusals with Key Vault error bodies, never 500; the api-versions
the doc lists; snapshot/restore. Renewal and node-facing behaviour: ``test_keyvault_renewal``.
"""

from __future__ import annotations

import hashlib
import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import requests
from azure.core.credentials import AccessToken, TokenCredential
from azure.core.exceptions import ClientAuthenticationError, HttpResponseError
from azure.keyvault.certificates import CertificatePolicyAction
from azure.keyvault.certificates._shared.challenge_auth_policy import (
    _validate_challenge_resource,
)
from cryptography import x509 as cx509
from test_keyvault_harness import KeyVaultSim, auto_renew, policy, versions

from batchsim.keyvault.service import KeyVaultService
from batchsim.requestlog import RequestFilter, RequestLog
from batchsim.server import RunningSimulator


@pytest.fixture
def kvsim(sim: RunningSimulator) -> KeyVaultSim:
    """The shared simulator (tests/sim/conftest.py), seen from the Key Vault side."""
    return KeyVaultSim(sim)


# ------------------------------------------------------------------------ authentication


def test_first_request_gets_the_challenge_then_the_sdk_signs_in(kvsim: KeyVaultSim) -> None:
    vault = kvsim.new_vault()
    raw = requests.get(
        f"{kvsim.vault_url(vault)}/certificates/x/?api-version=2026-04-01",
        verify=kvsim.ca_path,
        timeout=10,
    )
    assert raw.status_code == 401
    assert raw.json() == {
        "error": {
            "code": "Unauthorized",
            # as recorded (keyvault-certificates.json [0], tests/data/azure/recorded.json)
            "message": "AKV10000: Request is missing a Bearer, PoP, or MTLS_POP token.",
        }
    }
    assert raw.headers["WWW-Authenticate"] == (
        f'Bearer authorization="https://login.sim.test:{kvsim.port}/{kvsim.tenant_id}", '
        f'resource="https://vault.sim.test:{kvsim.port}"'
    )

    since = kvsim.log.last_seq
    client = kvsim.client(vault)
    cert = client.begin_create_certificate("web", policy()).result()
    assert cert.name == "web"
    first, second = kvsim.log.query(RequestFilter(service="keyvault", since_seq=since))[:2]
    assert (first.operation, first.status, first.principal) == ("CreateCertificate", 401, None)
    assert (second.operation, second.status) == ("CreateCertificate", 202)
    assert second.principal == kvsim.operator.object_id


def test_announced_resource_passes_the_sdks_own_check_unweakened(kvsim: KeyVaultSim) -> None:
    scope = kvsim.audience + "/.default"
    _validate_challenge_resource(scope, f"{kvsim.vault_url('kv1')}/certificates/x")
    for foreign in (
        f"https://localhost:{kvsim.port}/certificates/x",
        f"https://kv1.vault.sim.test:{kvsim.port + 1}/certificates/x",
        f"https://kv1.evil.test:{kvsim.port}/certificates/x",
    ):
        with pytest.raises(ValueError, match="does not match the requested domain"):
            _validate_challenge_resource(scope, foreign)


class _WrongScope(TokenCredential):
    """A real credential asked for the ARM audience whatever the challenge says."""

    def __init__(self, inner: TokenCredential) -> None:
        self.inner = inner

    def get_token(self, *scopes: str, **kwargs: Any) -> AccessToken:
        return self.inner.get_token("https://management.azure.com/.default")


def test_token_for_another_audience_is_refused_401(kvsim: KeyVaultSim) -> None:
    vault = kvsim.new_vault()
    client = kvsim.client(vault, credential=_WrongScope(kvsim.credential()))
    with pytest.raises(ClientAuthenticationError) as caught:
        client.get_certificate("anything")
    assert caught.value.status_code == 401
    assert "AKV10022: Invalid audience. Expected https://vault.sim.test:" in str(caught.value)


def test_caller_without_access_policy_gets_403_with_the_real_message(kvsim: KeyVaultSim) -> None:
    vault = kvsim.new_vault(grant_operator=False)
    stranger = kvsim.register_app("stranger")
    client = kvsim.client(vault, credential=kvsim.credential(stranger))
    with pytest.raises(HttpResponseError) as caught:
        client.get_certificate("web")
    error = caught.value
    assert error.status_code == 403
    assert error.error is not None and error.error.code == "Forbidden"
    assert (
        f"The user, group or application 'appid={stranger.client_id};oid="
        f"{stranger.object_id};iss=https://sts.windows.net/{kvsim.tenant_id}/' does not "
        f"have certificates get permission on key vault '{vault};location={kvsim.location}'."
    ) in error.message
    assert error.response is not None
    body = json.loads(error.response.text())
    assert body["error"]["innererror"] == {"code": "AccessDenied"}


# ------------------------------------------------------------------ certificates


def test_create_stays_pending_until_the_issue_delay_passes_on_the_sim_clock(
    kvsim: KeyVaultSim,
) -> None:
    vault = kvsim.new_vault()
    client = kvsim.client(vault)
    kvsim.set_issue_delay(30.0)
    poller = client.begin_create_certificate("slow", policy(), _polling_interval=0.05)
    operation = client.get_certificate_operation("slow")
    assert operation.status == "inProgress"
    assert operation.csr  # a real CSR, as the service shows while issuing
    pending = client.get_certificate("slow")
    assert pending.properties.enabled is False
    assert pending.cer is None
    assert not poller.done()
    kvsim.control.advance(30)
    cert = poller.result(timeout=10)
    assert cert.properties.enabled is True
    assert client.get_certificate_operation("slow").status == "completed"
    assert cert.properties.version == pending.properties.version  # the version id was reserved


def test_create_get_and_versions_carry_real_x509_material(kvsim: KeyVaultSim) -> None:
    vault = kvsim.new_vault()
    client = kvsim.client(vault)
    cert = client.begin_create_certificate("web", policy("CN=web.example")).result()
    der = bytes(cert.cer)
    parsed = cx509.load_der_x509_certificate(der)
    assert cert.properties.x509_thumbprint == hashlib.sha1(der).digest()
    assert parsed.not_valid_before_utc == cert.properties.not_before
    assert parsed.not_valid_after_utc == cert.properties.expires_on
    assert cert.id == f"{kvsim.vault_url(vault)}/certificates/web/{cert.properties.version}"
    assert cert.secret_id == f"{kvsim.vault_url(vault)}/secrets/web/{cert.properties.version}"
    assert cert.policy is not None and cert.policy.lifetime_actions is not None
    assert cert.policy.lifetime_actions[0].lifetime_percentage == 80  # the service default

    again = client.get_certificate("web")
    assert again.id == cert.id and again.cer == cert.cer
    pinned = client.get_certificate_version("web", cert.properties.version or "")
    assert pinned.cer == cert.cer and pinned.policy is None

    kvsim.control.renew_certificate(vault, "web")
    listed = versions(client, "web")
    assert len(listed) == 2
    assert {v.version for v in listed} == {
        cert.properties.version,
        client.get_certificate("web").properties.version,
    }


def test_version_listing_pages_with_next_link(kvsim: KeyVaultSim) -> None:
    vault = kvsim.new_vault()
    kvsim.control.add_certificate(vault, "paged", subject="CN=paged")
    for _ in range(4):
        kvsim.control.renew_certificate(vault, "paged")
    client = kvsim.client(vault)
    pages = list(client.list_properties_of_certificate_versions("paged", max_page_size=2).by_page())
    assert [len(list(p)) for p in pages] == [2, 2, 1]
    listed = kvsim.log.query(RequestFilter(operation="GetCertificateVersions", status=200))
    assert listed[-1].query.get("$skiptoken")  # the SDK followed our nextLink
    names = [c.name for c in client.list_properties_of_certificates()]
    assert names == ["paged"]


def test_policy_round_trip(kvsim: KeyVaultSim) -> None:
    vault = kvsim.new_vault()
    client = kvsim.client(vault)
    client.begin_create_certificate("web", policy(lifetime_actions=auto_renew(90))).result()
    stored = client.get_certificate_policy("web")
    assert stored.lifetime_actions is not None
    assert (stored.lifetime_actions[0].action, stored.lifetime_actions[0].lifetime_percentage) == (
        CertificatePolicyAction.auto_renew,
        90,
    )
    updated = client.update_certificate_policy("web", policy(lifetime_actions=auto_renew(days=30)))
    assert updated.lifetime_actions is not None
    assert updated.lifetime_actions[0].days_before_expiry == 30
    fetched = client.get_certificate_policy("web")
    assert fetched.lifetime_actions is not None
    assert fetched.lifetime_actions[0].days_before_expiry == 30
    assert fetched.subject == "CN=web" and fetched.validity_in_months == 12

    with pytest.raises(HttpResponseError) as caught:
        client.update_certificate_policy("web", policy(lifetime_actions=auto_renew(100)))
    assert caught.value.status_code == 400
    assert caught.value.error is not None and caught.value.error.code == "BadParameter"
    assert "lifetime_percentage" in caught.value.message


# ----------------------------------------------------------------- delete, recover


def test_soft_delete_purge_and_name_reuse(kvsim: KeyVaultSim) -> None:
    vault = kvsim.new_vault()
    client = kvsim.client(vault)
    client.begin_create_certificate("gone", policy()).result()
    deleted = client.begin_delete_certificate("gone").result()
    assert deleted.recovery_id == f"{kvsim.vault_url(vault)}/deletedcertificates/gone"
    assert deleted.deleted_on is not None and deleted.scheduled_purge_date is not None
    assert client.get_deleted_certificate("gone").name == "gone"
    with pytest.raises(HttpResponseError) as caught:
        client.begin_create_certificate("gone", policy())
    assert caught.value.status_code == 409
    recovered = client.begin_recover_deleted_certificate("gone").result()
    assert recovered.name == "gone"
    client.begin_delete_certificate("gone").result()
    client.purge_deleted_certificate("gone")
    assert client.begin_create_certificate("gone", policy()).result().name == "gone"


# --------------------------------------------------------------------- throttling


def test_throttled_gets_answer_429_and_the_sdk_retries_with_its_own_backoff(
    kvsim: KeyVaultSim,
) -> None:
    vault = kvsim.new_vault()
    client = kvsim.client(vault)
    client.begin_create_certificate("web", policy()).result()
    kvsim.control.set_throttle(keyvault={"limit": 2, "windowSeconds": 1.0})
    for _ in range(4):  # no Retry-After: azure-core's exponential retry waits the window out
        client.get_certificate("web")
    throttled = kvsim.log.query(RequestFilter(service="keyvault", status=429))
    assert throttled, "expected at least one 429"
    assert throttled[-1].operation == "GetCertificate"


def test_throttle_answer_shape(kvsim: KeyVaultSim) -> None:
    vault = kvsim.new_vault()
    token = kvsim.token()
    kvsim.control.set_throttle(keyvault={"limit": 1, "windowSeconds": 30.0})
    answers = [
        requests.get(
            f"{kvsim.vault_url(vault)}/certificates?api-version=7.5",
            headers={"Authorization": f"Bearer {token}"},
            verify=kvsim.ca_path,
            timeout=10,
        )
        for _ in range(2)
    ]
    assert [a.status_code for a in answers] == [200, 429]
    # The recorded real 429 (keyvault-certificates.json [13]): no Retry-After, this body.
    assert "Retry-After" not in answers[1].headers
    recorded = json.loads((Path(__file__).parents[1] / "data/azure/recorded.json").read_text())
    assert answers[1].json() == recorded["keyvault_throttled"]["body"]


# ---------------------------------------------------------------------- bad input


@pytest.mark.parametrize(
    ("method", "path", "body", "fragment"),
    [
        ("POST", "/certificates/newcert/create", b"{not json", "not valid JSON"),
        ("POST", "/certificates/newcert/create", b"[1, 2]", "JSON object"),
        ("POST", "/certificates/newcert/create", b"{}", "policy is required"),
        (
            "POST",
            "/certificates/newcert/create",
            b'{"policy": {"x509_props": {"subject": "CN=x", "validity_months": "12"}}}',
            "validity_months",
        ),
        (
            "POST",
            "/certificates/newcert/create",
            b'{"policy": {"x509_props": {"subject": "CN=x"}, "lifetime_actions": '
            b'[{"trigger": {"lifetime_percentage": 0}, "action": {"action_type": "AutoRenew"}}]}}',
            "between 1 and 99",
        ),
        (
            "POST",
            "/certificates/newcert/create",
            b'{"policy": {"x509_props": {"subject": "CN=x", "validity_months": 2}, '
            b'"lifetime_actions": [{"trigger": {"days_before_expiry": 55}, '
            b'"action": {"action_type": "AutoRenew"}}]}}',
            "between 1 and 54",
        ),
        (
            "POST",
            "/certificates/newcert/create",
            b'{"policy": {"x509_props": {"subject": "CN=x"}}, "attributes": {"enabled": "yes"}}',
            "attributes.enabled",
        ),
        ("POST", "/certificates/bad_name/create", b'{"policy": {}}', "invalid name"),
        (
            "PATCH",
            "/certificates/c1/policy",
            b'{"lifetime_actions": "AutoRenew"}',
            "lifetime_actions",
        ),
        ("GET", "/certificates/c1/versions?maxresults=0", None, "maxresults"),
    ],
)
def test_bad_input_gets_bad_parameter_never_500(
    kvsim: KeyVaultSim, method: str, path: str, body: bytes | None, fragment: str
) -> None:
    vault = kvsim.shared_vault()
    token = kvsim.token()
    separator = "&" if "?" in path else "?"
    response = requests.request(
        method,
        f"{kvsim.vault_url(vault)}{path}{separator}api-version=2026-04-01",
        data=body,
        headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"},
        verify=kvsim.ca_path,
        timeout=10,
    )
    assert response.status_code == 400, response.text
    error = response.json()["error"]
    assert error["code"] == "BadParameter"
    assert fragment in error["message"]


@pytest.mark.parametrize(
    ("method", "path", "status", "code"),
    [
        ("GET", "/certificates/c1?", 400, "BadParameter"),  # no api-version at all
        ("PUT", "/certificates/c1/policy?api-version=7.5", 405, "BadParameter"),
        ("PUT", "/secrets/c1?api-version=7.5", 501, "NotImplemented"),
        ("GET", "/keys/c1?api-version=7.5", 404, "NotFound"),
        ("GET", "/certificates/c1/" + "0" * 32 + "?api-version=7.5", 404, "CertificateNotFound"),
        ("GET", "/secrets/nope?api-version=7.5", 404, "SecretNotFound"),
    ],
)
def test_other_refusals_have_key_vault_error_bodies(
    kvsim: KeyVaultSim, method: str, path: str, status: int, code: str
) -> None:
    vault = kvsim.shared_vault()
    token = kvsim.token()
    response = requests.request(
        method,
        f"{kvsim.vault_url(vault)}{path}",
        headers={"Authorization": f"Bearer {token}"},
        verify=kvsim.ca_path,
        timeout=10,
    )
    assert response.status_code == status
    assert response.json()["error"]["code"] == code


def test_unknown_api_version_gets_the_real_400(kvsim: KeyVaultSim) -> None:
    vault = kvsim.shared_vault()
    client = kvsim.client(vault, api_version="2099-01-01")
    with pytest.raises(HttpResponseError) as caught:
        client.get_certificate("c1")
    assert caught.value.status_code == 400
    assert caught.value.message.startswith(
        "(BadParameter) The specified version (2099-01-01) is not recognized. Consider using "
        "the latest supported version (2026-04-01)."
    )


@pytest.mark.parametrize("api_version", ["7.4", "7.5", "7.6", "2025-07-01"])
def test_documented_api_versions_are_accepted(kvsim: KeyVaultSim, api_version: str) -> None:
    vault = kvsim.shared_vault()
    client = kvsim.client(vault, api_version=api_version)
    assert client.get_certificate("c1").name == "c1"


# -------------------------------------------------------------------------- aio


async def test_aio_client_create_get_versions(kvsim: KeyVaultSim) -> None:
    vault = kvsim.new_vault()
    async with kvsim.aio_credential() as credential, kvsim.aio_client(vault, credential) as client:
        poller = await client.create_certificate("aio", policy("CN=aio"))
        assert poller.name == "aio"
        cert = await client.get_certificate("aio")
        assert cert.properties.x509_thumbprint == hashlib.sha1(bytes(cert.cer)).digest()
        listed = [v async for v in client.list_properties_of_certificate_versions("aio")]
        assert [v.version for v in listed] == [cert.properties.version]


def test_control_snapshot_restore_round_trips_through_json(kvsim: KeyVaultSim) -> None:
    vault = kvsim.new_vault()
    version = kvsim.control.add_certificate(vault, "keep", subject="CN=keep")["version"]
    data = json.loads(json.dumps(kvsim.running.call(kvsim.kv.snapshot)))
    clock = kvsim.running.sim.clock
    fresh = KeyVaultService(clock, kvsim.kv.verify_token, lambda *_: True, RequestLog(clock=clock))
    fresh.restore(data)
    resolved = fresh.resolve_secret(f"https://{vault}.vault.sim.test/secrets/keep")
    assert (resolved.ok, resolved.version) == (True, version)
    assert datetime.fromtimestamp(resolved.expires or 0, UTC) > clock.now()
