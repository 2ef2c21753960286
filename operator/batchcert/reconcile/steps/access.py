"""Step 1, access: the pool's identity may read secrets in the vaults (``grantSecretsAccess``).

Granted once per spec generation; looked at again, calmly, when it failed or when the nodes prove
it revoked (``heed``, after the nodes step). Its condition is none of its own: a failed grant
shows on NodesReady, where its effect is; a new RBAC role assignment that is still propagating
holds the pool step (``memory.waiting`` becomes PoolReady), which looks again when it is due.

Invariants: no Azure call unless ``grantSecretsAccess`` is set and a grant is due.
"""

from __future__ import annotations

from batchcert.conditions import POOL_READY, ConditionUpdate
from batchcert.config import Config
from batchcert.errors import Backoff
from batchcert.reasons import NodesReason
from batchcert.reconcile.access import PROPAGATING, AccessGranter
from batchcert.reconcile.memory import AccessMemory
from batchcert.reconcile.steps.turn import StepResult, Turn


class AccessStep:
    def __init__(self, granter: AccessGranter, config: Config) -> None:
        self._granter = granter
        self._config = config

    async def run(self, turn: Turn, memory: AccessMemory) -> StepResult:
        spec, mono = turn.spec, turn.mono
        if spec.identity.grant_secrets_access is not None and (
            memory.generation != turn.obj.generation
            or (memory.recheck and memory.schedule.is_due(mono))
        ):
            access = await self._granter.ensure(spec)
            memory.generation = turn.obj.generation
            memory.recheck = not access.complete
            memory.waiting = None
            if access.propagating_until is not None:
                # Not a failure: look again when the assignment has propagated (no backoff).
                memory.waiting = ConditionUpdate(
                    POOL_READY, False, PROPAGATING, access.propagating_message()
                )
                wait = (access.propagating_until - turn.now).total_seconds()
                memory.schedule = Backoff().after_success(mono, max(1.0, wait))
            elif access.complete:
                memory.schedule = Backoff()
            else:
                memory.schedule = memory.schedule.after_failure(
                    mono,
                    base=self._config.busy_interval_seconds,
                    cap=self._config.drift_interval_seconds,
                )
            return StepResult(events=access.events)
        return StepResult()

    def heed(self, turn: Turn, memory: AccessMemory, nodes: ConditionUpdate | None) -> None:
        """The nodes prove access denied: someone revoked the grant (or it never reached this
        vault); look again, calmly."""
        if (
            nodes is not None
            and nodes.reason == NodesReason.VAULT_ACCESS_DENIED
            and turn.spec.identity.grant_secrets_access is not None
            and not memory.recheck
        ):
            memory.recheck = True
            memory.schedule = Backoff().after_success(turn.mono, self._config.busy_interval_seconds)

    @staticmethod
    def wake_at(memory: AccessMemory) -> float | None:
        return memory.schedule.next_at if memory.recheck else None
