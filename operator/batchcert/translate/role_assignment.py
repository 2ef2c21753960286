"""The role assignment that lets a pool's identity read an RBAC vault's secrets (pure).

On a vault with ``enableRbacAuthorization`` access policies are ignored; the Key Vault VM
extension's ``secrets get`` comes from a role assignment at (or above) the vault's scope. The
operator makes "Key Vault Secrets User" (secrets get and list, nothing else) for the identity's
principal, at the vault's scope.

Invariants: the assignment's name is a uuid5 of (vault id, principal id, role), case-folded, so
every attempt, replica and restart PUTs the same name and a re-apply never makes a second one;
an assignment is "propagated" a fixed time after its ``createdOn`` (Azure's RBAC docs: up to ten
minutes; reads keep getting 403 meanwhile), judged from ARM's own timestamp so it survives
restarts.
"""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta
from typing import Any

from batchcert.models.timestamps import parse_rfc3339

KEY_VAULT_SECRETS_USER = "4633458b-17de-408a-b874-0445c86b69e6"
# Built-in roles that include secrets get: Key Vault Secrets User, Key Vault Secrets Officer,
# Key Vault Administrator (Azure built-in roles reference).
SECRETS_READER_ROLES = frozenset(
    {
        KEY_VAULT_SECRETS_USER,
        "b86a8fe4-44ce-4948-aee5-eccb2c155cd7",
        "00482a5a-887f-4fb3-b363-3b7fe8e74483",
    }
)
_NAMESPACE = uuid.UUID("0b7b6a3e-3f1c-5d2e-9c39-6b6174636863")  # fixed: names never change


def is_rbac_vault(vault: dict[str, Any]) -> bool:
    return (vault.get("properties") or {}).get("enableRbacAuthorization") is True


def build_role_assignment_name(scope: str, principal_id: str, role: str) -> str:
    key = f"{scope.rstrip('/').lower()}|{principal_id.lower()}|{role.lower()}"
    return str(uuid.uuid5(_NAMESPACE, key))


def build_secrets_user_assignment(scope: str, principal_id: str) -> dict[str, Any]:
    subscription = scope.strip("/").split("/")[1]
    return {
        "properties": {
            "roleDefinitionId": f"/subscriptions/{subscription}/providers/"
            f"Microsoft.Authorization/roleDefinitions/{KEY_VAULT_SECRETS_USER}",
            "principalId": principal_id,
            # Without it ARM looks the principal up in Entra, which fails for a minute or so
            # after an identity is created (PrincipalNotFound).
            "principalType": "ServicePrincipal",
        }
    }


def role_of(assignment: dict[str, Any]) -> str:
    props = assignment.get("properties") or {}
    return str(props.get("roleDefinitionId") or "").rstrip("/").rsplit("/", 1)[-1].lower()


def find_secrets_reader(
    assignments: list[dict[str, Any]], principal_id: str
) -> dict[str, Any] | None:
    """The principal's assignment of a secrets-reading role, the oldest first."""
    readers = [
        a
        for a in assignments
        if role_of(a) in SECRETS_READER_ROLES
        and str((a.get("properties") or {}).get("principalId", "")).lower() == principal_id.lower()
    ]
    readers.sort(key=lambda a: str((a.get("properties") or {}).get("createdOn") or ""))
    return readers[0] if readers else None


def propagated_at(assignment: dict[str, Any], propagation: timedelta) -> datetime | None:
    """When the assignment reaches the data planes; None when ARM gave no ``createdOn`` (then
    it is judged propagated: only the nodes can tell)."""
    created = parse_rfc3339((assignment.get("properties") or {}).get("createdOn"))
    return None if created is None else created + propagation
