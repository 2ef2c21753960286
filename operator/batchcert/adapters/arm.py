"""ARM: Batch pools and accounts, and user-assigned identities.

Invariants: pool creation sends ``If-None-Match: *`` so it can never replace a pool that already
exists (ours from a crashed attempt, or someone else's); deletion only *begins* the long-running
operation and returns; a missing pool or identity is a value (None), not an exception.
"""

from __future__ import annotations

from typing import Any

from azure.core import MatchConditions
from azure.core.rest import HttpRequest

from batchcert.adapters.azure_clients import AzureClients
from batchcert.adapters.errors import translating
from batchcert.errors import AzureCallError
from batchcert.models.azure import IdentityInfo, PoolState
from batchcert.models.spec import AccountRef
from batchcert.translate.role_assignment import find_secrets_reader

_MSI_API_VERSION = "2023-01-31"
_KEYVAULT_API_VERSION = "2023-07-01"
_AUTHORIZATION_API_VERSION = "2022-04-01"


def _subscription_of(resource_id: str) -> str:
    parts = resource_id.strip("/").split("/")
    if len(parts) < 2 or parts[0].lower() != "subscriptions":
        raise ValueError(f"{resource_id!r} is not an ARM resource id")
    return parts[1]


def _pool_state(pool: Any) -> PoolState:
    body: dict[str, Any] = pool.as_dict() if hasattr(pool, "as_dict") else dict(pool)
    return PoolState(resource_id=str(body.get("id") or ""), body=body, etag=body.get("etag"))


class ArmAdapter:
    def __init__(self, clients: AzureClients) -> None:
        self._clients = clients

    async def get_identity(self, resource_id: str) -> IdentityInfo | None:
        client = self._clients.arm(_subscription_of(resource_id))
        url = f"{self._clients.config.cloud.resource_manager}{resource_id}"
        request = HttpRequest("GET", url, params={"api-version": _MSI_API_VERSION})
        async with translating("arm", "identities.get"):
            response = await client.send_request(request)
            if response.status_code == 404:
                return None
            response.raise_for_status()
            body = response.json()
        props = body.get("properties") or {}
        client_id = props.get("clientId")
        if not client_id:
            raise AzureCallError(
                service="arm",
                operation="identities.get",
                status=response.status_code,
                code="InvalidResponse",
                message=f"identity {resource_id} has no clientId",
            )
        return IdentityInfo(
            resource_id, str(client_id), props.get("principalId"), props.get("tenantId")
        )

    async def get_vault(self, resource_id: str) -> dict[str, Any] | None:
        """A Key Vault's ARM resource (with its access policies), or None if it does not exist."""
        return await self._send("vaults.get", "GET", resource_id, None)

    async def has_secrets_role(self, vault_resource_id: str, principal_id: str) -> bool:
        """Whether an RBAC role assignment at (or above) the vault lets the principal read secrets.

        Reads ``Microsoft.Authorization/roleAssignments`` (needs ``.../roleAssignments/read``);
        raises AzureCallError when it may not, so the caller can say "could not verify".
        """
        assignments = await self.list_role_assignments(vault_resource_id, principal_id)
        return find_secrets_reader(assignments, principal_id) is not None

    async def list_role_assignments(self, scope: str, principal_id: str) -> list[dict[str, Any]]:
        """The principal's role assignments at ``scope`` and its parents."""
        client = self._clients.arm(_subscription_of(scope))
        url = (
            f"{self._clients.config.cloud.resource_manager}{scope}"
            "/providers/Microsoft.Authorization/roleAssignments"
        )
        request = HttpRequest(
            "GET",
            url,
            params={
                "api-version": _AUTHORIZATION_API_VERSION,
                "$filter": f"assignedTo('{principal_id}')",
            },
        )
        async with translating("arm", "roleAssignments.list"):
            response = await client.send_request(request)
            response.raise_for_status()
            body = response.json()
        return [dict(item) for item in (body or {}).get("value") or [] if isinstance(item, dict)]

    async def create_role_assignment(
        self, scope: str, name: str, body: dict[str, Any]
    ) -> dict[str, Any]:
        """PUT the assignment (409 ``RoleAssignmentExists``: the same grant under another name)."""
        client = self._clients.arm(_subscription_of(scope))
        url = (
            f"{self._clients.config.cloud.resource_manager}{scope}"
            f"/providers/Microsoft.Authorization/roleAssignments/{name}"
        )
        request = HttpRequest(
            "PUT", url, params={"api-version": _AUTHORIZATION_API_VERSION}, json=body
        )
        async with translating("arm", "roleAssignments.create"):
            response = await client.send_request(request)
            response.raise_for_status()
            return dict(response.json())

    async def add_access_policy(self, resource_id: str, body: dict[str, Any]) -> None:
        """``accessPolicies/add``: ARM merges the permissions into the entry for the object id."""
        await self._send(
            "vaults.accessPolicies.add", "PUT", f"{resource_id}/accessPolicies/add", body
        )

    async def _send(
        self, operation: str, method: str, resource_path: str, body: dict[str, Any] | None
    ) -> dict[str, Any] | None:
        client = self._clients.arm(_subscription_of(resource_path))
        url = f"{self._clients.config.cloud.resource_manager}{resource_path}"
        request = HttpRequest(method, url, params={"api-version": _KEYVAULT_API_VERSION}, json=body)
        async with translating("arm", operation):
            response = await client.send_request(request)
            if response.status_code == 404 and method == "GET":
                return None
            response.raise_for_status()
            return dict(response.json()) if response.content else {}

    async def get_account_endpoint(self, account: AccountRef) -> str:
        client = self._clients.arm(account.subscription_id)
        async with translating("arm", "batchAccounts.get"):
            result = await client.batch_account.get(account.resource_group, account.name)
        endpoint = result.as_dict().get("properties", {}).get("accountEndpoint")
        if not endpoint:
            raise AzureCallError(
                service="arm",
                operation="batchAccounts.get",
                status=200,
                code="InvalidResponse",
                message=f"batch account {account.name} has no accountEndpoint",
            )
        return str(endpoint)

    async def get_pool(self, account: AccountRef, pool_name: str) -> PoolState | None:
        client = self._clients.arm(account.subscription_id)
        try:
            async with translating("arm", "pools.get"):
                pool = await client.pool.get(account.resource_group, account.name, pool_name)
        except AzureCallError as exc:
            if exc.is_not_found:
                return None
            raise
        return _pool_state(pool)

    async def create_pool(
        self, account: AccountRef, pool_name: str, body: dict[str, Any]
    ) -> PoolState:
        """Create only if absent (412 → AzureCallError.is_precondition_failed)."""
        client = self._clients.arm(account.subscription_id)
        async with translating("arm", "pools.create"):
            pool = await client.pool.create(
                account.resource_group,
                account.name,
                pool_name,
                body,
                etag="*",
                match_condition=MatchConditions.IfMissing,
            )
        return _pool_state(pool)

    async def update_pool(
        self, account: AccountRef, pool_name: str, patch: dict[str, Any], *, etag: str | None
    ) -> PoolState:
        """PATCH what changed, guarded by the ETag we read (412 if the pool moved meanwhile)."""
        client = self._clients.arm(account.subscription_id)
        kwargs: dict[str, Any] = {}
        if etag:
            kwargs = {"etag": etag, "match_condition": MatchConditions.IfNotModified}
        async with translating("arm", "pools.update"):
            pool = await client.pool.update(
                account.resource_group, account.name, pool_name, patch, **kwargs
            )
        return _pool_state(pool)

    async def begin_delete_pool(self, account: AccountRef, pool_name: str) -> None:
        """Start deleting; the caller polls by reading the pool later (never blocks on the LRO)."""
        client = self._clients.arm(account.subscription_id)
        async with translating("arm", "pools.delete"):
            poller = await client.pool.begin_delete(
                account.resource_group, account.name, pool_name, polling=False
            )
        del poller  # the initial DELETE was sent; completion is observed by later GETs
