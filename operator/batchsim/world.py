"""The simulated Azure resources: subscriptions, resource groups, Batch accounts and pools,
user-assigned identities, Key Vault vaults (their ARM side) and pool nodes.

Role: plain typed state and look-ups, shared by ARM, the Batch data plane, the node simulation
and the control API. No HTTP here and no behaviour beyond bookkeeping.

Invariants:
* ARM names are case-insensitive: every registry is keyed by the lower-cased name and keeps the
  name as created for display (ARM echoes the caller's casing of the first create).
* a pool's ``spec`` is exactly what the last PUT/PATCH stored (request shape: ``properties``
  without read-only fields, plus ``identity`` as given); read-only fields live in ``Pool``.
* a node keeps a snapshot of the pool's identities and extensions taken when it was created,
  because Azure applies identity and extension changes only to nodes created afterwards.
* everything here round-trips through ``snapshot`` / ``restore`` (JSON), for state dirs.
"""

from __future__ import annotations

import copy
import dataclasses
import types
import typing
from dataclasses import dataclass, field
from typing import Any

JsonDict = dict[str, Any]


@dataclass
class ResourceGroup:
    name: str
    location: str


@dataclass
class Subscription:
    subscription_id: str
    resource_groups: dict[str, ResourceGroup] = field(default_factory=dict)


@dataclass
class Identity:
    """A user-assigned managed identity (Microsoft.ManagedIdentity/userAssignedIdentities)."""

    subscription_id: str
    resource_group: str
    name: str
    location: str
    client_id: str
    principal_id: str
    tenant_id: str
    # federatedIdentityCredentials by name: {"issuer", "subject", "audiences"}
    federated_credentials: dict[str, JsonDict] = field(default_factory=dict)

    @property
    def arm_id(self) -> str:
        return (
            f"/subscriptions/{self.subscription_id}/resourceGroups/{self.resource_group}"
            f"/providers/Microsoft.ManagedIdentity/userAssignedIdentities/{self.name}"
        )


@dataclass
class AccessPolicy:
    tenant_id: str
    object_id: str
    permissions: dict[str, list[str]] = field(default_factory=dict)  # keys/secrets/certificates


@dataclass
class Vault:
    """The ARM side of a vault; its data plane lives in ``keyvault.KeyVaultService``."""

    subscription_id: str
    resource_group: str
    name: str
    location: str
    tenant_id: str
    access_policies: list[AccessPolicy] = field(default_factory=list)
    enable_rbac_authorization: bool = False

    @property
    def arm_id(self) -> str:
        return (
            f"/subscriptions/{self.subscription_id}/resourceGroups/{self.resource_group}"
            f"/providers/Microsoft.KeyVault/vaults/{self.name}"
        )

    def allows(self, object_id: str, kind: str, permission: str) -> bool:
        """Whether the access policies grant ``permission`` on ``kind`` to ``object_id``."""
        wanted = permission.lower()
        for policy in self.access_policies:
            if policy.object_id.lower() != object_id.lower():
                continue
            granted = {p.lower() for p in policy.permissions.get(kind, [])}
            if wanted in granted or "all" in granted:
                return True
        return False


@dataclass
class ExtensionRuntime:
    """What the Key Vault extension on one node has done so far (see ``kvextension.py``)."""

    name: str
    provisioning_state: str = "Creating"
    attempts: int = 0
    next_attempt: float = 0.0  # simulated POSIX seconds
    next_poll: float = 0.0
    last_poll: float = 0.0
    succeeded_once: bool = False
    error_code: str | None = None
    error_message: str | None = None
    status_time: float = 0.0
    # What this node really holds, whatever the instance view admits: observed URL -> version
    # last fetched (and when). Per-node certificate verification (tasks on nodes) reads it.
    versions: dict[str, str] = field(default_factory=dict)  # observed URL -> fetched version
    version_times: dict[str, float] = field(default_factory=dict)  # URL -> when fetched


@dataclass
class Node:
    node_id: str
    dedicated: bool
    state: str  # starting | idle | unusable | offline | leaving ...
    state_transition_time: float
    allocation_time: float
    ready_at: float  # when boot completes (simulated POSIX seconds)
    ip_address: str
    vm_size: str
    # Snapshot taken at creation (see module invariants).
    identities: dict[str, dict[str, str]] = field(default_factory=dict)  # armId -> ids
    extensions: list[JsonDict] = field(default_factory=list)
    extension_runtime: dict[str, ExtensionRuntime] = field(default_factory=dict)
    forced_state: str | None = None  # set by the control API ("take a node down")
    # Set through the control API for tests and demos (see ``batch/jobs.py``):
    fetch_blocked: bool = False  # the node cannot reach Key Vault: its extension keeps what it has
    busy_slots: int = 0  # task slots held by the user's own work (no task of ours fits)
    task_hang: bool = False  # tasks started here never finish by themselves (time out)
    task_output: str | None = None  # what tasks here print instead (a broken or hostile node)


@dataclass
class Pool:
    subscription_id: str
    resource_group: str
    account: str
    name: str
    spec: JsonDict  # {"properties": {...}, "identity": {...}?} as last written
    etag: str
    creation_time: float
    last_modified: float
    provisioning_state: str = "Succeeded"
    provisioning_state_transition_time: float = 0.0
    allocation_state: str = "Steady"
    allocation_state_transition_time: float = 0.0
    target_dedicated: int = 0
    target_low_priority: int = 0
    resize_due: float | None = None  # when the pending resize completes (simulated time)
    resize_errors: list[JsonDict] = field(default_factory=list)
    nodes: dict[str, Node] = field(default_factory=dict)
    node_serial: int = 0
    delete_operation: str | None = None
    delete_due: float | None = None

    @property
    def arm_id(self) -> str:
        return (
            f"/subscriptions/{self.subscription_id}/resourceGroups/{self.resource_group}"
            f"/providers/Microsoft.Batch/batchAccounts/{self.account}/pools/{self.name}"
        )

    def current_counts(self) -> tuple[int, int]:
        dedicated = sum(1 for n in self.nodes.values() if n.dedicated)
        return dedicated, len(self.nodes) - dedicated


@dataclass
class BatchTask:
    """A task on the Batch data plane (``batch/jobs.py`` moves it through its states)."""

    task_id: str
    body: JsonDict  # the add-task request as sent (commandLine, affinityInfo, constraints, ...)
    etag: str
    creation_time: float
    state: str = "active"  # active | running | completed (preparing is not modelled)
    state_transition_time: float = 0.0
    previous_state: str | None = None
    previous_state_transition_time: float | None = None
    node_id: str | None = None  # where it ran (not necessarily the affinity node)
    start_time: float | None = None
    end_time: float | None = None
    exit_code: int | None = None
    failure: JsonDict | None = None
    stdout: str = ""
    stderr: str = ""
    requeue_count: int = 0  # requeued when its node left while it ran


@dataclass
class BatchJob:
    job_id: str
    pool_id: str
    body: JsonDict
    etag: str
    creation_time: float
    state: str = "active"  # active | deleting | completed
    tasks: dict[str, BatchTask] = field(default_factory=dict)  # key: task id lower
    state_transition_time: float | None = None
    delete_due: float | None = None  # a job being deleted is gone from then on


@dataclass
class BatchAccount:
    subscription_id: str
    resource_group: str
    name: str
    location: str
    pools: dict[str, Pool] = field(default_factory=dict)
    jobs: dict[str, BatchJob] = field(default_factory=dict)  # key: job id lower
    # ARM's ``activeJobAndJobScheduleQuota`` (often 100-300 on real accounts), enforced by job add.
    active_job_quota: int = 300

    @property
    def arm_id(self) -> str:
        return (
            f"/subscriptions/{self.subscription_id}/resourceGroups/{self.resource_group}"
            f"/providers/Microsoft.Batch/batchAccounts/{self.name}"
        )


@dataclass
class DeleteOperation:
    """A pool deletion in flight, answered through its ``Location`` URL."""

    operation_id: str
    pool_arm_id: str
    subscription_id: str
    location: str
    due: float
    status: str = "InProgress"  # InProgress | Succeeded | Failed
    error: JsonDict | None = None


@dataclass
class NodeBehaviour:
    """How simulated nodes come and go (simulated seconds); changeable via the control API.

    Unconfirmed, all of them: real allocation, boot and deletion take minutes and vary; these
    are short defaults for interactive use. The DELETE ``Retry-After`` value is likewise a
    guess (the header's presence is documented, its value is not).
    """

    arrival_delay_s: float = 30.0  # resize start -> nodes allocated
    boot_s: float = 10.0  # allocated (starting) -> extension runs / idle
    removal_delay_s: float = 15.0  # shrink start -> nodes gone
    delete_duration_s: float = 10.0  # pool DELETE -> operation done
    extension_retry_interval_s: float = 10.0  # between failed Key Vault fetch attempts
    extension_max_attempts: int = 25  # requireInitialSync retries before Error
    capacity: int | None = None  # max nodes a resize can get (None: unlimited)
    lro_retry_after_s: int = 10  # Retry-After on the DELETE 202 and while polling
    # False (default): node extensions answer as recorded Azure traffic does (generic messages,
    # no cause, no per-version subStatus, integer levels; see batch/kvextension.py). True: the
    # old talkative model (per-cause messages, a JSON subStatus of fetched versions, Warning
    # after a failure that follows a success) for tests that need to see inside a node.
    talkative_extension: bool = False


# Key Vault data actions of the built-in roles (Azure built-in roles reference): kind →
# permissions, "all" for every permission of the kind. Other roles grant no data action.
KEY_VAULT_ROLE_DATA_ACTIONS: dict[str, dict[str, frozenset[str]]] = {
    # Key Vault Administrator
    "00482a5a-887f-4fb3-b363-3b7fe8e74483": {
        k: frozenset({"all"}) for k in ("keys", "secrets", "certificates")
    },
    # Key Vault Secrets User: read secret contents
    "4633458b-17de-408a-b874-0445c86b69e6": {"secrets": frozenset({"get", "list"})},
    # Key Vault Secrets Officer
    "b86a8fe4-44ce-4948-aee5-eccb2c155cd7": {"secrets": frozenset({"all"})},
    # Key Vault Certificates Officer
    "a4417e6f-fecd-4de8-b567-7b0420556985": {"certificates": frozenset({"all"})},
    # Key Vault Certificate User: read certificates, and their secret (private key) contents
    "db79e9a7-68ee-4b58-9aeb-b90e7c24fcba": {
        "certificates": frozenset({"get", "list"}),
        "secrets": frozenset({"get"}),
    },
    # Key Vault Reader: metadata only (never secret contents)
    "21090545-7ca7-4776-b22c-e363652d74d2": {
        "certificates": frozenset({"get", "list"}),
        "secrets": frozenset({"list"}),
        "keys": frozenset({"get", "list"}),
    },
}


@dataclass
class RoleAssignment:
    """A ``Microsoft.Authorization/roleAssignments`` resource; ``effective_at`` (simulated POSIX
    seconds) is when it has propagated: data-plane checks before then still refuse."""

    name: str  # a GUID
    scope: str  # an ARM id (subscription, resource group or resource)
    role_definition_id: str  # full id: /subscriptions/S/providers/Microsoft.Authorization/...
    principal_id: str
    principal_type: str
    created_at: float
    effective_at: float
    created_by: str = ""

    @property
    def arm_id(self) -> str:
        return f"{self.scope}/providers/Microsoft.Authorization/roleAssignments/{self.name}"

    @property
    def role_guid(self) -> str:
        return self.role_definition_id.rstrip("/").rsplit("/", 1)[-1].lower()

    def covers(self, resource_id: str) -> bool:
        """Whether the assignment's scope is ``resource_id`` or one of its parents."""
        scope = self.scope.rstrip("/").lower()
        target = resource_id.rstrip("/").lower()
        return not scope or target == scope or target.startswith(scope + "/")  # "/": root


@dataclass
class World:
    tenant_id: str
    subscriptions: dict[str, Subscription] = field(default_factory=dict)
    accounts: dict[str, BatchAccount] = field(default_factory=dict)  # key: sub/rg/name lower
    identities: dict[str, Identity] = field(default_factory=dict)  # key: ARM id lower
    vaults: dict[str, Vault] = field(default_factory=dict)  # key: vault name lower (global)
    operations: dict[str, DeleteOperation] = field(default_factory=dict)
    behaviour: NodeBehaviour = field(default_factory=NodeBehaviour)
    pool_behaviour: dict[str, NodeBehaviour] = field(default_factory=dict)  # pool ARM id lower
    list_page_size: int = 100
    role_assignments: dict[str, RoleAssignment] = field(default_factory=dict)  # key: name lower
    # How long a new role assignment takes to reach the data planes (Azure RBAC docs: "up to
    # 10 minutes"); simulated seconds, settable for tests.
    role_assignment_delay_s: float = 120.0
    # A test's other tenant winning a race for a job id: the next job add whose id matches this
    # regex finds a job of someone else's with that id already there (then it is cleared).
    foreign_job_id_regex: str | None = None

    # --- look-ups -------------------------------------------------------------------------

    def subscription(self, subscription_id: str) -> Subscription | None:
        return self.subscriptions.get(subscription_id.lower())

    def resource_group(self, subscription_id: str, name: str) -> ResourceGroup | None:
        sub = self.subscription(subscription_id)
        return sub.resource_groups.get(name.lower()) if sub else None

    def account(self, subscription_id: str, resource_group: str, name: str) -> BatchAccount | None:
        return self.accounts.get(_key(subscription_id, resource_group, name))

    def account_by_host_label(self, account: str, region: str) -> BatchAccount | None:
        for acct in self.accounts.values():
            if acct.name.lower() == account.lower() and _region(acct.location) == region.lower():
                return acct
        return None

    def identity(self, arm_id: str) -> Identity | None:
        return self.identities.get(arm_id.rstrip("/").lower())

    def vault(self, name: str) -> Vault | None:
        return self.vaults.get(name.lower())

    def vault_allows(
        self, vault: Vault, object_id: str, kind: str, permission: str, now: float
    ) -> bool:
        """Key Vault data-plane authorization: access policies, or on an RBAC vault (which
        ignores its access policies) the role assignments at or above it that have propagated."""
        if not vault.enable_rbac_authorization:
            return vault.allows(object_id, kind, permission)
        wanted = permission.lower()
        for assignment in self.role_assignments.values():
            if (
                assignment.principal_id.lower() != object_id.lower()
                or now < assignment.effective_at
                or not assignment.covers(vault.arm_id)
            ):
                continue
            granted = KEY_VAULT_ROLE_DATA_ACTIONS.get(assignment.role_guid, {}).get(
                kind, frozenset()
            )
            if wanted in granted or "all" in granted:
                return True
        return False

    def behaviour_for(self, pool: Pool) -> NodeBehaviour:
        return self.pool_behaviour.get(pool.arm_id.lower(), self.behaviour)

    def all_pools(self) -> list[Pool]:
        return [p for a in self.accounts.values() for p in a.pools.values()]

    # --- registration (seeding) -----------------------------------------------------------

    def add_resource_group(self, subscription_id: str, name: str, location: str) -> ResourceGroup:
        sub = self.subscriptions.setdefault(
            subscription_id.lower(), Subscription(subscription_id=subscription_id)
        )
        return sub.resource_groups.setdefault(name.lower(), ResourceGroup(name, location))

    def add_account(self, account: BatchAccount) -> BatchAccount:
        key = _key(account.subscription_id, account.resource_group, account.name)
        return self.accounts.setdefault(key, account)

    def add_identity(self, identity: Identity) -> Identity:
        return self.identities.setdefault(identity.arm_id.lower(), identity)

    def add_vault(self, vault: Vault) -> Vault:
        return self.vaults.setdefault(vault.name.lower(), vault)

    # --- persistence ----------------------------------------------------------------------

    def snapshot(self) -> JsonDict:
        return dataclasses.asdict(self)

    @classmethod
    def restore(cls, data: JsonDict) -> World:
        world = _from_json(cls, data)
        assert isinstance(world, World)
        return world


def region_label(location: str) -> str:
    """``West Europe`` / ``westeurope`` → ``westeurope`` (the host label Batch uses)."""
    return _region(location)


def _region(location: str) -> str:
    return location.replace(" ", "").lower()


def _key(*parts: str) -> str:
    return "/".join(p.lower() for p in parts)


def _from_json(tp: Any, data: Any) -> Any:
    """Rebuild dataclasses (and containers of them) from ``dataclasses.asdict`` output."""
    origin = typing.get_origin(tp)
    if dataclasses.is_dataclass(tp) and isinstance(tp, type):
        hints = typing.get_type_hints(tp)
        kwargs = {
            f.name: _from_json(hints[f.name], data[f.name])
            for f in dataclasses.fields(tp)
            if f.init and f.name in data
        }
        return tp(**kwargs)
    if origin is dict:
        _, value_type = typing.get_args(tp)
        return {k: _from_json(value_type, v) for k, v in data.items()}
    if origin is list:
        (item_type,) = typing.get_args(tp)
        return [_from_json(item_type, v) for v in data]
    if origin in (typing.Union, types.UnionType):
        if data is None:
            return None
        for arg in typing.get_args(tp):
            if arg is type(None):
                continue
            if dataclasses.is_dataclass(arg) or typing.get_origin(arg) is not None:
                return _from_json(arg, data)
        return data
    return copy.deepcopy(data)
