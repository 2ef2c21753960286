"""Certificate renewal and node-facing behaviour of the simulated Key Vault, via the real SDK.

Covers: an AutoRenew action at 80% of the lifetime makes a new version (new serial, thumbprint,
nbf/exp) once the simulated clock passes 80% and not at 79%, idempotently; a long clock jump
leaves every renewal the service would have made; ``days_before_expiry`` triggers and
EmailContacts never renews; disabling a certificate is what ``resolve_secret`` (the node logic)
reports, versionless URLs follow renewals and versioned URLs stay pinned; secret reads return a
real PKCS#12 and are logged with ``secret_read`` while certificate reads are not.
"""

from __future__ import annotations

import base64
import itertools

import pytest
import requests
from cryptography import x509 as cx509
from cryptography.hazmat.primitives.serialization import Encoding, pkcs12
from test_keyvault_harness import DAY, KeyVaultSim, auto_renew, policy, versions

from batchsim.requestlog import RequestFilter
from batchsim.server import RunningSimulator


@pytest.fixture
def kvsim(sim: RunningSimulator) -> KeyVaultSim:
    """The shared simulator (tests/sim/conftest.py), seen from the Key Vault side."""
    return KeyVaultSim(sim)


# --------------------------------------------------------------------- auto-renew


def test_autorenew_at_80_percent_fires_after_80_and_not_before(kvsim: KeyVaultSim) -> None:
    vault = kvsim.new_vault()
    client = kvsim.client(vault)
    first = client.begin_create_certificate("rot", policy(lifetime_actions=auto_renew(80)))
    original = first.result()
    nbf = original.properties.not_before.timestamp()
    exp = original.properties.expires_on.timestamp()

    kvsim.advance_to(nbf + 0.79 * (exp - nbf))
    assert len(versions(client, "rot")) == 1
    assert kvsim.tick() == 0

    kvsim.advance_to(nbf + 0.81 * (exp - nbf))
    assert len(versions(client, "rot")) == 2
    renewed = client.get_certificate("rot")
    assert renewed.properties.version != original.properties.version
    assert renewed.properties.x509_thumbprint != original.properties.x509_thumbprint
    assert renewed.properties.not_before > original.properties.not_before
    assert renewed.properties.expires_on > original.properties.expires_on
    parsed = cx509.load_der_x509_certificate(bytes(renewed.cer))
    assert (
        parsed.serial_number != cx509.load_der_x509_certificate(bytes(original.cer)).serial_number
    )
    # Renewed at the trigger point: a new 12-month lifetime from there.
    trigger = nbf + 0.8 * (exp - nbf)
    assert abs(renewed.properties.not_before.timestamp() - (trigger - 600)) < 2
    assert kvsim.tick() == 0 and len(versions(client, "rot")) == 2  # idempotent


def test_long_jump_creates_every_renewal_the_service_would_have_made(kvsim: KeyVaultSim) -> None:
    vault = kvsim.new_vault()
    kvsim.control.add_certificate(vault, "jump", subject="CN=jump", auto_renew_percentage=80)
    start = kvsim.now()
    kvsim.control.advance(3 * 365 * DAY)
    info = kvsim.control.certificate(vault, "jump")
    assert len(info["versions"]) == 4  # renewed at ~0.8, ~1.6, ~2.4 years
    created = [v["created"] for v in info["versions"]]
    assert all(b > a for a, b in itertools.pairwise(created))
    assert created[-1] < start + 3 * 365 * DAY


def test_days_before_expiry_and_email_contacts(kvsim: KeyVaultSim) -> None:
    vault = kvsim.new_vault()
    kvsim.control.add_certificate(
        vault,
        "mail",
        subject="CN=mail",
        validity_months=3,
        lifetime_action={
            "trigger": {"lifetime_percentage": 10},
            "action": {"action_type": "EmailContacts"},
        },
    )
    kvsim.control.add_certificate(
        vault,
        "days",
        subject="CN=days",
        validity_months=3,
        lifetime_action={
            "trigger": {"days_before_expiry": 30},
            "action": {"action_type": "AutoRenew"},
        },
    )
    exp = kvsim.control.certificate(vault, "days")["current"]["exp"]
    kvsim.advance_to(exp - 31 * DAY)
    assert len(kvsim.control.certificate(vault, "days")["versions"]) == 1
    kvsim.advance_to(exp - 29 * DAY)
    assert len(kvsim.control.certificate(vault, "days")["versions"]) == 2
    assert len(kvsim.control.certificate(vault, "mail")["versions"]) == 1  # never renews


# ------------------------------------------------------------- node-facing behaviour


def test_disable_is_what_the_node_logic_sees(kvsim: KeyVaultSim) -> None:
    vault = kvsim.new_vault()
    client = kvsim.client(vault)
    cert = client.begin_create_certificate("web", policy()).result()
    url = f"{kvsim.vault_url(vault)}/secrets/web"
    resolved = kvsim.resolve_secret(url)
    assert (resolved.ok, resolved.version, resolved.pinned) == (
        True,
        cert.properties.version,
        False,
    )

    client.update_certificate_properties("web", enabled=False)
    disabled = kvsim.resolve_secret(url)
    assert (disabled.ok, disabled.code) == (False, "CertificateDisabled")
    client.update_certificate_properties("web", enabled=True)

    new_version = kvsim.control.renew_certificate(vault, "web")
    assert kvsim.resolve_secret(url).version == new_version
    pinned = kvsim.resolve_secret(f"{url}/{cert.properties.version}")
    assert (pinned.ok, pinned.version, pinned.pinned) == (True, cert.properties.version, True)
    for bad, code in (
        (f"{kvsim.vault_url(vault)}/certificates/web", "NotASecretsUrl"),
        (f"{kvsim.vault_url(vault)}/secrets/nope", "SecretNotFound"),
        (f"{url}/{'0' * 32}", "SecretNotFound"),
        ("https://nowhere.vault.sim.test/secrets/web", "VaultNotFound"),
        ("https://kv.vault.azure.net/secrets/web", "VaultNotFound"),
    ):
        assert kvsim.resolve_secret(bad).code == code, bad


def test_secret_reads_are_logged_and_certificate_reads_are_not(kvsim: KeyVaultSim) -> None:
    vault = kvsim.new_vault()
    client = kvsim.client(vault)
    cert = client.begin_create_certificate("web", policy()).result()
    client.get_certificate("web")
    versions(client, "web")
    assert not kvsim.log.query(
        RequestFilter(service="keyvault", secret_read=True, path_regex="^/secrets/web")
    )

    token = kvsim.token()
    response = requests.get(
        f"{kvsim.vault_url(vault)}/secrets/web/?api-version=7.4",
        headers={"Authorization": f"Bearer {token}"},
        verify=kvsim.ca_path,
        timeout=10,
    )
    assert response.status_code == 200
    body = response.json()
    assert (body["contentType"], body["managed"]) == ("application/x-pkcs12", True)
    assert body["kid"].endswith(f"/keys/web/{cert.properties.version}")
    bundle = pkcs12.load_pkcs12(base64.b64decode(body["value"]), None)
    assert bundle.cert is not None and bundle.key is not None
    assert bundle.cert.certificate.public_bytes(Encoding.DER) == bytes(cert.cer)
    reads = kvsim.log.query(RequestFilter(service="keyvault", secret_read=True))
    assert reads[-1].operation == "GetSecret" and reads[-1].status == 200

    client.update_certificate_properties("web", enabled=False)
    refused = requests.get(
        f"{kvsim.vault_url(vault)}/secrets/web?api-version=7.4",
        headers={"Authorization": f"Bearer {token}"},
        verify=kvsim.ca_path,
        timeout=10,
    )
    assert refused.status_code == 403
    assert refused.json() == {
        "error": {
            "code": "Forbidden",
            "message": "Operation get is not allowed on a disabled secret.",
            "innererror": {"code": "SecretDisabled"},
        }
    }
    assert kvsim.log.query(RequestFilter(secret_read=True))[-1].status == 403
