"""Golden tests for the pure spec → ARM pool body translator.

Covers: Linux and Windows; Key Vault extension 1.0/2.0 (observedCertificates as strings, one
store) and 3.0 (objects, a store each); several certificates; versionless /secrets/ URIs from
either spelling; msiClientId is the clientId; pollingIntervalInS a string; identity a sibling of
properties; autoscale; and refusal of versioned or /certificates/ URIs.

Regenerate a golden file deliberately with ``BATCHCERT_UPDATE_GOLDEN=1`` and review the diff.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from batchcert.models.spec import parse_spec
from batchcert.translate.pool_body import build_pool_body, owner_uid_of
from support.builders import CLIENT_ID, IDENTITY, OWNER, base_spec

GOLDEN = Path(__file__).parent / "golden"


WINDOWS = {
    "image": {
        "publisher": "microsoftwindowsserver",
        "offer": "windowsserver",
        "sku": "2022-datacenter",
        "version": "latest",
    },
    "nodeAgentSkuId": "batch.node.windows amd64",
}
TWO_CERTS = [
    {"secretId": "https://mykv.vault.azure.net/secrets/mycert"},
    {
        "vaultUrl": "https://otherkv.vault.azure.net/",
        "name": "second",
        "certificateStoreLocation": "/etc/certs/second",
    },
]

CASES: dict[str, dict[str, Any]] = {
    "linux-v3-one-cert": base_spec(),
    "linux-v1-one-cert": base_spec(
        keyVaultExtension={"typeHandlerVersion": "1.0", "pollingIntervalSeconds": 3600}
    ),
    "linux-v3-two-certs-two-stores": base_spec(certificates=TWO_CERTS),
    "windows-v3-two-certs": base_spec(
        **WINDOWS,
        certificates=[
            {"secretId": "https://mykv.vault.azure.net/secrets/mycert"},
            {
                "secretId": "https://mykv.vault.azure.net/secrets/web",
                "certificateStoreName": "WebHosting",
                "certificateStoreLocation": "LocalMachine",
            },
        ],
    ),
    "windows-v2-one-cert": base_spec(**WINDOWS, keyVaultExtension={"typeHandlerVersion": "2.0"}),
    "linux-autoscale": base_spec(
        scale={"auto": {"formula": "$TargetDedicatedNodes = 2;", "evaluationInterval": "PT5M"}}
    ),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_pool_body_matches_golden(case: str) -> None:
    body = build_pool_body(parse_spec(CASES[case]), identity_client_id=CLIENT_ID, owner=OWNER)
    path = GOLDEN / f"pool-{case}.json"
    if os.environ.get("BATCHCERT_UPDATE_GOLDEN"):
        path.write_text(json.dumps(body, indent=2, sort_keys=True) + "\n")
    assert body == json.loads(path.read_text())


def test_extension_settings_follow_the_documented_rules() -> None:
    body = build_pool_body(parse_spec(base_spec()), identity_client_id=CLIENT_ID, owner=OWNER)
    assert set(body) == {"identity", "properties"}  # identity is a sibling of properties
    assert body["identity"] == {"type": "UserAssigned", "userAssignedIdentities": {IDENTITY: {}}}
    vmc = body["properties"]["deploymentConfiguration"]["virtualMachineConfiguration"]
    (ext,) = vmc["extensions"]
    assert (ext["publisher"], ext["type"]) == ("Microsoft.Azure.KeyVault", "KeyVaultForLinux")
    settings = ext["settings"]
    assert settings["authenticationSettings"]["msiClientId"] == CLIENT_ID
    assert settings["secretsManagementSettings"]["pollingIntervalInS"] == "300"
    urls = [c["url"] for c in settings["secretsManagementSettings"]["observedCertificates"]]
    assert urls == ["https://mykv.vault.azure.net/secrets/mycert"]


def test_windows_is_derived_from_the_node_agent_sku() -> None:
    body = build_pool_body(
        parse_spec(base_spec(**WINDOWS)), identity_client_id=CLIENT_ID, owner=OWNER
    )
    vmc = body["properties"]["deploymentConfiguration"]["virtualMachineConfiguration"]
    ext = vmc["extensions"][0]
    assert ext["type"] == "KeyVaultForWindows"
    assert ext["settings"]["authenticationSettings"]["msiEndpoint"].endswith("/oauth2/token")


def test_owner_metadata_round_trips() -> None:
    body = build_pool_body(parse_spec(base_spec()), identity_client_id=CLIENT_ID, owner=OWNER)
    assert owner_uid_of(body["properties"]) == OWNER.uid
    assert owner_uid_of({"metadata": [{"name": "other", "value": "x"}]}) is None


@pytest.mark.parametrize(
    ("secret_id", "phrase"),
    [
        (
            "https://mykv.vault.azure.net/secrets/mycert/8f5f3f491afd48cb99286ba2aacd39af",
            "pins one version",
        ),
        ("https://mykv.vault.azure.net/certificates/mycert", "/secrets/"),
        ("http://mykv.vault.azure.net/secrets/mycert", "/secrets/"),
    ],
    ids=["versioned", "certificates-path", "plain-http"],
)
def test_unusable_secret_ids_never_parse(secret_id: str, phrase: str) -> None:
    with pytest.raises(ValidationError, match=phrase):
        parse_spec(base_spec(certificates=[{"secretId": secret_id}]))
