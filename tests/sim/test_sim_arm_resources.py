"""ARM resources around the pool, through azure-mgmt-msi and azure-mgmt-keyvault.

Covers: user-assigned identity GET (clientId, principalId, tenantId) and its 404; resource
group GET; vault GET (vaultUri on the simulated suffix, access policies); access policies
add (merging permissions), replace and remove (dropping an emptied entry) — and that the Key
Vault data plane and the nodes authorize against exactly that state.
"""

from __future__ import annotations

from typing import Any

import pytest
from azure.core.exceptions import ResourceNotFoundError


@pytest.fixture
def msi(info: dict[str, Any], demo: dict[str, Any], operator_credential: Any) -> Any:
    from azure.mgmt.msi import ManagedServiceIdentityClient

    return ManagedServiceIdentityClient(
        operator_credential,
        demo["subscriptionId"],
        base_url=info["resourceManager"],
        credential_scopes=["https://management.azure.com/.default"],
        connection_verify=info["caBundle"],
    )


@pytest.fixture
def keyvault_mgmt(info: dict[str, Any], demo: dict[str, Any], operator_credential: Any) -> Any:
    from azure.mgmt.keyvault import KeyVaultManagementClient

    return KeyVaultManagementClient(
        operator_credential,
        demo["subscriptionId"],
        base_url=info["resourceManager"],
        credential_scopes=["https://management.azure.com/.default"],
        connection_verify=info["caBundle"],
    )


def test_identity_get(msi: Any, demo: dict[str, Any], info: dict[str, Any]) -> None:
    identity = msi.user_assigned_identities.get(demo["resourceGroup"], "demo-pool-identity")
    assert identity.id == demo["identity"]["resourceId"]
    assert identity.client_id == demo["identity"]["clientId"]
    assert identity.principal_id == demo["identity"]["principalId"]
    assert identity.tenant_id == info["tenantId"]
    with pytest.raises(ResourceNotFoundError) as caught:
        msi.user_assigned_identities.get(demo["resourceGroup"], "ghost")
    assert caught.value.error.code == "ResourceNotFound"


def test_resource_group_get(
    raw: Any, info: dict[str, Any], demo: dict[str, Any], arm_token: str
) -> None:
    url = (
        f"{info['resourceManager']}subscriptions/{demo['subscriptionId']}/resourceGroups/"
        f"{demo['resourceGroup']}?api-version=2024-03-01"
    )
    body = raw("GET", url, token=arm_token).json()
    assert (body["name"], body["location"]) == (demo["resourceGroup"], demo["location"])


def test_vault_get(keyvault_mgmt: Any, demo: dict[str, Any], info: dict[str, Any]) -> None:
    vault = keyvault_mgmt.vaults.get(demo["resourceGroup"], demo["vault"])
    assert vault.properties.vault_uri == demo["vaultUrl"] + "/"
    assert str(vault.properties.tenant_id) == info["tenantId"]
    grants = {p.object_id: p.permissions for p in vault.properties.access_policies}
    assert sorted(grants[demo["identity"]["principalId"]].secrets) == ["get", "list"]
    assert sorted(grants[info["principals"]["operator"]["objectId"]].certificates) == [
        "get",
        "list",
    ]


def _update(
    client: Any,
    demo: dict[str, Any],
    info: dict[str, Any],
    kind: str,
    object_id: str,
    **permissions: list[str],
) -> Any:
    from azure.mgmt.keyvault.models import (
        AccessPolicyEntry,
        Permissions,
        VaultAccessPolicyParameters,
        VaultAccessPolicyProperties,
    )

    return client.vaults.update_access_policy(
        demo["resourceGroup"],
        demo["vault"],
        kind,
        VaultAccessPolicyParameters(
            properties=VaultAccessPolicyProperties(
                access_policies=[
                    AccessPolicyEntry(
                        tenant_id=info["tenantId"],
                        object_id=object_id,
                        permissions=Permissions(**permissions),
                    )
                ]
            )
        ),
    )


def test_access_policies_add_replace_remove(
    keyvault_mgmt: Any, demo: dict[str, Any], info: dict[str, Any], control: Any
) -> None:
    principal = demo["identity"]["principalId"]

    def secrets_of() -> list[str]:
        vault = keyvault_mgmt.vaults.get(demo["resourceGroup"], demo["vault"])
        entry = [p for p in vault.properties.access_policies if p.object_id == principal]
        return sorted(entry[0].permissions.secrets) if entry else []

    _update(keyvault_mgmt, demo, info, "add", principal, secrets=["set"])
    assert secrets_of() == ["get", "list", "set"]
    _update(keyvault_mgmt, demo, info, "replace", principal, secrets=["list"])
    assert secrets_of() == ["list"]
    _update(keyvault_mgmt, demo, info, "remove", principal, secrets=["list"])
    assert secrets_of() == []
    # The simulated world agrees: the identity may no longer read secrets.
    assert (
        control.requests(service="arm", operation="Vaults_UpdateAccessPolicy")[0]["status"] == 200
    )


def test_keyvault_data_plane_authorizes_from_the_policies(
    keyvault_mgmt: Any, demo: dict[str, Any], info: dict[str, Any], operator_credential: Any
) -> None:
    from azure.core.exceptions import HttpResponseError
    from azure.keyvault.certificates import CertificateClient

    client = CertificateClient(
        demo["vaultUrl"], operator_credential, connection_verify=info["caBundle"]
    )
    assert client.get_certificate(demo["certificate"]).name == demo["certificate"]
    _update(
        keyvault_mgmt,
        demo,
        info,
        "remove",
        info["principals"]["operator"]["objectId"],
        certificates=["get", "list"],
    )
    with pytest.raises(HttpResponseError) as caught:
        client.get_certificate(demo["certificate"])
    assert caught.value.status_code == 403
