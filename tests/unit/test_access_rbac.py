"""Vault access on RBAC-mode vaults: the role assignment, its name, and its propagation.

Covers: the assignment's name is deterministic (same vault, principal and role → same GUID,
whatever the case) and its body names Key Vault Secrets User for the principal; on an RBAC vault
the granter makes the assignment once, says it propagates until ``createdOn`` + the propagation
time and is complete afterwards without a second write; a 409 RoleAssignmentExists (the grant
made meanwhile under another name) counts as granted; an existing secrets-reading role (Secrets
Officer, say) needs no write; an access-policy vault still gets an access policy.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from typing import Any

from batchcert.errors import AzureCallError
from batchcert.models.azure import IdentityInfo
from batchcert.models.spec import parse_spec
from batchcert.reconcile.access import AccessGranter
from batchcert.reconcile.lookups import SharedFacts
from batchcert.translate.role_assignment import (
    KEY_VAULT_SECRETS_USER,
    build_role_assignment_name,
    build_secrets_user_assignment,
)
from support.builders import base_spec

VAULT = "/subscriptions/s1/resourceGroups/rg/providers/Microsoft.KeyVault/vaults/kv"
T0 = datetime(2026, 12, 5, 9, 0, tzinfo=UTC)


class FakeArm:
    def __init__(self, *, rbac: bool = True) -> None:
        self.rbac = rbac
        self.assignments: list[dict[str, Any]] = []
        self.puts: list[str] = []
        self.policies: list[dict[str, Any]] = []
        self.conflict_once = False

    async def get_identity(self, resource_id: str) -> IdentityInfo:
        return IdentityInfo(resource_id, "client", "principal", "tenant")

    async def get_vault(self, resource_id: str) -> dict[str, Any]:
        return {"properties": {"enableRbacAuthorization": self.rbac, "accessPolicies": []}}

    async def list_role_assignments(self, scope: str, principal_id: str) -> list[dict[str, Any]]:
        return list(self.assignments)

    async def create_role_assignment(
        self, scope: str, name: str, body: dict[str, Any]
    ) -> dict[str, Any]:
        self.puts.append(name)
        made = {
            "name": name,
            "properties": dict(body["properties"], scope=scope, createdOn=T0.isoformat()),
        }
        self.assignments.append(made)
        if self.conflict_once:
            self.conflict_once = False
            raise AzureCallError(
                service="arm",
                operation="roleAssignments.create",
                status=409,
                code="RoleAssignmentExists",
                message="The role assignment already exists.",
            )
        return made

    async def add_access_policy(self, resource_id: str, body: dict[str, Any]) -> None:
        self.policies.append(body)


def _spec() -> Any:
    spec = base_spec()
    spec["identity"] = dict(spec["identity"], grantSecretsAccess={"vaults": [VAULT]})
    return parse_spec(spec)


def _granter(arm: FakeArm, now: list[datetime]) -> AccessGranter:
    return AccessGranter(
        arm,  # type: ignore[arg-type]
        SharedFacts(arm),  # type: ignore[arg-type]
        propagation=timedelta(minutes=10),
        now=lambda: now[0],
    )


def test_the_assignment_name_is_deterministic_and_the_body_names_secrets_user() -> None:
    name = build_role_assignment_name(VAULT, "principal", KEY_VAULT_SECRETS_USER)
    assert name == build_role_assignment_name(VAULT.upper(), "PRINCIPAL", KEY_VAULT_SECRETS_USER)
    assert name != build_role_assignment_name(VAULT, "other", KEY_VAULT_SECRETS_USER)
    assert build_secrets_user_assignment(VAULT, "principal") == {
        "properties": {
            "roleDefinitionId": "/subscriptions/s1/providers/Microsoft.Authorization/"
            f"roleDefinitions/{KEY_VAULT_SECRETS_USER}",
            "principalId": "principal",
            "principalType": "ServicePrincipal",
        }
    }


def test_an_rbac_vault_gets_one_assignment_and_waits_out_its_propagation() -> None:
    arm, now = FakeArm(), [T0 + timedelta(seconds=5)]
    granter = _granter(arm, now)
    first = asyncio.run(granter.ensure(_spec()))
    assert arm.puts == [build_role_assignment_name(VAULT, "principal", KEY_VAULT_SECRETS_USER)]
    assert not first.complete
    assert first.propagating_until == T0 + timedelta(minutes=10)
    assert [e.reason for e in first.events] == ["VaultAccessGranted"]
    now[0] = T0 + timedelta(minutes=5)
    waiting = asyncio.run(granter.ensure(_spec()))
    assert waiting.propagating_until is not None and not waiting.events
    now[0] = T0 + timedelta(minutes=10, seconds=1)
    done = asyncio.run(granter.ensure(_spec()))
    assert done.complete and done.propagating_until is None
    assert len(arm.puts) == 1 and arm.policies == []


def test_a_conflict_means_the_grant_exists() -> None:
    arm, now = FakeArm(), [T0 + timedelta(minutes=11)]
    arm.conflict_once = True
    outcome = asyncio.run(_granter(arm, now).ensure(_spec()))
    assert outcome.complete and not outcome.events


def test_an_existing_secrets_reading_role_needs_no_write() -> None:
    arm, now = FakeArm(), [T0 + timedelta(minutes=11)]
    arm.assignments.append(
        {
            "properties": {
                "roleDefinitionId": "/providers/Microsoft.Authorization/roleDefinitions/"
                "b86a8fe4-44ce-4948-aee5-eccb2c155cd7",
                "principalId": "principal",
                "createdOn": T0.isoformat(),
            }
        }
    )
    outcome = asyncio.run(_granter(arm, now).ensure(_spec()))
    assert outcome.complete and arm.puts == []


def test_an_access_policy_vault_still_gets_an_access_policy() -> None:
    arm, now = FakeArm(rbac=False), [T0]
    outcome = asyncio.run(_granter(arm, now).ensure(_spec()))
    assert outcome.complete and len(arm.policies) == 1 and arm.puts == []


async def test_the_engine_holds_the_pool_while_the_assignment_propagates() -> None:
    """The engine's wiring: PoolReady RoleAssignmentPropagating (not Stalled), no pool created,
    then the pool once the propagation time has passed, and no second assignment."""
    from unit.test_engine import World

    world = World()
    rbac = FakeArm()
    world.arm.get_vault = rbac.get_vault  # type: ignore[method-assign]
    world.arm.list_role_assignments = rbac.list_role_assignments  # type: ignore[attr-defined]
    world.arm.create_role_assignment = rbac.create_role_assignment  # type: ignore[attr-defined]

    async def has_secrets_role(vault: str, principal: str) -> bool:  # the diagnosis's question
        return bool(rbac.assignments)

    world.arm.has_secrets_role = has_secrets_role  # type: ignore[attr-defined]
    world.now = T0  # the fake stamps createdOn at T0
    world.spec["identity"] = dict(world.spec["identity"], grantSecretsAccess={"vaults": [VAULT]})

    async def identity(resource_id: str) -> IdentityInfo:
        return IdentityInfo(resource_id, "looked-up-client-id", "principal", "tenant")

    world.arm.get_identity = identity  # type: ignore[method-assign]
    await world.tick()  # first visit
    await world.tick()
    assert world.condition("PoolReady")["reason"] == "RoleAssignmentPropagating"
    assert world.condition("Stalled")["status"] == "False"
    assert "pools.create" not in world.arm.calls
    assert len(rbac.puts) == 1
    world.advance(601)
    await world.tick()
    assert "pools.create" in world.arm.calls
    assert len(rbac.puts) == 1
