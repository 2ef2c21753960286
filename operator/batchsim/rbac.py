"""Azure RBAC for the management plane and the Batch data plane: who may do what, where.

Role: answer "may principal P perform action A at scope S now?" from the world's role
assignments, for ARM (every request, before its handler), for ARM's linked-scope check (a pool
that names a user-assigned identity needs ``.../userAssignedIdentities/assign/action`` on it),
and for the Batch data plane. Key Vault's data plane has its own check (access policies, or role
assignments on RBAC vaults: ``World.vault_allows``).

The operator's and the workload principal of the simulator are seeded as Owner at the root
scope ``/`` (an install's operator identity usually holds Contributor or more); every other
principal, a team's managed identity say, can do only what its role assignments allow, once they
have propagated. That is never kinder than Azure: without an assignment, 403.

Evidence: ARM's 403 ``AuthorizationFailed`` ("The client '…' with object id '…' does not have
authorization to perform action '…' over scope '…' or the scope is invalid. If access was
recently granted, please refresh your credentials.") and ``LinkedAuthorizationFailed`` ("… has
permission to perform action '…' on scope '…'; however, it does not have permission to perform
action(s) 'Microsoft.ManagedIdentity/userAssignedIdentities/assign/action' on the linked
scope(s) '…'") are the public wording. The built-in roles' actions below are simplified from the
Azure built-in roles reference (Owner, Contributor, Reader, User Access Administrator, Role
Based Access Control Administrator, Managed Identity Operator/Contributor, Key Vault
Contributor). Unconfirmed: the Batch data plane's exact 403 body for a principal without rights
and the data actions of the Batch-specific built-in roles; only Owner and Contributor are given
Batch data actions here (less than Azure may allow, never more).
"""

from __future__ import annotations

import uuid
from collections.abc import Callable

from batchsim.world import RoleAssignment, World

OWNER = "8e3af657-a8ff-443c-a75c-2fe8c4bcb635"
CONTRIBUTOR = "b24988ac-6180-42a0-ab88-20f7382dd24c"
READER = "acdd72a7-3d66-4a7a-8b6b-cfdf0b8e61a9"
USER_ACCESS_ADMINISTRATOR = "18d7d88d-d35e-4fb5-a5c3-7773c4a72d9d"
RBAC_ADMINISTRATOR = "f58310d9-a9f6-439a-9e8d-f62e7b41a168"
MANAGED_IDENTITY_OPERATOR = "f1a07417-d97a-45cb-824c-7a7467783830"
MANAGED_IDENTITY_CONTRIBUTOR = "e40ec5ca-96e0-45a2-b4ff-59039f2c2b59"
KEY_VAULT_CONTRIBUTOR = "f25e0fa2-a7c8-4377-a976-54943a77a395"
ROOT_SCOPE = "/"
ASSIGN_IDENTITY = "Microsoft.ManagedIdentity/userAssignedIdentities/assign/action"


def _is_authorization_write(action: str) -> bool:
    lowered = action.lower()
    return lowered.startswith("microsoft.authorization/") and not lowered.endswith("/read")


# role → predicate over an ARM action ("Provider/type/.../verb", verbs read|write|delete|action)
_ROLE_ACTIONS: dict[str, Callable[[str], bool]] = {
    OWNER: lambda a: True,
    CONTRIBUTOR: lambda a: not _is_authorization_write(a),
    READER: lambda a: a.lower().endswith("/read"),
    USER_ACCESS_ADMINISTRATOR: lambda a: (
        a.lower().endswith("/read") or a.lower().startswith("microsoft.authorization/")
    ),
    RBAC_ADMINISTRATOR: lambda a: (
        a.lower().endswith("/read") or a.lower().startswith("microsoft.authorization/roleassign")
    ),
    MANAGED_IDENTITY_OPERATOR: lambda a: (
        a.lower().startswith("microsoft.managedidentity/userassignedidentities/")
        and (a.lower().endswith("/read") or a.lower().endswith("/assign/action"))
    ),
    MANAGED_IDENTITY_CONTRIBUTOR: lambda a: (
        a.lower().startswith("microsoft.managedidentity/userassignedidentities")
        and not a.lower().endswith("/assign/action")
    ),
    KEY_VAULT_CONTRIBUTOR: lambda a: a.lower().startswith("microsoft.keyvault/"),
}
_BATCH_DATA_ROLES = frozenset({OWNER, CONTRIBUTOR})


def arm_action(provider: str, resource_type: str, method: str) -> str:
    verb = {"GET": "read", "PUT": "write", "PATCH": "write", "DELETE": "delete"}.get(
        method.upper(), "action"
    )
    return f"{provider}/{resource_type}/{verb}"


def _effective(world: World, principal_id: str, scope: str, now: float) -> list[RoleAssignment]:
    oid = principal_id.lower()
    return [
        a
        for a in world.role_assignments.values()
        if a.principal_id.lower() == oid and now >= a.effective_at and a.covers(scope)
    ]


def arm_allows(world: World, principal_id: str, action: str, scope: str, now: float) -> bool:
    return any(
        _ROLE_ACTIONS.get(a.role_guid, lambda _: False)(action)
        for a in _effective(world, principal_id, scope, now)
    )


def batch_data_allows(world: World, principal_id: str, account_id: str, now: float) -> bool:
    return any(
        a.role_guid in _BATCH_DATA_ROLES for a in _effective(world, principal_id, account_id, now)
    )


def seed_owner(world: World, principal_id: str, now: float) -> None:
    """Owner at the root scope, effective at once (the simulator's own principals)."""
    name = str(uuid.uuid5(uuid.NAMESPACE_URL, f"batchsim/owner/{principal_id.lower()}"))
    world.role_assignments.setdefault(
        name,
        RoleAssignment(
            name=name,
            scope=ROOT_SCOPE,
            role_definition_id=f"/providers/Microsoft.Authorization/roleDefinitions/{OWNER}",
            principal_id=principal_id,
            principal_type="ServicePrincipal",
            created_at=now,
            effective_at=now,
        ),
    )


def authorization_failed_message(app_id: str, object_id: str, action: str, scope: str) -> str:
    return (
        f"The client '{app_id}' with object id '{object_id}' does not have authorization to "
        f"perform action '{action}' over scope '{scope}' or the scope is invalid. If access was "
        "recently granted, please refresh your credentials."
    )


def linked_authorization_failed_message(
    app_id: str, object_id: str, action: str, scope: str, linked: list[str]
) -> str:
    return (
        f"The client '{app_id}' with object id '{object_id}' has permission to perform action "
        f"'{action}' on scope '{scope}'; however, it does not have permission to perform "
        f"action(s) '{ASSIGN_IDENTITY}' on the linked scope(s) '{','.join(linked)}' "
        "(respectively) or the linked scope(s) are invalid."
    )
