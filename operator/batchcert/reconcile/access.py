"""``identity.grantSecretsAccess``: make sure the pool's identity can read the vaults' secrets.

Replaces the runbook step "grant the identity read access to the vault's secrets" with an
access-policy ``add`` (ARM merges it into the principal's entry; nothing else is touched).

Invariants: a vault that already grants secrets get+list to the identity's principal is never
written; nothing is ever revoked (an identity may serve other pools); checks happen when the spec
changes and when nodes report VaultAccessDenied, not on every drift check, so a steady pool costs
no ARM calls here.
"""

from __future__ import annotations

from batchcert.adapters.arm import ArmAdapter
from batchcert.errors import AzureCallError, classify
from batchcert.models.spec import BatchCertPoolSpec
from batchcert.reconcile.lookups import SharedFacts
from batchcert.reconcile.outcome import Event
from batchcert.translate.access_policy import build_secrets_read_policy, has_secrets_read


class AccessGranter:
    def __init__(self, arm: ArmAdapter, facts: SharedFacts) -> None:
        self._arm = arm
        self._facts = facts

    async def ensure(self, spec: BatchCertPoolSpec) -> tuple[bool, list[Event]]:
        """Grant where missing; returns (every vault grants access, events)."""
        grant = spec.identity.grant_secrets_access
        if grant is None:
            return True, []
        try:
            identity = await self._facts.identity(spec.identity.resource_id)
            if identity is None or not identity.principal_id or not identity.tenant_id:
                return False, [
                    Event(
                        "Warning",
                        "VaultAccessGrantFailed",
                        f"identity {spec.identity.resource_id} was not found (or has no principal): "
                        "no vault access can be granted",
                    )
                ]
            events: list[Event] = []
            complete = True
            for vault_id in grant.vaults:
                vault = await self._arm.get_vault(vault_id)
                if vault is None:
                    complete = False
                    events.append(
                        Event(
                            "Warning", "VaultAccessGrantFailed", f"vault {vault_id} does not exist"
                        )
                    )
                    continue
                if has_secrets_read(vault, identity.principal_id):
                    continue
                await self._arm.add_access_policy(
                    vault_id, build_secrets_read_policy(identity.tenant_id, identity.principal_id)
                )
                self._facts.forget_vault(vault_id)  # the diagnosis must not judge the old one
                events.append(
                    Event(
                        "Normal",
                        "VaultAccessGranted",
                        f"granted secrets get/list on {vault_id.rsplit('/', 1)[-1]} to the pool's "
                        f"identity (principal {identity.principal_id})",
                    )
                )
            return complete, events
        except AzureCallError as exc:
            verdict = classify(exc)
            return False, [
                Event(
                    "Warning",
                    "VaultAccessGrantFailed",
                    f"granting vault access failed ({verdict.reason}): {verdict.message}",
                )
            ]
