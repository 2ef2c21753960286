"""Reconcile one Batch pool to its spec: create, correct drift, apply disruptive changes by policy.

Level-driven: every call reads the pool and decides from what it sees, so a crash at any step is
recovered by the next call. Creation is guarded: the PUT carries ``If-None-Match: *`` and our
owner uid in the pool's metadata, so a retry after "PUT sent, status not written" finds our pool
and adopts it, and a foreign pool with the same name is never replaced. Because the guard is in
the PUT, a pool this object has never seen (no ``status.pool``, no sighting since start) is
created without a GET first: the PUT's answer is the first sighting, and a 412 leads to the GET
that judges what is there. This halves the ARM reads of a fleet's first convergence, which ARM's
read bucket would otherwise bound (``benchmarks/README.md``, issue 15).

Disruptive changes (those Azure refuses while nodes exist) follow ``disruptiveUpdatePolicy``:
``Report`` changes nothing and says so; ``ScaleToZero`` drives the pool to 0 nodes, applies the
change, then scales back (each step chosen from the observed level, not from remembered edges);
``Recreate`` deletes the pool and lets the next call create it again.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from batchcert.adapters.arm import ArmAdapter
from batchcert.conditions import POOL_READY, ConditionUpdate
from batchcert.errors import AzureCallError, classify
from batchcert.models.azure import PoolState
from batchcert.models.spec import BatchCertPoolSpec, DisruptiveUpdatePolicy
from batchcert.reasons import PoolReason
from batchcert.reconcile.lookups import SharedFacts
from batchcert.reconcile.memory import ObjectView
from batchcert.reconcile.outcome import DeleteOutcome, Event, PoolResult, PoolSighting
from batchcert.translate.pool_body import (
    Owner,
    build_pool_body,
    build_scale_settings,
    build_zero_scale_settings,
    owner_uid_of,
)
from batchcert.translate.pool_diff import build_disruptive_patch, build_in_place_patch, diff_pool


def _ready(reason: PoolReason, message: str) -> ConditionUpdate:
    return ConditionUpdate(POOL_READY, True, reason, message)


def _not_ready(reason: PoolReason, message: str) -> ConditionUpdate:
    return ConditionUpdate(POOL_READY, False, reason, message)


def _allocation(pool: PoolState) -> str:
    return (
        f"{pool.allocation_state or 'Unknown'} with {pool.current_dedicated_nodes} dedicated and "
        f"{pool.current_low_priority_nodes} low-priority nodes"
    )


def _refusal(
    pool: PoolState, uid: str, spec: BatchCertPoolSpec, pool_name: str
) -> PoolResult | None:
    """A pool this object must not touch: another owner's, or one Azure is deleting."""
    if owner_uid_of(pool.properties) != uid:
        return PoolResult(
            _not_ready(
                PoolReason.POOL_NOT_OWNED,
                f"a pool named {pool_name} already exists in account {spec.account.name} and "
                "was not created by this resource: delete it in Azure or choose another spec.poolName",
            )
        )
    if pool.is_deleting:
        return PoolResult(
            _not_ready(PoolReason.POOL_DELETING, f"pool {pool_name} is being deleted in Azure"),
            busy=True,
        )
    return None


class PoolReconciler:
    def __init__(self, arm: ArmAdapter, facts: SharedFacts) -> None:
        self._arm = arm
        self._facts = facts

    async def reconcile(
        self,
        obj: ObjectView,
        spec: BatchCertPoolSpec,
        *,
        never_seen: bool = False,
        create_gate: ConditionUpdate | None = None,
    ) -> PoolResult:
        """One step towards the spec; the result says what was done and what was seen.

        ``never_seen``: no pool was ever sighted for this object, so creating is the likely step
        and the guarded PUT goes first (a pool that is there after all answers 412).
        ``create_gate``: why a pool found absent must not be created yet (a certificate known
        missing: ``assess/creation.py``); a pool that exists is reconciled as ever.
        """
        seen = PoolSighting()
        try:
            result = await self._reconcile(obj, spec, seen, never_seen, create_gate)
        except AzureCallError as exc:
            verdict = classify(exc)
            condition = ConditionUpdate(POOL_READY, False, verdict.reason, verdict.message)
            result = PoolResult(condition, failure=verdict)
        result.seen = seen
        return result

    async def _reconcile(
        self,
        obj: ObjectView,
        spec: BatchCertPoolSpec,
        seen: PoolSighting,
        never_seen: bool,
        create_gate: ConditionUpdate | None,
    ) -> PoolResult:
        account, pool_name = spec.account, spec.resolved_pool_name(obj.name)
        client_id = await self._facts.client_id(spec)
        if client_id is None:
            return PoolResult(
                _not_ready(
                    PoolReason.IDENTITY_NOT_FOUND,
                    f"user-assigned identity {spec.identity.resource_id} does not exist "
                    "(or the operator cannot read it): create it or fix spec.identity.resourceId",
                )
            )
        owner = Owner(obj.namespace, obj.name, obj.uid)
        desired = build_pool_body(spec, identity_client_id=client_id, owner=owner)
        pool = None if never_seen else seen.saw(await self._arm.get_pool(account, pool_name))
        if pool is None:
            if create_gate is not None:
                return PoolResult(create_gate)
            created = await self._create(spec, pool_name, desired, seen)
            if isinstance(created, PoolResult):
                return created
            pool = created  # raced: someone created it meanwhile; judge it as found
        refusal = _refusal(pool, obj.uid, spec, pool_name)
        if refusal is not None:
            return refusal
        return await self._converge(spec, pool_name, pool, desired, seen)

    async def _create(
        self, spec: BatchCertPoolSpec, pool_name: str, desired: dict[str, Any], seen: PoolSighting
    ) -> PoolResult | PoolState:
        """Create the pool, guarded by If-None-Match; a pool that appeared meanwhile is returned."""
        account = spec.account
        try:
            pool = await self._arm.create_pool(account, pool_name, desired)
        except AzureCallError as exc:
            if not exc.is_precondition_failed:
                raise
            raced = seen.saw(await self._arm.get_pool(account, pool_name))
            if raced is None:
                return PoolResult(
                    _not_ready(PoolReason.RECONCILING, "pool creation raced"), busy=True
                )
            return raced
        seen.saw(pool)
        return PoolResult(
            _not_ready(PoolReason.POOL_CREATED, f"pool {pool_name} created; {_allocation(pool)}"),
            [Event("Normal", "PoolCreated", f"created Batch pool {pool_name} in {account.name}")],
            busy=True,
        )

    async def _converge(
        self,
        spec: BatchCertPoolSpec,
        pool_name: str,
        pool: PoolState,
        desired: dict[str, Any],
        seen: PoolSighting,
    ) -> PoolResult:
        """Apply what differs, in place where Azure allows and by the policy where it does not."""
        account, events = spec.account, list[Event]()
        spec_scale = build_scale_settings(spec)
        diff = diff_pool(desired, pool.body, desired_scale=spec_scale)
        policy = spec.disruptive_update_policy
        if diff.disruptive and policy is DisruptiveUpdatePolicy.RECREATE:
            await self._arm.begin_delete_pool(account, pool_name)
            return _recreating(pool_name, diff.disruptive)
        if diff.requires_recreate and policy is DisruptiveUpdatePolicy.SCALE_TO_ZERO:
            # Checked before ScaleToZero: scaling to 0 for a change Azure then refuses would
            # take the nodes away for nothing.
            return PoolResult(
                _not_ready(
                    PoolReason.UPDATE_REQUIRES_RECREATE,
                    "the Key Vault extension's settings differ from the spec (a certificate "
                    "added, removed or changed, or the extension itself); Azure Batch cannot "
                    "change the VM extensions of an existing pool, not even at 0 nodes: set "
                    "spec.disruptiveUpdatePolicy to Recreate to apply it, or revert the change "
                    "(ScaleToZero cannot apply it)",
                ),
                events,
            )
        if diff.disruptive and policy is DisruptiveUpdatePolicy.SCALE_TO_ZERO:
            return await self._scale_to_zero_step(spec, pool_name, pool, desired, diff.disruptive)

        patch = build_in_place_patch(desired, diff, desired_scale=spec_scale)
        if patch is not None:
            pool = await self._arm.update_pool(account, pool_name, patch, etag=pool.etag)
            seen.saw(pool)
            events.append(
                Event("Normal", "PoolUpdated", f"updated {', '.join(patch['properties'])}")
            )
        if diff.disruptive:  # policy is Report
            return PoolResult(_reported(diff.described, bool(diff.requires_recreate)), events)
        # While Azure is still allocating, look again soon so status follows the nodes arriving.
        allocating = (pool.allocation_state or "").lower() != "steady"
        return PoolResult(
            _ready(
                PoolReason.POOL_READY, f"pool {pool_name} matches the spec; {_allocation(pool)}"
            ),
            events,
            busy=patch is not None or allocating,
        )

    async def _scale_to_zero_step(
        self,
        spec: BatchCertPoolSpec,
        pool_name: str,
        pool: PoolState,
        desired: dict[str, Any],
        fields: tuple[str, ...],
    ) -> PoolResult:
        account, events = spec.account, list[Event]()
        zero = build_zero_scale_settings()
        targets_zero = diff_pool(desired, pool.body, desired_scale=zero).scale_differs is False
        names = ", ".join(fields)
        if not targets_zero:
            await self._arm.update_pool(
                account, pool_name, {"properties": {"scaleSettings": zero}}, etag=pool.etag
            )
            message = f"scaling pool {pool_name} to 0 nodes to change {names}"
            events.append(Event("Normal", "PoolScalingToZero", message))
            return PoolResult(_not_ready(PoolReason.SCALING_TO_ZERO, message), events, busy=True)
        if not pool.is_steady_at_zero:
            return PoolResult(
                _not_ready(
                    PoolReason.SCALING_TO_ZERO, f"waiting for pool {pool_name} to reach 0 nodes"
                ),
                events,
                busy=True,
            )
        await self._arm.update_pool(
            account, pool_name, build_disruptive_patch(desired, fields), etag=pool.etag
        )
        events.append(Event("Normal", "PoolUpdated", f"changed {names} at 0 nodes; scaling back"))
        return PoolResult(
            _not_ready(PoolReason.POOL_UPDATING, f"changed {names}; scaling back"),
            events,
            busy=True,
        )

    async def delete(self, obj: ObjectView, spec: BatchCertPoolSpec) -> DeleteOutcome:
        pool_name = spec.resolved_pool_name(obj.name)
        if spec.deletion_policy.value == "Orphan":
            return DeleteOutcome(
                True, [Event("Normal", "PoolOrphaned", f"left pool {pool_name} in Azure (Orphan)")]
            )
        try:
            pool = await self._arm.get_pool(spec.account, pool_name)
            if pool is None:
                return DeleteOutcome(
                    True, [Event("Normal", "PoolDeleted", f"pool {pool_name} is gone")]
                )
            if owner_uid_of(pool.properties) != obj.uid:
                return DeleteOutcome(
                    True,
                    [
                        Event(
                            "Warning",
                            "PoolNotOwned",
                            f"pool {pool_name} was not created by this resource: left in place",
                        )
                    ],
                )
            deleting = _not_ready(
                PoolReason.POOL_DELETING,
                f"pool {pool_name} is being deleted in Azure (deletionPolicy Delete); the "
                "object goes once it is gone",
            )
            if not pool.is_deleting:
                await self._arm.begin_delete_pool(spec.account, pool_name)
                started = Event("Normal", "PoolDeleting", f"deleting pool {pool_name}")
                return DeleteOutcome(False, [started], 5.0, deleting)
            return DeleteOutcome(False, [], 5.0, deleting)  # Azure's long-running delete
        except AzureCallError as exc:
            verdict = classify(exc)
            return DeleteOutcome(
                False,
                [Event("Warning", verdict.reason, verdict.message)],
                max(verdict.retry_after or 0.0, 10.0),
                ConditionUpdate(POOL_READY, False, verdict.reason, verdict.message),
            )


def _recreating(pool_name: str, disruptive: Sequence[str]) -> PoolResult:
    fields = ", ".join(disruptive)
    return PoolResult(
        _not_ready(PoolReason.POOL_RECREATING, f"deleting pool {pool_name} to change {fields}"),
        [Event("Normal", "PoolRecreating", f"recreating pool {pool_name} to change {fields}")],
        busy=True,
    )


def _reported(described: str, requires_recreate: bool) -> ConditionUpdate:
    """Policy Report: the disruptive difference, said, not applied."""
    if requires_recreate:
        return _not_ready(
            PoolReason.UPDATE_REQUIRES_DISRUPTION,
            f"the pool differs from the spec ({described}), including the VM "
            "extensions (certificates added, removed or changed), which Azure Batch "
            "changes on no existing pool: set spec.disruptiveUpdatePolicy to Recreate to "
            "apply, or revert the change",
        )
    return _not_ready(
        PoolReason.UPDATE_REQUIRES_DISRUPTION,
        f"the pool differs from the spec ({described}), and Azure changes "
        "that only on a pool with no nodes: set spec.disruptiveUpdatePolicy to "
        "ScaleToZero or Recreate to apply, or revert the change",
    )
