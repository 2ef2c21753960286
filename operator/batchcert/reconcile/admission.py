"""Before any step: the spec parsed, or the turn refused without touching Azure; the first visit.

Refusals are verdicts on the whole object (``Ready``): an invalid spec, a vault outside the
configured cloud, verification the install forbids (``assess/install_policy.py``), a pause. The first visit writes
``Reconciling`` on every component at once (kubectl shows it), before any Azure work. A pause
annotation that is neither "true" nor "false" is no pause: ``ignored_pause_message`` says why, for
the Warning Event the daemon posts once per distinct value.

Invariants: a refused or first turn makes no Azure call; a refusal is stamped with the
generation like any other verdict, so no tool waits for it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from pydantic import ValidationError

from batchcert.assess.certificates import is_cloud_vault
from batchcert.assess.install_policy import refusal_by_install_policy
from batchcert.conditions import COMPONENT_TYPES, ConditionUpdate, apply_conditions, apply_refusal
from batchcert.config import Config
from batchcert.models.names import PAUSED_ANNOTATION
from batchcert.models.spec import BatchCertPoolSpec, parse_spec
from batchcert.reasons import ComponentReason, ReadyReason
from batchcert.reconcile.memory import ObjectView


@dataclass(frozen=True)
class Stop:
    """A turn that ends before the steps: the status it writes and when to look again."""

    status: dict[str, Any]
    next_check_in: float
    post_transitions: bool = True  # the first visit's Reconciling posts nothing


# The pause annotation's values (case-insensitive): "true" pauses, "false" says so explicitly.
PAUSE_VALUES = ("true", "false")


def ignored_pause_message(annotations: Mapping[str, Any]) -> str | None:
    """Why the pause annotation was ignored, when its value is neither true nor false; else None.

    Such an object is reconciled as not paused: guessing "yes please" to mean a pause would make
    any typo stop the operator silently, and refusing the object would stop it too. The user is
    told once (a Warning Event), not on every turn.
    """
    if PAUSED_ANNOTATION not in annotations:
        return None
    value = str(annotations[PAUSED_ANNOTATION])
    if value.lower() in PAUSE_VALUES:  # as statuswriter.to_view reads it: " true" pauses nothing
        return None
    return (
        f'annotation {PAUSED_ANNOTATION}={value!r} is ignored: only "true" pauses '
        'reconciliation ("false" or no annotation resumes it), so this object is reconciled '
        "as not paused"
    )


def admit(
    obj: ObjectView, old: dict[str, Any], config: Config, now: datetime
) -> BatchCertPoolSpec | Stop:
    """The parsed spec, or the outcome of a turn that must not touch Azure at all."""
    conditions: list[dict[str, Any]] = list(old.get("conditions") or [])

    def refuse(reason: ReadyReason, message: str, next_in: float) -> Stop:
        # A verdict on this generation like any other: stamped, so no tool waits for it.
        after = apply_refusal(conditions, reason, message, generation=obj.generation, now=now)
        return Stop(dict(old, observedGeneration=obj.generation, conditions=after), next_in)

    try:
        spec = parse_spec(obj.spec)
    except ValidationError as exc:
        # Admission should have refused this; say what is wrong rather than guess.
        problem = "; ".join(
            f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in exc.errors()[:3]
        )
        return refuse(ReadyReason.INVALID_SPEC, f"spec is invalid: {problem}", 60.0)
    suffix = config.cloud.keyvault_dns_suffix
    foreign = sorted({c.vault for c in spec.certificates if not is_cloud_vault(c.vault, suffix)})
    if foreign:
        return refuse(
            ReadyReason.VAULT_NOT_ALLOWED,
            f"{', '.join(foreign)} is not a Key Vault of this cloud (*{suffix}): the operator "
            "sends no credential there and creates no pool that would",
            60.0,
        )
    forbidden = refusal_by_install_policy(spec, verification_allowed=config.verification_allowed)
    if forbidden is not None:
        return refuse(ReadyReason(forbidden.reason), forbidden.message, 60.0)
    if obj.paused:
        return refuse(
            ReadyReason.RECONCILE_PAUSED,
            f"reconciliation is paused by the {PAUSED_ANNOTATION} annotation",
            config.tick_seconds,
        )
    if not conditions:
        # First visit: say so at once (kubectl shows Reconciling), then do the Azure work.
        first = [
            ConditionUpdate(t, None, ComponentReason.RECONCILING, "first reconcile in progress")
            for t in COMPONENT_TYPES
        ]
        initial = apply_conditions([], first, generation=obj.generation, now=now)
        return Stop(dict(old, observedGeneration=obj.generation, conditions=initial), 0.0, False)
    return spec
