"""The one reason registry: every condition reason the operator writes, and what it means.

Each entry names a condition type, a reason, whether the reason is a success, a step the operator
takes by itself (*transient*), something only a person can fix (*user action*) or a deliberate
pause, and the Event type posted when the reason first appears (or none). Everything that must
agree on "is this a failure?" reads it: the reconcile's transition Events, the kstatus
conditions ``Reconciling``/``Stalled`` (which Argo CD's Lua and Flux's CEL expressions in
``deploy/gitops`` read, so they hold no list of their own), ``Ready``'s choice of the component
that blocks, and the reason table in docs/usage.md (``tests/unit/test_reasons.py`` keeps them equal
and checks that every reason the code can write is here). ``tests/consumers`` runs kstatus, Argo
CD's and Flux's own libraries over a status for every entry.

Invariants: a reason name has one action whatever condition carries it; a success is only ever
written with status True and nothing else is; an unknown reason counts as a user action, so a
new failure can never hide as "in progress" forever.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from enum import StrEnum

READY = "Ready"
POOL_READY = "PoolReady"
CERTIFICATE_READY = "CertificateReady"
NODES_READY = "NodesReady"
# kstatus' standard pair (sigs.k8s.io/cli-utils/pkg/kstatus): True while converging / True when
# only a person can make progress. Derived from the components, never decided on their own.
RECONCILING = "Reconciling"
STALLED = "Stalled"
COMPONENT_TYPES = (POOL_READY, CERTIFICATE_READY, NODES_READY)
SUMMARY_TYPES = (READY, RECONCILING, STALLED)


class Action(StrEnum):
    NONE = "None"  # converged: the condition is True
    TRANSIENT = "Transient"  # the operator gets past it by itself (a step, a retry)
    USER = "UserAction"  # nothing changes until a person fixes something
    PAUSED = "Paused"  # a person asked the operator to stand still


class EventType(StrEnum):
    NORMAL = "Normal"
    WARNING = "Warning"


@dataclass(frozen=True)
class Reason:
    type: str  # the condition type that carries it
    name: str
    action: Action
    event: EventType | None  # posted when the reason first appears on this condition
    meaning: str  # what it means / what to do (the table in docs/usage.md)


_AZURE_FAULTS = (
    # (reason, action, meaning): the error classifier's verdicts (batchcert.errors.classify),
    # which any component may report for the Azure call it made.
    ("AuthenticationFailed", Action.USER, "fix the operator's credentials"),
    ("AuthorizationFailed", Action.USER, "grant the operator's identity the Azure role named"),
    ("QuotaExceeded", Action.USER, "Azure refused the request: the message is Azure's"),
    ("AzureRejectedSpec", Action.USER, "Azure refused the request: the message is Azure's"),
    ("AzureResourceNotFound", Action.USER, "an Azure resource the spec names does not exist"),
    ("UpdateRequiresDisruption", Action.USER, "Azure refused the request: the message is Azure's"),
    (
        "AzureThrottled",
        Action.TRANSIENT,
        "transient: retried with jittered backoff, honouring Retry-After",
    ),
    (
        "AzureUnavailable",
        Action.TRANSIENT,
        "transient: retried with jittered backoff, honouring Retry-After",
    ),
    (
        "AzureConflict",
        Action.TRANSIENT,
        "transient: retried with jittered backoff, honouring Retry-After",
    ),
)

_FIRST_VISIT = "the operator has not finished its first look (or it raced a concurrent create)"


def _entries() -> Iterator[Reason]:
    N, T, U = Action.NONE, Action.TRANSIENT, Action.USER
    W = EventType.WARNING
    yield from (
        Reason(
            READY, "Ready", N, EventType.NORMAL, "the pool, its certificates and nodes are ready"
        ),
        Reason(
            READY, "InvalidSpec", U, W, "the spec is invalid (admission should have refused it)"
        ),
        Reason(
            READY,
            "VaultNotAllowed",
            U,
            W,
            "a `vaultUrl` is not a Key Vault of the configured cloud",
        ),
        Reason(
            READY,
            "ReconcilePaused",
            Action.PAUSED,
            None,
            "the `batchcert.dev/paused` annotation is set",
        ),
        Reason(POOL_READY, "PoolReady", N, None, "the pool exists and matches the spec"),
        Reason(POOL_READY, "Reconciling", T, None, _FIRST_VISIT),
        Reason(POOL_READY, "PoolCreated", T, None, "a change is in flight"),
        Reason(POOL_READY, "ScalingToZero", T, None, "a change is in flight"),
        Reason(POOL_READY, "PoolUpdating", T, None, "a change is in flight"),
        Reason(POOL_READY, "PoolRecreating", T, None, "a change is in flight"),
        Reason(POOL_READY, "PoolDeleting", T, None, "a change is in flight"),
        Reason(POOL_READY, "UpdateRequiresDisruption", U, W, "see `disruptiveUpdatePolicy` above"),
        Reason(
            POOL_READY,
            "IdentityNotFound",
            U,
            W,
            "`spec.identity.resourceId` does not exist (or the operator cannot read it)",
        ),
        Reason(
            POOL_READY,
            "PoolNotOwned",
            U,
            W,
            "a pool of that name exists and is not ours: delete it or pick another `poolName`",
        ),
        Reason(
            CERTIFICATE_READY,
            "CertificatesReady",
            N,
            None,
            "every certificate exists, is enabled, unexpired, and renews itself",
        ),
        Reason(CERTIFICATE_READY, "Reconciling", T, None, _FIRST_VISIT),
        Reason(CERTIFICATE_READY, "CertificatePending", T, None, "not read from Key Vault yet"),
        Reason(
            CERTIFICATE_READY,
            "CertificateCreating",
            T,
            None,
            "`createIfMissing` started creating it",
        ),
        Reason(
            CERTIFICATE_READY,
            "CertificateReadFailed",
            T,
            W,
            "reading it failed for a reason Key Vault did not explain: retried",
        ),
        Reason(CERTIFICATE_READY, "CertificateNotFound", U, W, "fix the certificate in Key Vault"),
        Reason(CERTIFICATE_READY, "CertificateDisabled", U, W, "fix the certificate in Key Vault"),
        Reason(CERTIFICATE_READY, "CertificateExpired", U, W, "fix the certificate in Key Vault"),
        Reason(
            CERTIFICATE_READY,
            "AutoRenewDisabled",
            U,
            W,
            "add an AutoRenew lifetime action to its policy",
        ),
        Reason(
            CERTIFICATE_READY,
            "CertificateExpiringSoon",
            U,
            W,
            "add an AutoRenew lifetime action to its policy",
        ),
        Reason(
            CERTIFICATE_READY,
            "AutoRenewStuck",
            U,
            W,
            "the renewal point passed a day ago and no new version appeared",
        ),
        Reason(
            NODES_READY,
            "ExtensionSucceeded",
            N,
            None,
            "every node's Key Vault extension is healthy",
        ),
        Reason(NODES_READY, "NoNodes", N, None, "every node's Key Vault extension is healthy"),
        Reason(NODES_READY, "Reconciling", T, None, _FIRST_VISIT),
        Reason(NODES_READY, "PoolNotReady", T, None, "the pool does not exist yet"),
        Reason(
            NODES_READY,
            "RotationPropagating",
            T,
            None,
            "a new version was seen; nodes have one polling interval to fetch it",
        ),
        Reason(NODES_READY, "ExtensionTransitioning", T, None, "nodes are still coming up"),
        Reason(NODES_READY, "NodesAllocating", T, None, "nodes are still coming up"),
        Reason(
            NODES_READY,
            "IdentityNotFound",
            U,
            W,
            "the extension's `msiClientId` matches no identity on the pool: check "
            "`spec.identity.clientId`",
        ),
        Reason(
            NODES_READY,
            "VaultAccessDenied",
            U,
            W,
            "grant the pool's identity secrets get/list (or Key Vault Secrets User)",
        ),
        Reason(NODES_READY, "CertificateNotFound", U, W, "as named"),
        Reason(NODES_READY, "CertificateDisabled", U, W, "as named"),
        Reason(NODES_READY, "ExtensionFailed", U, W, "as named"),
        Reason(NODES_READY, "ExtensionMissing", U, W, "as named"),
        Reason(NODES_READY, "NodeUnusable", U, W, "as named"),
    )
    for type_ in COMPONENT_TYPES:
        for name, action, meaning in _AZURE_FAULTS:
            if (type_, name) != (POOL_READY, "UpdateRequiresDisruption"):  # said above, better
                yield Reason(type_, name, action, W, meaning)


REASONS: tuple[Reason, ...] = tuple(_entries())
_BY_KEY = {(r.type, r.name): r for r in REASONS}
_ACTION_BY_NAME = {r.name: r.action for r in REASONS}


def find_reason(type_: str, name: str) -> Reason | None:
    return _BY_KEY.get((type_, name))


def action_of(name: str) -> Action:
    """What a reason asks for, whatever condition carries it (unknown: a user action)."""
    return _ACTION_BY_NAME.get(name, Action.USER)


def event_type_of(type_: str, name: str) -> EventType | None:
    """The Event posted when ``name`` first appears on ``type_`` (unknown reasons warn)."""
    entry = find_reason(type_, name)
    return entry.event if entry is not None else EventType.WARNING


def is_user_action(name: str) -> bool:
    return action_of(name) is Action.USER
