"""The BatchCertPool ``spec``, parsed once at the handler boundary.

The CRD schema (``crds/batchcertpools.yaml``) is the first line of validation and applies the
defaults; these models repeat the defaults so that code paths fed by tests or older objects still
see a complete spec, and they normalise derived values (``poolName`` from the object name,
``osType`` from ``nodeAgentSkuId``, versionless secret URIs) in one place.

Invariants: a parsed spec always has a pool name, an OS type, and every certificate's versionless
``/secrets/`` URI; a versioned secret URI never parses (admission refuses it first).
"""

from __future__ import annotations

import re
from enum import StrEnum
from typing import Annotated
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator
from pydantic.alias_generators import to_camel

LINUX_CERT_STORE_LOCATION = "/var/lib/waagent/Microsoft.Azure.KeyVault"
WINDOWS_CERT_STORE_LOCATION = "LocalMachine"
WINDOWS_CERT_STORE_NAME = "MY"

_SECRET_PATH = re.compile(r"^/secrets/(?P<name>[0-9A-Za-z-]{1,127})(?:/(?P<version>[^/]+))?/?$")


class _Model(BaseModel):
    model_config = ConfigDict(
        alias_generator=to_camel, populate_by_name=True, extra="ignore", frozen=True
    )


class OsType(StrEnum):
    LINUX = "Linux"
    WINDOWS = "Windows"


class DeletionPolicy(StrEnum):
    DELETE = "Delete"
    ORPHAN = "Orphan"


class DisruptiveUpdatePolicy(StrEnum):
    """What to do when a change needs the pool at zero nodes (vmSize, image, extension, identity).

    ``Report`` (the default) never disrupts running work: the change is reported as
    ``UpdateRequiresDisruption`` and the pool keeps running what it runs. ``ScaleToZero`` resizes
    the pool to 0 nodes, applies the change, and scales back. ``Recreate`` deletes the pool and
    creates it again.
    """

    REPORT = "Report"
    SCALE_TO_ZERO = "ScaleToZero"
    RECREATE = "Recreate"


DEFAULT_SERVICE_ACCOUNT = "batchcert"


class Credentials(_Model):
    """Whose Azure identity the operator uses for this object: the namespace's ServiceAccount
    annotated ``azure.workload.identity/client-id`` (see the Tenancy section of the API)."""

    service_account_name: str = DEFAULT_SERVICE_ACCOUNT


class AccountRef(_Model):
    subscription_id: str
    resource_group: str
    name: str

    @property
    def resource_id(self) -> str:
        return (
            f"/subscriptions/{self.subscription_id}/resourceGroups/{self.resource_group}"
            f"/providers/Microsoft.Batch/batchAccounts/{self.name}"
        )


class ImageReference(_Model):
    publisher: str
    offer: str
    sku: str
    version: str = "latest"


class TaskSchedulingPolicy(_Model):
    node_fill_type: str = "Spread"


class FixedScale(_Model):
    target_dedicated_nodes: int = 0
    target_low_priority_nodes: int = 0
    resize_timeout: str = "PT15M"
    node_deallocation_option: str | None = None


class AutoScale(_Model):
    formula: str
    evaluation_interval: str = "PT15M"


class Scale(_Model):
    fixed: FixedScale | None = None
    auto: AutoScale | None = None

    @model_validator(mode="after")
    def _exactly_one(self) -> Scale:
        if (self.fixed is None) == (self.auto is None):
            raise ValueError("scale needs exactly one of fixed or auto")
        return self


class GrantSecretsAccess(_Model):
    """Give the pool's identity secrets get/list on these vaults (ARM resource ids)."""

    mode: str = "AccessPolicy"
    vaults: Annotated[list[str], Field(min_length=1)]


class PoolIdentity(_Model):
    resource_id: str
    client_id: str | None = None
    grant_secrets_access: GrantSecretsAccess | None = None

    @property
    def name(self) -> str:
        return self.resource_id.rstrip("/").rsplit("/", 1)[-1]


class CreateIfMissing(_Model):
    """Create the certificate, self-signed with an AutoRenew lifetime action, when it is absent."""

    subject: str
    validity_in_months: int = 12
    renew_at_lifetime_percentage: int = 80


class CertificateRef(_Model):
    """One Key Vault certificate to keep on every node.

    Given either as ``vaultUrl`` + ``name`` or as a versionless ``secretId``.
    """

    vault_url: str | None = None
    name: str | None = None
    secret_id: str | None = None
    certificate_store_location: str | None = None
    certificate_store_name: str | None = None
    create_if_missing: CreateIfMissing | None = None

    @model_validator(mode="after")
    def _vault_and_name(self) -> CertificateRef:
        if self.secret_id is not None:
            parts = urlsplit(self.secret_id)
            match = _SECRET_PATH.match(parts.path)
            if parts.scheme != "https" or not parts.netloc or match is None:
                raise ValueError(
                    f"secretId {self.secret_id!r} must be https://<vault>/secrets/<name>"
                )
            if match.group("version"):
                raise ValueError(
                    f"secretId {self.secret_id!r} pins one version and would never rotate; "
                    "use the versionless https://<vault>/secrets/<name>"
                )
            vault = f"https://{parts.netloc}"
            if self.vault_url is not None and self.vault_url.rstrip("/") != vault:
                raise ValueError("vaultUrl and secretId name different vaults")
            if self.name is not None and self.name != match.group("name"):
                raise ValueError("name and secretId name different certificates")
            object.__setattr__(self, "vault_url", vault)
            object.__setattr__(self, "name", match.group("name"))
        if not self.vault_url or not self.name:
            raise ValueError("a certificate needs vaultUrl and name, or secretId")
        object.__setattr__(self, "vault_url", self.vault_url.rstrip("/"))
        return self

    @property
    def vault(self) -> str:
        assert self.vault_url is not None
        return self.vault_url

    @property
    def cert_name(self) -> str:
        assert self.name is not None
        return self.name

    @property
    def key(self) -> tuple[str, str]:
        """Identifies the certificate across pools: one Key Vault read per key per interval."""
        return (self.vault.lower(), self.cert_name.lower())

    @property
    def versionless_secret_uri(self) -> str:
        return f"{self.vault}/secrets/{self.cert_name}"


class KeyVaultExtension(_Model):
    name: str = "KVExtensions"
    type_handler_version: str = "3.0"
    auto_upgrade_minor_version: bool = True
    polling_interval_seconds: int = 300
    require_initial_sync: bool = True

    @property
    def major_version(self) -> int:
        return int(self.type_handler_version.split(".", 1)[0])


_DURATION = re.compile(r"^P(?:\d+D)?(?:T(?:\d+H)?(?:\d+M)?(?:\d+S)?)?$")


class Verification(_Model):
    """Prove on every node, with a short Batch task, which certificate version it holds."""

    enabled: bool = False
    interval: str = "PT24H"
    task_timeout: str = "PT10M"
    require_proof: bool = False  # NodesReady waits for every node's proof (api.md)
    # No jobId: the operator names and marks its jobs itself (admission refuses the field; an
    # object stored before that still parses, the field is ignored).

    @field_validator("interval", "task_timeout")
    @classmethod
    def _duration(cls, value: str) -> str:
        if not _DURATION.match(value) or value in ("P", "PT"):
            raise ValueError(f"{value!r} is not an ISO-8601 duration such as PT10M")
        return value

    @property
    def interval_seconds(self) -> float:
        """``interval`` within ``INTERVAL_BOUNDS`` (admission refuses values outside them; an
        object stored before that is held to them here rather than trusted)."""
        return _bounded(self.interval, INTERVAL_BOUNDS)

    @property
    def task_timeout_seconds(self) -> float:
        """``taskTimeout`` within ``TASK_TIMEOUT_BOUNDS`` (as ``interval_seconds``)."""
        return _bounded(self.task_timeout, TASK_TIMEOUT_BOUNDS)


INTERVAL_BOUNDS = (15 * 60.0, 30 * 86400.0)  # PT15M..P30D, as the CRD's rule
TASK_TIMEOUT_BOUNDS = (60.0, 3600.0)  # PT1M..PT1H, as the CRD's rule


def _bounded(text: str, bounds: tuple[float, float]) -> float:
    low, high = bounds
    found = re.match(r"^P(?:(\d+)D)?(?:T(?:(\d+)H)?(?:(\d+)M)?(?:(\d+)S)?)?$", text)
    if found is None:
        return high
    # Digits beyond what any bound needs are clamped before int() (a 5000-digit string would
    # raise): 10 digits of days is already past every bound.
    d, h, m, s = (int(g or 0) if len(g or "") <= 10 else 10**10 for g in found.groups())
    return float(min(max(d * 86400 + h * 3600 + m * 60 + s, low), high))


class BatchCertPoolSpec(_Model):
    account: AccountRef
    pool_name: str | None = None
    vm_size: str
    image: ImageReference
    node_agent_sku_id: str
    os_type: OsType | None = None
    task_scheduling_policy: TaskSchedulingPolicy = TaskSchedulingPolicy()
    scale: Scale
    identity: PoolIdentity
    certificates: Annotated[list[CertificateRef], Field(min_length=1)]
    key_vault_extension: KeyVaultExtension = KeyVaultExtension()
    deletion_policy: DeletionPolicy = DeletionPolicy.DELETE
    disruptive_update_policy: DisruptiveUpdatePolicy = DisruptiveUpdatePolicy.REPORT
    verification: Verification = Verification()
    credentials: Credentials = Credentials()

    @field_validator("os_type", mode="before")
    @classmethod
    def _empty_os_type(cls, value: object) -> object:
        return value or None

    @property
    def resolved_os_type(self) -> OsType:
        if self.os_type is not None:
            return self.os_type
        if self.node_agent_sku_id.lower().startswith("batch.node.windows"):
            return OsType.WINDOWS
        return OsType.LINUX

    def resolved_pool_name(self, object_name: str) -> str:
        return self.pool_name or object_name


def parse_spec(spec: dict[str, object]) -> BatchCertPoolSpec:
    """Parse a spec dict from the API server (raises ``pydantic.ValidationError``)."""
    return BatchCertPoolSpec.model_validate(spec)
