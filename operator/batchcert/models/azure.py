"""What the adapters read from Azure, as plain typed values (no SDK types cross this line).

Invariants: every timestamp is timezone-aware UTC; thumbprints are upper-case hex SHA-1;
``PoolState.body`` is the pool in its REST (camelCase) shape, as the translator compares it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any


@dataclass(frozen=True)
class IdentityInfo:
    resource_id: str
    client_id: str
    principal_id: str | None = None
    tenant_id: str | None = None


@dataclass(frozen=True)
class PoolState:
    resource_id: str
    body: dict[str, Any]
    etag: str | None

    @property
    def properties(self) -> dict[str, Any]:
        return dict(self.body.get("properties") or {})

    @property
    def provisioning_state(self) -> str | None:
        return self.properties.get("provisioningState")

    @property
    def allocation_state(self) -> str | None:
        return self.properties.get("allocationState")

    @property
    def current_dedicated_nodes(self) -> int:
        return int(self.properties.get("currentDedicatedNodes") or 0)

    @property
    def current_low_priority_nodes(self) -> int:
        return int(self.properties.get("currentLowPriorityNodes") or 0)

    @property
    def vm_size(self) -> str | None:
        value = self.properties.get("vmSize")
        return str(value) if value else None

    @property
    def _vm_configuration(self) -> dict[str, Any]:
        deployment = self.properties.get("deploymentConfiguration")
        vmc = (
            deployment.get("virtualMachineConfiguration") if isinstance(deployment, dict) else None
        )
        return vmc if isinstance(vmc, dict) else {}

    @property
    def image(self) -> str | None:
        return image_text(self._vm_configuration)

    @property
    def node_agent_sku_id(self) -> str | None:
        value = self._vm_configuration.get("nodeAgentSkuId")
        return str(value) if value else None

    @property
    def is_deleting(self) -> bool:
        return (self.provisioning_state or "").lower() == "deleting"

    @property
    def is_steady_at_zero(self) -> bool:
        return (
            (self.allocation_state or "").lower() == "steady"
            and self.current_dedicated_nodes == 0
            and self.current_low_priority_nodes == 0
        )

    def kept(self) -> PoolState:
        """What a reconcile reads of a sighting between turns (status.pool, the diagnosis: the
        pool's identities and its extensions' settings), not the whole body: about 10 KB per
        pool less to hold (drift is judged on a fresh read, never on a kept one)."""
        props = self.properties
        vmc = (props.get("deploymentConfiguration") or {}).get("virtualMachineConfiguration")
        extensions = (vmc or {}).get("extensions") if isinstance(vmc, dict) else None
        kept_props: dict[str, Any] = {
            key: props[key] for key in _KEPT_POOL_PROPERTIES if key in props
        }
        kept_vmc: dict[str, Any] = {
            key: vmc[key]
            for key in ("imageReference", "nodeAgentSkuId")
            if isinstance(vmc, dict) and key in vmc
        }
        if isinstance(extensions, list):
            kept_vmc["extensions"] = [
                {"name": e.get("name"), "settings": e.get("settings")}
                for e in extensions
                if isinstance(e, dict)
            ]
        if kept_vmc:
            kept_props["deploymentConfiguration"] = {"virtualMachineConfiguration": kept_vmc}
        body: dict[str, Any] = {"properties": kept_props}
        if "identity" in self.body:
            body["identity"] = self.body["identity"]
        return PoolState(self.resource_id, body, self.etag)


def image_text(vm_configuration: Any) -> str | None:
    """``publisher/offer/sku/version`` of a virtualMachineConfiguration, as users write it
    (Azure fills in ``latest`` when the version is omitted)."""
    image = vm_configuration.get("imageReference") if isinstance(vm_configuration, dict) else None
    if not isinstance(image, dict):
        return None
    parts = [str(image.get(k) or "") for k in ("publisher", "offer", "sku")]
    return "/".join([*parts, str(image.get("version") or "latest")])


_KEPT_POOL_PROPERTIES = (
    "vmSize",
    "provisioningState",
    "allocationState",
    "currentDedicatedNodes",
    "currentLowPriorityNodes",
    "metadata",  # the owner's uid: node verification acts only on a pool this object owns
)


@dataclass(frozen=True)
class LifetimeAction:
    action: str  # AutoRenew | EmailContacts
    lifetime_percentage: int | None = None
    days_before_expiry: int | None = None


@dataclass(frozen=True)
class CertificateFacts:
    """The current version of one Key Vault certificate: metadata only, never secret content."""

    vault_url: str
    name: str
    version: str
    thumbprint: str
    not_before: datetime | None
    not_after: datetime | None
    enabled: bool
    lifetime_actions: tuple[LifetimeAction, ...] = ()


@dataclass(frozen=True)
class CertificateReading:
    """One read of a certificate: facts, or the failure that prevented them (never both).

    A failure carries the error classifier's verdict (``batchcert.errors.classify``, applied by
    the adapter that read it): its reason and message are the failure's one meaning.
    """

    key: tuple[str, str]
    read_at: datetime
    facts: CertificateFacts | None = None
    error_status: int | None = None
    error_code: str | None = None
    error_message: str = ""
    failure_reason: str | None = None  # the classifier's reason (None: no failure, or unjudged)
    failure_message: str = ""  # the classifier's message

    @property
    def is_missing(self) -> bool:
        """Key Vault answered that the certificate does not exist."""
        return self.facts is None and self.error_status == 404


@dataclass(frozen=True)
class ExtensionStatus:
    code: str | None = None
    level: str | None = None
    display_status: str | None = None
    message: str | None = None
    time: datetime | None = None


@dataclass(frozen=True)
class NodeExtensionReport:
    """One compute node and the instance view of our Key Vault extension on it."""

    node_id: str
    node_state: str | None
    extension_found: bool
    provisioning_state: str | None = None
    statuses: tuple[ExtensionStatus, ...] = ()
    sub_statuses: tuple[ExtensionStatus, ...] = ()
    error: str | None = None  # a per-node read failure


@dataclass(frozen=True)
class NodesReading:
    read_at: datetime
    nodes: tuple[NodeExtensionReport, ...] = field(default_factory=tuple)
