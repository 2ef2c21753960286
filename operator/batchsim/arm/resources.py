"""ARM resources around the pool: resource groups, user-assigned identities, Key Vault vaults.

Role: the read side the operator needs (resource group GET, identity GET for its clientId,
vault GET) and vault access-policy changes (``accessPolicies/{add|replace|remove}``), whose
result is what the Key Vault data plane and the simulated nodes authorize against.

Access-policy semantics (Microsoft.KeyVault ``Vaults_UpdateAccessPolicy``): ``add`` merges the
given permissions into the entry for (tenantId, objectId), creating it if absent; ``replace``
sets the entry's permissions to exactly the given ones; ``remove`` takes the given permissions
away and drops an entry left with none.
"""

from __future__ import annotations

from typing import Any

from aiohttp import web

from batchsim.arm.errors import (
    ArmError,
    arm_json,
    resource_group_not_found,
    resource_not_found,
)
from batchsim.arm.pipeline import RG, ArmCall, ArmRoute, route
from batchsim.world import AccessPolicy, Identity, JsonDict, Vault

IDENTITY = (
    RG + r"/providers/Microsoft\.ManagedIdentity/userAssignedIdentities"
    r"/(?P<identityName>[^/]+)"
)
VAULT = RG + r"/providers/Microsoft\.KeyVault/vaults/(?P<vaultName>[^/]+)"
ACCESS_POLICY = VAULT + r"/accessPolicies/(?P<operationKind>[^/]+)"
PERMISSION_KINDS = ("keys", "secrets", "certificates", "storage")


def _resource_group(call: ArmCall) -> None:
    p = call.params
    if call.sim.world.resource_group(p["subscriptionId"], p["resourceGroupName"]) is None:
        raise resource_group_not_found(p["resourceGroupName"])


async def get_resource_group(call: ArmCall) -> web.Response:
    p = call.params
    rg = call.sim.world.resource_group(p["subscriptionId"], p["resourceGroupName"])
    if rg is None:
        raise resource_group_not_found(p["resourceGroupName"])
    return arm_json(
        {
            "id": f"/subscriptions/{p['subscriptionId']}/resourceGroups/{rg.name}",
            "name": rg.name,
            "type": "Microsoft.Resources/resourceGroups",
            "location": rg.location,
            "properties": {"provisioningState": "Succeeded"},
        }
    )


def identity_of(call: ArmCall) -> Identity:
    """The user-assigned identity the call's path names, or ARM's ResourceNotFound."""
    p = call.params
    arm_id = (
        f"/subscriptions/{p['subscriptionId']}/resourceGroups/{p['resourceGroupName']}"
        f"/providers/Microsoft.ManagedIdentity/userAssignedIdentities/{p['identityName']}"
    )
    identity = call.sim.world.identity(arm_id)
    if identity is None:
        raise resource_not_found(
            "Microsoft.ManagedIdentity/userAssignedIdentities",
            p["identityName"],
            p["resourceGroupName"],
        )
    return identity


async def get_identity(call: ArmCall) -> web.Response:
    _resource_group(call)
    identity = identity_of(call)
    return arm_json(
        {
            "id": identity.arm_id,
            "name": identity.name,
            "type": "Microsoft.ManagedIdentity/userAssignedIdentities",
            "location": identity.location,
            "tags": {},
            "properties": {
                "tenantId": identity.tenant_id,
                "principalId": identity.principal_id,
                "clientId": identity.client_id,
                "isolationScope": "None",
            },
        }
    )


def _vault(call: ArmCall) -> Vault:
    _resource_group(call)
    p = call.params
    vault = call.sim.world.vault(p["vaultName"])
    if (
        vault is None
        or vault.resource_group.lower() != p["resourceGroupName"].lower()
        or vault.subscription_id.lower() != p["subscriptionId"].lower()
    ):
        raise resource_not_found(
            "Microsoft.KeyVault/vaults", p["vaultName"], p["resourceGroupName"]
        )
    return vault


def _policy_json(policy: AccessPolicy) -> JsonDict:
    return {
        "tenantId": policy.tenant_id,
        "objectId": policy.object_id,
        "permissions": {k: list(v) for k, v in policy.permissions.items()},
    }


def render_vault(call: ArmCall, vault: Vault) -> JsonDict:
    return {
        "id": vault.arm_id,
        "name": vault.name,
        "type": "Microsoft.KeyVault/vaults",
        "location": vault.location,
        "tags": {},
        "properties": {
            "sku": {"family": "A", "name": "standard"},
            "tenantId": vault.tenant_id,
            "accessPolicies": [_policy_json(p) for p in vault.access_policies],
            "enabledForDeployment": False,
            "enableSoftDelete": True,
            "softDeleteRetentionInDays": 90,
            "enableRbacAuthorization": vault.enable_rbac_authorization,
            "vaultUri": call.sim.vault_uri(vault.name),
            "provisioningState": "Succeeded",
            "publicNetworkAccess": "Enabled",
        },
    }


async def get_vault(call: ArmCall) -> web.Response:
    return arm_json(render_vault(call, _vault(call)))


def _parse_policies(body: Any) -> list[AccessPolicy]:
    def bad(reason: str) -> ArmError:
        # Unconfirmed: Key Vault RP wording; the code is ARM's generic one for bad bodies.
        return ArmError(400, "BadRequest", f"Invalid request body: {reason}")

    if not isinstance(body, dict) or not isinstance(body.get("properties"), dict):
        raise bad("'properties' is required")
    entries = body["properties"].get("accessPolicies")
    if not isinstance(entries, list) or not entries:
        raise bad("'properties.accessPolicies' must be a non-empty array")
    policies = []
    for i, entry in enumerate(entries):
        if not isinstance(entry, dict):
            raise bad(f"accessPolicies[{i}] must be an object")
        for key in ("tenantId", "objectId"):
            if not isinstance(entry.get(key), str) or not entry[key]:
                raise bad(f"accessPolicies[{i}].{key} is required")
        perms = entry.get("permissions")
        if not isinstance(perms, dict):
            raise bad(f"accessPolicies[{i}].permissions is required")
        cleaned: dict[str, list[str]] = {}
        for kind, values in perms.items():
            if (
                kind not in PERMISSION_KINDS
                or not isinstance(values, list)
                or not all(isinstance(v, str) for v in values)
            ):
                raise bad(f"accessPolicies[{i}].permissions.{kind} is invalid")
            cleaned[kind] = [v.lower() for v in values]
        policies.append(AccessPolicy(entry["tenantId"], entry["objectId"], cleaned))
    return policies


def apply_access_policies(vault: Vault, kind: str, policies: list[AccessPolicy]) -> None:
    for policy in policies:
        existing = next(
            (
                p
                for p in vault.access_policies
                if p.object_id.lower() == policy.object_id.lower()
                and p.tenant_id.lower() == policy.tenant_id.lower()
            ),
            None,
        )
        if kind == "add":
            if existing is None:
                vault.access_policies.append(policy)
                continue
            for perm_kind, values in policy.permissions.items():
                merged = existing.permissions.setdefault(perm_kind, [])
                merged.extend(v for v in values if v not in merged)
        elif kind == "replace":
            if existing is None:
                vault.access_policies.append(policy)
            else:
                existing.permissions = {k: list(v) for k, v in policy.permissions.items()}
        elif existing is not None:  # remove
            for perm_kind, values in policy.permissions.items():
                existing.permissions[perm_kind] = [
                    v for v in existing.permissions.get(perm_kind, []) if v not in values
                ]
            if not any(existing.permissions.values()):
                vault.access_policies.remove(existing)


async def update_access_policy(call: ArmCall) -> web.Response:
    vault = _vault(call)
    kind = call.params["operationKind"].lower()
    if kind not in ("add", "replace", "remove"):
        raise ArmError(
            400,
            "BadRequest",
            f"The access policy operation '{kind}' is invalid. "
            "Valid values are add, replace, remove.",
        )
    policies = _parse_policies(call.json(batch_rp=False))
    apply_access_policies(vault, kind, policies)
    return arm_json(
        {
            "id": f"{vault.arm_id}/accessPolicies/{kind}",
            "name": kind,
            "type": "Microsoft.KeyVault/vaults/accessPolicies",
            "location": vault.location,
            "properties": {"accessPolicies": [_policy_json(p) for p in policies]},
        }
    )


def routes() -> list[ArmRoute]:
    return [
        route(
            "GET",
            RG,
            "Microsoft.Resources",
            "resourceGroups",
            "ResourceGroups_Get",
            get_resource_group,
        ),
        route(
            "GET",
            IDENTITY,
            "Microsoft.ManagedIdentity",
            "userAssignedIdentities",
            "UserAssignedIdentities_Get",
            get_identity,
        ),
        route("GET", VAULT, "Microsoft.KeyVault", "vaults", "Vaults_Get", get_vault),
        route(
            "PUT",
            ACCESS_POLICY,
            "Microsoft.KeyVault",
            "vaults/accessPolicies",
            "Vaults_UpdateAccessPolicy",
            update_access_policy,
        ),
    ]
