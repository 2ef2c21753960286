"""Seeding the simulated world: the building blocks the control API exposes, and ``demo``.

Role: create subscriptions/resource groups, Batch accounts, user-assigned identities, vaults
(their ARM record and their data plane together), access policies and certificates, with the
same checks the real services apply to names. The ``demo`` world is documented in README.md.

Invariants: seeding is idempotent (seeding an existing resource returns it unchanged), so a
restarted simulator can re-run ``demo`` over a restored state dir without duplicating anything.
"""

from __future__ import annotations

import uuid
from typing import Any

from batchsim.arm.poolspec import ACCOUNT_NAME
from batchsim.arm.resources import apply_access_policies
from batchsim.core import OPERATOR_OBJECT_ID, Simulation
from batchsim.keyvault.policy import KeyVaultError
from batchsim.world import AccessPolicy, BatchAccount, Identity, Vault

DEMO_SUBSCRIPTION = "00000000-0000-0000-0000-000000000001"
DEMO_RESOURCE_GROUP = "batchcert-demo"
DEMO_LOCATION = "westeurope"
DEMO_ACCOUNT = "demobatch"
DEMO_IDENTITY = "demo-pool-identity"
DEMO_IDENTITY_CLIENT_ID = "40000000-0000-0000-0000-000000000001"
DEMO_IDENTITY_PRINCIPAL_ID = "40000000-0000-0000-0000-0000000000a1"
DEMO_VAULT = "demokv"
DEMO_CERTIFICATE = "democert"
AUTO_RENEW_80 = {"trigger": {"lifetime_percentage": 80}, "action": {"action_type": "AutoRenew"}}


class SeedError(ValueError):
    """A seed request names something the real service would not accept."""


def add_resource_group(sim: Simulation, subscription_id: str, name: str, location: str) -> None:
    if not name or len(name) > 90:
        raise SeedError("resource group names are 1-90 characters")
    sim.world.add_resource_group(subscription_id, name, location)


def add_batch_account(
    sim: Simulation, subscription_id: str, resource_group: str, name: str, location: str
) -> BatchAccount:
    if not ACCOUNT_NAME.match(name):
        raise SeedError("Batch account names are 3-24 letters and digits")
    if not isinstance(location, str) or not location.replace(" ", "").isalnum():
        raise SeedError("location must be a region name such as westeurope")
    add_resource_group(sim, subscription_id, resource_group, location)
    return sim.world.add_account(BatchAccount(subscription_id, resource_group, name, location))


def add_identity(
    sim: Simulation,
    subscription_id: str,
    resource_group: str,
    name: str,
    location: str,
    *,
    client_id: str | None = None,
    principal_id: str | None = None,
) -> Identity:
    add_resource_group(sim, subscription_id, resource_group, location)
    return sim.world.add_identity(
        Identity(
            subscription_id,
            resource_group,
            name,
            location,
            client_id=client_id or str(uuid.uuid4()),
            principal_id=principal_id or str(uuid.uuid4()),
            tenant_id=sim.tenant_id,
        )
    )


def add_vault(
    sim: Simulation, subscription_id: str, resource_group: str, name: str, location: str
) -> Vault:
    add_resource_group(sim, subscription_id, resource_group, location)
    try:
        return sim.add_vault(subscription_id, resource_group, name, location)
    except ValueError as exc:
        raise SeedError(str(exc)) from exc


def grant(
    sim: Simulation,
    vault_name: str,
    object_id: str,
    permissions: dict[str, list[str]],
    *,
    operation: str = "add",
) -> Vault:
    vault = sim.world.vault(vault_name)
    if vault is None:
        raise SeedError(f"vault {vault_name!r} is not seeded")
    if operation not in ("add", "replace", "remove"):
        raise SeedError("operation must be add, replace or remove")
    if not isinstance(permissions, dict) or not all(
        kind in ("keys", "secrets", "certificates", "storage")
        and isinstance(values, list)
        and all(isinstance(v, str) for v in values)
        for kind, values in permissions.items()
    ):
        raise SeedError("permissions is {keys|secrets|certificates|storage: [permission, ...]}")
    apply_access_policies(
        vault,
        operation,
        [
            AccessPolicy(
                sim.tenant_id,
                object_id,
                {k: [p.lower() for p in v] for k, v in permissions.items()},
            )
        ],
    )
    return vault


def add_certificate(
    sim: Simulation,
    vault: str,
    name: str,
    *,
    subject: str | None = None,
    validity_months: int = 12,
    lifetime_action: dict[str, Any] | None = None,
    enabled: bool = True,
) -> str:
    if sim.world.vault(vault) is None:
        raise SeedError(f"vault {vault!r} is not seeded")
    return sim.kv.create_certificate(
        vault,
        name,
        subject=subject or f"CN={name}",
        validity_months=validity_months,
        lifetime_action=lifetime_action,
        enabled=enabled,
    )


def seed_demo(sim: Simulation) -> dict[str, Any]:
    """The demo world; returns its ids (also documented in sim/README.md)."""
    add_batch_account(sim, DEMO_SUBSCRIPTION, DEMO_RESOURCE_GROUP, DEMO_ACCOUNT, DEMO_LOCATION)
    identity = add_identity(
        sim,
        DEMO_SUBSCRIPTION,
        DEMO_RESOURCE_GROUP,
        DEMO_IDENTITY,
        DEMO_LOCATION,
        client_id=DEMO_IDENTITY_CLIENT_ID,
        principal_id=DEMO_IDENTITY_PRINCIPAL_ID,
    )
    add_vault(sim, DEMO_SUBSCRIPTION, DEMO_RESOURCE_GROUP, DEMO_VAULT, DEMO_LOCATION)
    grant(sim, DEMO_VAULT, identity.principal_id, {"secrets": ["get", "list"]})
    grant(sim, DEMO_VAULT, OPERATOR_OBJECT_ID, {"certificates": ["get", "list"]})
    try:
        sim.kv.certificate_info(DEMO_VAULT, DEMO_CERTIFICATE)
    except KeyVaultError:  # not there yet
        add_certificate(
            sim,
            DEMO_VAULT,
            DEMO_CERTIFICATE,
            subject="CN=democert.batchcert.dev",
            validity_months=12,
            lifetime_action=AUTO_RENEW_80,
        )
    return demo_ids(sim)


def demo_ids(sim: Simulation) -> dict[str, Any]:
    identity = (
        f"/subscriptions/{DEMO_SUBSCRIPTION}/resourceGroups/{DEMO_RESOURCE_GROUP}"
        f"/providers/Microsoft.ManagedIdentity/userAssignedIdentities/{DEMO_IDENTITY}"
    )
    return {
        "subscriptionId": DEMO_SUBSCRIPTION,
        "resourceGroup": DEMO_RESOURCE_GROUP,
        "batchAccount": DEMO_ACCOUNT,
        "location": DEMO_LOCATION,
        "accountEndpoint": f"{DEMO_ACCOUNT}.{DEMO_LOCATION}.batch.sim.test:{sim.port}",
        "identity": {
            "resourceId": identity,
            "clientId": DEMO_IDENTITY_CLIENT_ID,
            "principalId": DEMO_IDENTITY_PRINCIPAL_ID,
        },
        "vault": DEMO_VAULT,
        "vaultUrl": sim.vault_uri(DEMO_VAULT).rstrip("/"),
        "certificate": DEMO_CERTIFICATE,
        "secretId": f"{sim.vault_uri(DEMO_VAULT)}secrets/{DEMO_CERTIFICATE}",
    }
