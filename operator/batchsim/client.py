"""``SimControl``: a small blocking client for the simulator's control API.

Role: what tests, the demo and other processes use to drive the simulator, given only the
``sim.json`` it writes. It trusts the simulator's CA (and nothing else) and installs the
``*.sim.test`` → 127.0.0.1 host alias for this process, as a pod's ``hostAliases`` would.

Invariants: standard library only (urllib + ssl), so it works in any process without the
simulator's extras; every non-2xx answer raises ``SimControlError`` with the simulator's message.
"""

from __future__ import annotations

import json
import ssl
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any

from batchsim.hostaliases import install_host_aliases


class SimControlError(RuntimeError):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(f"simulator control API answered {status}: {message}")
        self.status = status
        self.message = message


class SimControl:
    def __init__(self, sim_json: str | Path, *, timeout: float = 30.0) -> None:
        self.info: dict[str, Any] = json.loads(Path(sim_json).read_text())
        self.base = self.info["control"].rstrip("/")
        self.timeout = timeout
        self._ssl = ssl.create_default_context(cafile=self.info["caBundle"])
        install_host_aliases(self.info["hostAliases"])

    # --- transport ------------------------------------------------------------------------

    def request(
        self, method: str, path: str, body: Any = None, query: dict[str, Any] | None = None
    ) -> Any:
        url = self.base + path
        if query:
            url += "?" + urllib.parse.urlencode({k: v for k, v in query.items() if v is not None})
        data = json.dumps(body).encode() if body is not None else None
        req = urllib.request.Request(
            url, data=data, method=method, headers={"Content-Type": "application/json"}
        )
        try:
            with urllib.request.urlopen(req, context=self._ssl, timeout=self.timeout) as resp:
                raw = resp.read()
        except urllib.error.HTTPError as err:
            text = err.read().decode("utf-8", "replace")
            try:
                message = json.loads(text).get("error", text)
            except ValueError:
                message = text
            raise SimControlError(err.code, str(message)) from None
        return json.loads(raw) if raw else None

    # --- seeding --------------------------------------------------------------------------

    def reset(self, seed: str = "none") -> dict[str, Any]:
        self.info = self.request("POST", "/reset", {"seed": seed})
        return self.info

    def add_batch_account(
        self,
        subscription_id: str,
        resource_group: str,
        name: str,
        location: str = "westeurope",
        *,
        active_job_quota: int | None = None,
    ) -> dict[str, Any]:
        """Add (or, for an existing account, update) a Batch account."""
        body: dict[str, Any] = {
            "subscriptionId": subscription_id,
            "resourceGroup": resource_group,
            "name": name,
            "location": location,
        }
        if active_job_quota is not None:
            body["activeJobAndJobScheduleQuota"] = active_job_quota
        return self.request("PUT", "/batchAccounts", body)

    def add_identity(
        self,
        subscription_id: str,
        resource_group: str,
        name: str,
        location: str = "westeurope",
        *,
        client_id: str | None = None,
        principal_id: str | None = None,
    ) -> dict[str, Any]:
        return self.request(
            "PUT",
            "/identities",
            {
                "subscriptionId": subscription_id,
                "resourceGroup": resource_group,
                "name": name,
                "location": location,
                "clientId": client_id,
                "principalId": principal_id,
            },
        )

    def add_vault(
        self,
        subscription_id: str,
        resource_group: str,
        name: str,
        location: str = "westeurope",
        *,
        rbac: bool = False,
    ) -> dict[str, Any]:
        """``rbac``: the vault uses Azure RBAC (role assignments), not access policies."""
        return self.request(
            "PUT",
            "/vaults",
            {
                "subscriptionId": subscription_id,
                "resourceGroup": resource_group,
                "name": name,
                "location": location,
                "enableRbacAuthorization": rbac,
            },
        )

    def grant(
        self, vault: str, object_id: str, permissions: dict[str, list[str]], operation: str = "add"
    ) -> dict[str, Any]:
        return self.request(
            "POST",
            f"/vaults/{vault}/accessPolicies",
            {"objectId": object_id, "permissions": permissions, "operation": operation},
        )

    def add_certificate(
        self,
        vault: str,
        name: str,
        *,
        subject: str | None = None,
        validity_months: int = 12,
        auto_renew_percentage: int | None = 80,
        lifetime_action: dict[str, Any] | None = None,
        enabled: bool = True,
    ) -> dict[str, Any]:
        body: dict[str, Any] = {
            "subject": subject,
            "validityMonths": validity_months,
            "enabled": enabled,
        }
        if lifetime_action is not None:
            body["lifetimeAction"] = lifetime_action
        elif auto_renew_percentage is not None:
            body["autoRenewAtPercentage"] = auto_renew_percentage
        else:
            body["lifetimeAction"] = None
        return self.request("PUT", f"/vaults/{vault}/certificates/{name}", body)

    def certificate(self, vault: str, name: str) -> dict[str, Any]:
        return self.request("GET", f"/vaults/{vault}/certificates/{name}")

    def renew_certificate(self, vault: str, name: str) -> str:
        return str(self.request("POST", f"/vaults/{vault}/certificates/{name}/renew")["version"])

    def set_certificate_enabled(self, vault: str, name: str, enabled: bool) -> dict[str, Any]:
        return self.request("PATCH", f"/vaults/{vault}/certificates/{name}", {"enabled": enabled})

    def delete_certificate(self, vault: str, name: str) -> None:
        self.request("DELETE", f"/vaults/{vault}/certificates/{name}")

    def add_principal(
        self,
        name: str,
        *,
        client_id: str | None = None,
        client_secret: str | None = None,
        federated: list[dict[str, Any]] | None = None,
    ) -> dict[str, Any]:
        return self.request(
            "POST",
            "/principals",
            {
                "name": name,
                "clientId": client_id,
                "clientSecret": client_secret,
                "federated": federated or [],
            },
        )

    # --- time and behaviour ---------------------------------------------------------------

    def clock(self) -> dict[str, Any]:
        return self.request("GET", "/clock")

    def advance(self, seconds: float) -> dict[str, Any]:
        return self.request("POST", "/clock/advance", {"seconds": seconds})

    def set_clock_scale(self, scale: float) -> dict[str, Any]:
        return self.request("PUT", "/clock", {"scale": scale})

    def set_node_behaviour(self, **settings: Any) -> dict[str, Any]:
        """camelCase keys: arrivalDelaySeconds, bootSeconds, capacity, ... (see README)."""
        return self.request("PUT", "/nodeBehaviour", settings)

    def set_settings(self, **settings: Any) -> dict[str, Any]:
        return self.request("PUT", "/settings", settings)

    # --- pools ----------------------------------------------------------------------------

    @staticmethod
    def pool_path(subscription_id: str, resource_group: str, account: str, pool: str) -> str:
        return (
            f"/subscriptions/{subscription_id}/resourceGroups/{resource_group}"
            f"/batchAccounts/{account}/pools/{pool}"
        )

    def pools(self) -> list[dict[str, Any]]:
        return list(self.request("GET", "/pools")["pools"])

    def pool(self, *ids: str) -> dict[str, Any]:
        return self.request("GET", self.pool_path(*ids))

    def drift_pool(self, *ids: str, patch: dict[str, Any]) -> dict[str, Any]:
        return self.request("PATCH", self.pool_path(*ids), patch)

    def delete_pool_out_of_band(self, *ids: str) -> None:
        self.request("DELETE", self.pool_path(*ids))

    def set_node_state(self, *ids: str, node_id: str, state: str | None) -> dict[str, Any]:
        return self.request(
            "PUT", f"{self.pool_path(*ids)}/nodes/{node_id}/state", {"state": state}
        )

    def set_node(self, *ids: str, node_id: str, **fields: Any) -> dict[str, Any]:
        """camelCase fields: fetchBlocked, busySlots, taskHang, taskOutput (see README)."""
        return self.request("PATCH", f"{self.pool_path(*ids)}/nodes/{node_id}", fields)

    def set_pool_node_behaviour(self, *ids: str, **settings: Any) -> dict[str, Any]:
        return self.request("PUT", f"{self.pool_path(*ids)}/nodeBehaviour", settings)

    # --- observation ----------------------------------------------------------------------

    def requests(self, **filters: Any) -> list[dict[str, Any]]:
        """Filters: service, operation, method, pathRegex, status, principal, secretRead,
        userAgentRegex, sinceSeq, limit."""
        query = {k: (str(v).lower() if isinstance(v, bool) else v) for k, v in filters.items()}
        return list(self.request("GET", "/requests", query=query)["requests"])

    def clear_requests(self) -> None:
        self.request("DELETE", "/requests")

    def counters(self) -> dict[str, Any]:
        return self.request("GET", "/counters")

    # --- faults and throttling ------------------------------------------------------------

    def add_fault(self, **spec: Any) -> dict[str, Any]:
        """``add_fault(match={"service": "arm", "method": "GET", "pathRegex": "/pools/"},
        status=503, count=1)``; see README for every field."""
        return self.request("POST", "/faults", spec)

    def clear_faults(self) -> None:
        self.request("DELETE", "/faults")

    def set_throttle(self, **config: Any) -> dict[str, Any]:
        return self.request("PUT", "/throttle", config)


# --- real SDK clients pointed at the simulator (for tests, benchmarks and the demo) ----------


def operator_credential(info: dict[str, Any], principal: str = "operator") -> Any:
    """A sync ``ClientSecretCredential`` for a seeded principal, against the simulator's Entra."""
    from azure.identity import ClientSecretCredential

    creds = info["principals"][principal]
    return ClientSecretCredential(
        info["tenantId"],
        creds["clientId"],
        creds["clientSecret"],
        authority=info["authorityHost"],
        disable_instance_discovery=True,
        connection_verify=info["caBundle"],
    )


def management_client(
    info: dict[str, Any], credential: Any = None, subscription_id: str | None = None, **kwargs: Any
) -> Any:
    """A sync ``BatchManagementClient`` for the simulator (demo subscription by default)."""
    from azure.mgmt.batch import BatchManagementClient

    return BatchManagementClient(
        credential or operator_credential(info),
        subscription_id or info["demo"]["subscriptionId"],
        base_url=info["resourceManager"],
        credential_scopes=["https://management.azure.com/.default"],
        connection_verify=info["caBundle"],
        **kwargs,
    )
