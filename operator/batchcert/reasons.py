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
# Ready: spec.verification asked for while the install forbids it (assess/install_policy.py).
VERIFICATION_NOT_ALLOWED = "VerificationNotAllowed"
SUMMARY_TYPES = (READY, RECONCILING, STALLED)


class Action(StrEnum):
    NONE = "None"  # converged: the condition is True
    TRANSIENT = "Transient"  # the operator gets past it by itself (a step, a retry)
    USER = "UserAction"  # nothing changes until a person fixes something
    PAUSED = "Paused"  # a person asked the operator to stand still


class EventType(StrEnum):
    NORMAL = "Normal"
    WARNING = "Warning"


# Warning Event (no condition): a pause annotation neither "true" nor "false".
PAUSE_ANNOTATION_IGNORED = "PauseAnnotationIgnored"


class ReadyReason(StrEnum):
    """Reasons ``Ready`` carries of its own (a component's reason copied onto it aside)."""

    READY = "Ready"
    INVALID_SPEC = "InvalidSpec"
    VAULT_NOT_ALLOWED = "VaultNotAllowed"
    RECONCILE_PAUSED = "ReconcilePaused"
    VERIFICATION_NOT_ALLOWED = VERIFICATION_NOT_ALLOWED
    NOT_ALLOWED_FOR_NAMESPACE = "NotAllowedForNamespace"  # the tenancy policy (tenancy.py)
    SERVICE_ACCOUNT_UNAVAILABLE = "ServiceAccountUnavailable"


class ComponentReason(StrEnum):
    """Reasons every component condition may carry: the first visit, and the error classifier's
    verdicts on an Azure call (``batchcert.errors.classify``)."""

    RECONCILING = "Reconciling"
    AUTHENTICATION_FAILED = "AuthenticationFailed"
    AUTHORIZATION_FAILED = "AuthorizationFailed"
    QUOTA_EXCEEDED = "QuotaExceeded"
    AZURE_REJECTED_SPEC = "AzureRejectedSpec"
    AZURE_RESOURCE_NOT_FOUND = "AzureResourceNotFound"
    UPDATE_REQUIRES_DISRUPTION = "UpdateRequiresDisruption"
    VAULT_NOT_RESOLVABLE = "VaultNotResolvable"
    POOL_BUSY = "PoolBusy"
    AZURE_THROTTLED = "AzureThrottled"
    AZURE_UNAVAILABLE = "AzureUnavailable"
    AZURE_CONFLICT = "AzureConflict"


class PoolReason(StrEnum):
    RECONCILING = "Reconciling"
    POOL_READY = "PoolReady"
    POOL_CREATED = "PoolCreated"
    SCALING_TO_ZERO = "ScalingToZero"
    POOL_UPDATING = "PoolUpdating"
    POOL_RECREATING = "PoolRecreating"
    POOL_DELETING = "PoolDeleting"
    UPDATE_REQUIRES_DISRUPTION = "UpdateRequiresDisruption"
    UPDATE_REQUIRES_RECREATE = "UpdateRequiresRecreate"
    IDENTITY_NOT_FOUND = "IdentityNotFound"
    POOL_NOT_OWNED = "PoolNotOwned"
    ROLE_ASSIGNMENT_PROPAGATING = "RoleAssignmentPropagating"  # reconcile/access.py
    CERTIFICATE_NOT_FOUND = "CertificateNotFound"  # assess/creation.py


class CertificateReason(StrEnum):
    CERTIFICATES_READY = "CertificatesReady"
    CERTIFICATE_PENDING = "CertificatePending"
    CERTIFICATE_CREATING = "CertificateCreating"
    CERTIFICATE_READ_FAILED = "CertificateReadFailed"
    CERTIFICATE_NOT_FOUND = "CertificateNotFound"
    CERTIFICATE_DISABLED = "CertificateDisabled"
    CERTIFICATE_EXPIRED = "CertificateExpired"
    AUTO_RENEW_DISABLED = "AutoRenewDisabled"
    CERTIFICATE_EXPIRING_SOON = "CertificateExpiringSoon"
    AUTO_RENEW_STUCK = "AutoRenewStuck"


class NodesReason(StrEnum):
    EXTENSION_SUCCEEDED = "ExtensionSucceeded"
    NO_NODES = "NoNodes"
    POOL_NOT_READY = "PoolNotReady"
    ROTATION_PROPAGATING = "RotationPropagating"
    EXTENSION_TRANSITIONING = "ExtensionTransitioning"
    NODES_ALLOCATING = "NodesAllocating"
    FIX_PROPAGATING = "FixPropagating"  # reconcile/steps/nodes.py
    IDENTITY_NOT_FOUND = "IdentityNotFound"
    IDENTITY_NOT_ON_POOL = "IdentityNotOnPool"
    VAULT_ACCESS_DENIED = "VaultAccessDenied"
    CERTIFICATE_NOT_FOUND = "CertificateNotFound"
    CERTIFICATE_DISABLED = "CertificateDisabled"
    CERTIFICATE_EXPIRED = "CertificateExpired"
    CERTIFICATE_FETCH_FAILING = "CertificateFetchFailing"
    EXTENSION_FAILED = "ExtensionFailed"
    EXTENSION_MISSING = "ExtensionMissing"
    NODE_UNUSABLE = "NodeUnusable"
    ROTATION_VERIFIED = "RotationVerified"
    NODES_STALE = "NodesStale"
    VERIFICATION_PENDING = "VerificationPending"
    ROTATION_UNVERIFIED = "RotationUnverified"


# The constants of each condition type (ComponentReason: of every component): a reason written
# through them is registered below (tests/unit/test_reasons.py holds them equal).
REASON_CONSTANTS: dict[str, tuple[type[StrEnum], ...]] = {
    READY: (ReadyReason,),
    POOL_READY: (PoolReason, ComponentReason),
    CERTIFICATE_READY: (CertificateReason, ComponentReason),
    NODES_READY: (NodesReason, ComponentReason),
}


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
        "VaultNotResolvable",
        Action.USER,
        "the vault's name does not resolve: it does not exist, was deleted, or is misspelt",
    ),
    ("PoolBusy", Action.TRANSIENT, "transient: Azure is still resizing the pool; retried"),
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


def _ready(type_: str, name: str, meaning: str, event: EventType | None = None) -> Reason:
    return Reason(type_, name, Action.NONE, event, meaning)


def _step(type_: str, name: str, meaning: str, event: EventType | None = None) -> Reason:
    """Transient: the operator gets past it by itself."""
    return Reason(type_, name, Action.TRANSIENT, event, meaning)


def _user(type_: str, name: str, meaning: str) -> Reason:
    """Only a person can fix it: always a Warning."""
    return Reason(type_, name, Action.USER, EventType.WARNING, meaning)


_IN_FLIGHT = "a change is in flight"
_FIX_CERT = "fix the certificate in Key Vault"
_ADD_AUTORENEW = "add an AutoRenew lifetime action to its policy"
_COMING_UP = "nodes are still coming up"
_FIX_PROPAGATING = (
    "the cause the control plane proved (access, identity, certificate) is gone: the nodes have "
    "a polling interval plus a retry to fetch before `CertificateFetchFailing`"
)


def _entries() -> Iterator[Reason]:
    yield from (
        _ready(READY, "Ready", "the pool, its certificates and nodes are ready", EventType.NORMAL),
        _user(READY, "InvalidSpec", "the spec is invalid (admission should have refused it)"),
        _user(READY, "VaultNotAllowed", "a `vaultUrl` is not a Key Vault of the configured cloud"),
        _user(
            READY,
            VERIFICATION_NOT_ALLOWED,
            "`spec.verification` is on but the install forbids verification tasks",
        ),
        _user(
            READY,
            "NotAllowedForNamespace",
            "the install's tenancy policy refuses what the spec names, or the namespace has no "
            "ServiceAccount of its own and may not use the operator's identity (the message names "
            "the rule)",
        ),
        _user(
            READY,
            "ServiceAccountUnavailable",
            "the namespace's ServiceAccount could not be read or its token requested (the "
            "operator's Kubernetes RBAC on serviceaccounts, AZURE_TENANT_ID); the operator's "
            "identity is never used instead",
        ),
        Reason(
            READY,
            "ReconcilePaused",
            Action.PAUSED,
            None,
            "the `batchcert.dev/paused` annotation is set",
        ),
        _ready(POOL_READY, "PoolReady", "the pool exists and matches the spec"),
        _step(POOL_READY, "Reconciling", _FIRST_VISIT),
        _step(POOL_READY, "PoolCreated", _IN_FLIGHT),
        _step(POOL_READY, "ScalingToZero", _IN_FLIGHT),
        _step(POOL_READY, "PoolUpdating", _IN_FLIGHT),
        _step(POOL_READY, "PoolRecreating", _IN_FLIGHT),
        _step(POOL_READY, "PoolDeleting", _IN_FLIGHT),
        _step(
            POOL_READY,
            "RoleAssignmentPropagating",
            "the pool identity's new Key Vault role assignment is taking effect (Azure RBAC: up "
            "to minutes); the pool is created once it has",
        ),
        _user(POOL_READY, "UpdateRequiresDisruption", "see `disruptiveUpdatePolicy` above"),
        _user(
            POOL_READY,
            "UpdateRequiresRecreate",
            "the certificates or the Key Vault extension changed: Azure Batch changes no existing "
            "pool's VM extensions, so only `disruptiveUpdatePolicy: Recreate` applies it",
        ),
        _user(
            POOL_READY,
            "IdentityNotFound",
            "`spec.identity.resourceId` does not exist (or the operator cannot read it)",
        ),
        _user(
            POOL_READY,
            "PoolNotOwned",
            "a pool of that name exists and is not ours: delete it or pick another `poolName`",
        ),
        _user(POOL_READY, "CertificateNotFound", "not created: a certificate it needs is missing"),
        _ready(
            CERTIFICATE_READY,
            "CertificatesReady",
            "every certificate exists, is enabled, unexpired, and renews itself",
        ),
        _step(CERTIFICATE_READY, "Reconciling", _FIRST_VISIT),
        _step(CERTIFICATE_READY, "CertificatePending", "not read from Key Vault yet"),
        _step(CERTIFICATE_READY, "CertificateCreating", "`createIfMissing` started creating it"),
        _step(
            CERTIFICATE_READY,
            "CertificateReadFailed",
            "reading it failed for a reason Key Vault did not explain: retried",
            EventType.WARNING,
        ),
        _user(CERTIFICATE_READY, "CertificateNotFound", _FIX_CERT),
        _user(CERTIFICATE_READY, "CertificateDisabled", _FIX_CERT),
        _user(CERTIFICATE_READY, "CertificateExpired", _FIX_CERT),
        _user(CERTIFICATE_READY, "AutoRenewDisabled", _ADD_AUTORENEW),
        _user(CERTIFICATE_READY, "CertificateExpiringSoon", _ADD_AUTORENEW),
        _user(
            CERTIFICATE_READY,
            "AutoRenewStuck",
            "the renewal point passed a day ago and no new version appeared",
        ),
        _ready(NODES_READY, "ExtensionSucceeded", "every node's Key Vault extension is healthy"),
        _ready(NODES_READY, "NoNodes", "every node's Key Vault extension is healthy"),
        _step(NODES_READY, "Reconciling", _FIRST_VISIT),
        _step(NODES_READY, "PoolNotReady", "the pool does not exist yet"),
        _step(
            NODES_READY,
            "RotationPropagating",
            "a new version was seen; nodes have one polling interval to fetch it",
        ),
        _step(NODES_READY, "ExtensionTransitioning", _COMING_UP),
        _step(NODES_READY, "NodesAllocating", _COMING_UP),
        _step(NODES_READY, "FixPropagating", _FIX_PROPAGATING),
        _user(
            NODES_READY,
            "IdentityNotFound",
            "the extension's `msiClientId` matches no identity on the pool: check "
            "`spec.identity.clientId`",
        ),
        _user(
            NODES_READY,
            "VaultAccessDenied",
            "grant the pool's identity secrets get/list (or Key Vault Secrets User)",
        ),
        _user(
            NODES_READY,
            "IdentityNotOnPool",
            "the pool does not carry `spec.identity.resourceId` (the extension's `msiClientId` "
            "names an identity the nodes do not have)",
        ),
        _user(
            NODES_READY,
            "CertificateFetchFailing",
            "nodes cannot fetch certificates and do not say why; the control plane shows no "
            "cause: read the Key Vault extension's log on a node (the message says where)",
        ),
        _user(NODES_READY, "CertificateNotFound", "as named"),
        _user(NODES_READY, "CertificateDisabled", "as named"),
        _user(NODES_READY, "CertificateExpired", "as named"),
        _user(NODES_READY, "ExtensionFailed", "as named"),
        _user(NODES_READY, "ExtensionMissing", "as named"),
        _user(NODES_READY, "NodeUnusable", "as named"),
        # spec.verification: a Batch task on each node proves which version it holds
        _ready(
            NODES_READY,
            "RotationVerified",
            "(`spec.verification`) after a rotation, a Batch task on every node proved it holds "
            "the current version",
        ),
        _ready(
            NODES_READY,
            "RotationUnverified",
            "(`spec.verification`, `requireProof: false`) the extension reports every node "
            "healthy after a rotation but some nodes have no proof yet (busy slots, new nodes; "
            "the count is `status.nodes.verification.unverified`): proof completes as slots free",
        ),
        _user(
            NODES_READY,
            "NodesStale",
            "(`spec.verification`) a node proved to hold an older version (or none) after its "
            "polling interval: `batchcert status` lists them with the thumbprint found",
        ),
        _step(
            NODES_READY,
            "VerificationPending",
            "(`spec.verification`) no proof yet from some nodes: for at most the polling interval "
            "plus `taskTimeout` after a rotation, or, with `requireProof: true`, until every node "
            "is proven current (busy, new, or the task timed out): retried, never a failure",
        ),
    )
    for type_ in COMPONENT_TYPES:
        for name, action, meaning in _AZURE_FAULTS:
            if (type_, name) != (POOL_READY, "UpdateRequiresDisruption"):  # said above, better
                yield Reason(type_, name, action, EventType.WARNING, meaning)


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
