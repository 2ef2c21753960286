"""``identity.grantSecretsAccess``: make sure the pool's identity can read the vaults' secrets.

Replaces the runbook step "grant the identity read access to the vault's secrets". On a vault
that uses access policies: an access-policy ``add`` (ARM merges it into the principal's entry;
nothing else is touched). On a vault with ``enableRbacAuthorization`` (access policies ignored): a
"Key Vault Secrets User" role assignment for the identity's principal at the vault's scope,
under a deterministic name, then a wait until ARM's ``createdOn`` is the propagation time old
(Azure: up to ten minutes, during which the nodes' reads still get 403), so the pool is not
created into a certain failure and no false Stalled is shown meanwhile.

Invariants: a vault that already grants secrets get+list (access policy) or a secrets-reading
role (RBAC) to the identity's principal is never written; a re-apply makes no second assignment
(same name; a 409 ``RoleAssignmentExists`` for the same grant under another name counts as
granted); nothing is ever revoked (an identity may serve other pools); checks happen when the
spec changes, while a grant propagates, and when nodes report VaultAccessDenied, not on every
drift check, so a steady pool costs no ARM calls here.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from batchcert.adapters.arm import ArmAdapter
from batchcert.errors import AzureCallError, classify
from batchcert.models.spec import BatchCertPoolSpec
from batchcert.reconcile.lookups import SharedFacts
from batchcert.reconcile.outcome import Event
from batchcert.translate.access_policy import build_secrets_read_policy, has_secrets_read
from batchcert.translate.role_assignment import (
    KEY_VAULT_SECRETS_USER,
    build_role_assignment_name,
    build_secrets_user_assignment,
    find_secrets_reader,
    is_rbac_vault,
    propagated_at,
)

PROPAGATING = "RoleAssignmentPropagating"


@dataclass
class AccessOutcome:
    complete: bool  # every vault grants access (propagated)
    events: list[Event] = field(default_factory=list)
    propagating_until: datetime | None = None  # a new role assignment is not effective yet

    def propagating_message(self) -> str:
        assert self.propagating_until is not None
        return (
            "the pool identity's Key Vault Secrets User role assignment is propagating (Azure "
            f"RBAC takes up to minutes); the pool waits until {self.propagating_until:%H:%M:%S}Z "
            "so its nodes do not fetch into a 403"
        )


class AccessGranter:
    def __init__(
        self,
        arm: ArmAdapter,
        facts: SharedFacts,
        *,
        propagation: timedelta = timedelta(minutes=10),
        now: Callable[[], datetime] = lambda: datetime.fromtimestamp(time.time(), UTC),
    ) -> None:
        self._arm = arm
        self._facts = facts
        self._propagation = propagation
        self._now = now

    async def ensure(self, spec: BatchCertPoolSpec) -> AccessOutcome:
        """Grant where missing; the outcome says whether every vault grants access now."""
        grant = spec.identity.grant_secrets_access
        if grant is None:
            return AccessOutcome(True)
        try:
            identity = await self._facts.identity(spec.identity.resource_id)
            if identity is None or not identity.principal_id or not identity.tenant_id:
                return AccessOutcome(
                    False,
                    [
                        Event(
                            "Warning",
                            "VaultAccessGrantFailed",
                            f"identity {spec.identity.resource_id} was not found (or has no "
                            "principal): no vault access can be granted",
                        )
                    ],
                )
            outcome = AccessOutcome(True)
            for vault_id in grant.vaults:
                vault = await self._arm.get_vault(vault_id)
                if vault is None:
                    outcome.complete = False
                    outcome.events.append(
                        Event(
                            "Warning", "VaultAccessGrantFailed", f"vault {vault_id} does not exist"
                        )
                    )
                elif is_rbac_vault(vault):
                    await self._ensure_role(vault_id, identity.principal_id, outcome)
                elif not has_secrets_read(vault, identity.principal_id):
                    await self._arm.add_access_policy(
                        vault_id,
                        build_secrets_read_policy(identity.tenant_id, identity.principal_id),
                    )
                    self._facts.forget_vault(vault_id)  # the diagnosis must not judge the old one
                    outcome.events.append(
                        Event(
                            "Normal",
                            "VaultAccessGranted",
                            f"granted secrets get/list on {vault_id.rsplit('/', 1)[-1]} to the "
                            f"pool's identity (principal {identity.principal_id})",
                        )
                    )
            if outcome.propagating_until is not None:
                outcome.complete = False
            return outcome
        except AzureCallError as exc:
            verdict = classify(exc)
            return AccessOutcome(
                False,
                [
                    Event(
                        "Warning",
                        "VaultAccessGrantFailed",
                        f"granting vault access failed ({verdict.reason}): {verdict.message}",
                    )
                ],
            )

    async def _ensure_role(self, vault_id: str, principal_id: str, outcome: AccessOutcome) -> None:
        """A secrets-reading role assignment at the vault, made if missing; note its propagation."""
        assignment = find_secrets_reader(
            await self._arm.list_role_assignments(vault_id, principal_id), principal_id
        )
        if assignment is None:
            name = build_role_assignment_name(vault_id, principal_id, KEY_VAULT_SECRETS_USER)
            try:
                assignment = await self._arm.create_role_assignment(
                    vault_id, name, build_secrets_user_assignment(vault_id, principal_id)
                )
            except AzureCallError as exc:
                if exc.code != "RoleAssignmentExists":
                    raise
                # Made meanwhile (another replica, another pool): read it for its createdOn.
                assignment = find_secrets_reader(
                    await self._arm.list_role_assignments(vault_id, principal_id), principal_id
                )
            else:
                outcome.events.append(
                    Event(
                        "Normal",
                        "VaultAccessGranted",
                        f"assigned Key Vault Secrets User on {vault_id.rsplit('/', 1)[-1]} to the "
                        f"pool's identity (principal {principal_id}, assignment {name})",
                    )
                )
        ready_at = propagated_at(assignment or {}, self._propagation)
        if ready_at is not None and self._now() < ready_at:
            until = outcome.propagating_until
            outcome.propagating_until = ready_at if until is None else max(until, ready_at)
