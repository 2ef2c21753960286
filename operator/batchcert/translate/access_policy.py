"""The vault access the pool's identity needs, as ARM access-policy bodies (pure).

Invariants: the grant is exactly secrets get + list (what the Key Vault VM extension needs, no
more); a vault already granting both to the principal needs no write.
"""

from __future__ import annotations

from typing import Any

SECRETS_READ = ("get", "list")


def has_secrets_read(vault: dict[str, Any], principal_id: str) -> bool:
    for policy in (vault.get("properties") or {}).get("accessPolicies") or []:
        if str(policy.get("objectId", "")).lower() != principal_id.lower():
            continue
        granted = {p.lower() for p in (policy.get("permissions") or {}).get("secrets") or []}
        if "all" in granted or set(SECRETS_READ) <= granted:
            return True
    return False


def build_secrets_read_policy(tenant_id: str, principal_id: str) -> dict[str, Any]:
    return {
        "properties": {
            "accessPolicies": [
                {
                    "tenantId": tenant_id,
                    "objectId": principal_id,
                    "permissions": {"secrets": list(SECRETS_READ)},
                }
            ]
        }
    }
