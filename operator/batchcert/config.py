"""The operator's one documented configuration, loaded from the environment (and CLI flags).

Every knob has a default that suits production on Azure public cloud; a custom cloud (Azure Stack
Hub, or the project's simulator) is described by a JSON *cloud file* so one flag points the
operator at it. Credentials are never configured here: they come from the environment the Azure
SDK reads (workload identity in a cluster, ``AZURE_CLIENT_ID``/``AZURE_CLIENT_SECRET`` elsewhere).

Environment variables (all optional):

=====================================  ==========================================================
``BATCHCERT_CLOUD``                    ``AzurePublicCloud`` (default), ``AzureChinaCloud``,
                                       ``AzureUSGovernment``
``BATCHCERT_CLOUD_FILE``               JSON with ``resourceManager``, ``authorityHost``,
                                       ``caBundle``, ``hostAliases``, ``hostsFile``, optional
                                       audiences: a custom cloud (overrides ``BATCHCERT_CLOUD``)
``BATCHCERT_CA_BUNDLE``                extra CA bundle (PEM) to trust for Azure endpoints
``BATCHCERT_HOST_ALIASES``             ``PATTERN=ADDRESS,...`` in-process host aliases
``BATCHCERT_TICK_SECONDS``             no per-object tick (one scheduler wakes objects when
                                       due): the certificate watcher's longest look-again wait,
                                       and a paused object's re-check (5)
``BATCHCERT_DRIFT_INTERVAL_SECONDS``   pool drift check when Ready (300)
``BATCHCERT_CERT_INTERVAL_SECONDS``    Key Vault read per certificate (300)
``BATCHCERT_NODE_INTERVAL_SECONDS``    node pass when healthy: list the nodes, read the
                                       extension of new, changed and unhealthy ones (300)
``BATCHCERT_NODE_RECHECK_SECONDS``     every healthy node's extension is re-read at least this
                                       often, a slice each pass; also the heartbeat of an
                                       unchanged ``status.nodes.lastCheckTime`` (3600)
``BATCHCERT_BUSY_INTERVAL_SECONDS``    checks while converging (15)
``BATCHCERT_NODE_CONCURRENCY``         concurrent Batch data-plane calls at most; halved on
                                       each throttled answer, regained one by one (8)
``BATCHCERT_CONCURRENT_TURNS``         reconciles (with their status writes) at once at most;
                                       the rest wait in the order they came due (64)
``BATCHCERT_ARM_WRITES_PER_SECOND``    self-imposed ARM write pace per subscription (10, burst 200)
``BATCHCERT_ARM_READS_PER_SECOND``     self-imposed ARM read pace per subscription (25, burst 250)
``BATCHCERT_EXPIRY_WARNING_DAYS``      warn when a non-renewing certificate expires within (30)
``BATCHCERT_RENEWAL_GRACE_SECONDS``    AutoRenew is "stuck" this long after it should fire (86400)
``BATCHCERT_VERIFICATION_ALLOWED``     ``false``: refuse ``spec.verification`` install-wide
                                       (``VerificationNotAllowed``), so the Azure role needs no
                                       Batch ``jobs/*`` (true)
``BATCHCERT_ROLE_PROPAGATION_SECONDS`` how long a new Key Vault role assignment is given to
                                       reach the data plane before the pool is created (600)
``BATCHCERT_TENANCY_FILE``             JSON tenancy policy (``batchcert.tenancy``): which
                                       namespaces may use the operator's own identity and what
                                       each may name; absent: one trust domain (every namespace)
=====================================  ==========================================================
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from batchcert.tenancy import TenancyPolicy, load_policy


@dataclass(frozen=True)
class Cloud:
    name: str
    resource_manager: str
    authority_host: str
    arm_audience: str = "https://management.azure.com/"
    batch_audience: str = "https://batch.core.windows.net/"
    ca_bundle: str | None = None
    host_aliases: Mapping[str, str] = field(default_factory=dict)
    # A hosts(5) file of exact names, re-read when it changes: a private DNS zone exported as a
    # file (the simulator publishes the vaults that exist in one, so a misspelt vault does not
    # resolve, as on Azure).
    hosts_file: str | None = None
    tenant_id: str | None = None
    # Certificates are read only from hosts under this suffix: the operator never sends its
    # credential to a "vault" that is not one of this cloud's Key Vaults.
    keyvault_dns_suffix: str = ".vault.azure.net"

    @property
    def is_custom(self) -> bool:
        return self.name == "Custom"

    @property
    def arm_scope(self) -> str:
        return self.arm_audience.rstrip("/") + "/.default"

    @property
    def batch_scope(self) -> str:
        # The Batch SDK really asks for the double slash; keep it identical.
        return (
            self.batch_audience + "/.default"
            if self.batch_audience.endswith("/")
            else (self.batch_audience + "//.default")
        )


PUBLIC_CLOUDS = {
    "AzurePublicCloud": Cloud(
        "AzurePublicCloud", "https://management.azure.com", "https://login.microsoftonline.com"
    ),
    "AzureChinaCloud": Cloud(
        "AzureChinaCloud",
        "https://management.chinacloudapi.cn",
        "https://login.chinacloudapi.cn",
        arm_audience="https://management.chinacloudapi.cn/",
        batch_audience="https://batch.chinacloudapi.cn/",
        keyvault_dns_suffix=".vault.azure.cn",
    ),
    "AzureUSGovernment": Cloud(
        "AzureUSGovernment",
        "https://management.usgovcloudapi.net",
        "https://login.microsoftonline.us",
        arm_audience="https://management.usgovcloudapi.net/",
        batch_audience="https://batch.core.usgovcloudapi.net/",
        keyvault_dns_suffix=".vault.usgovcloudapi.net",
    ),
}


def load_cloud_file(path: str | Path) -> Cloud:
    """A custom cloud from JSON (the simulator writes one in exactly this format)."""
    data: dict[str, Any] = json.loads(Path(path).read_text())
    try:
        return Cloud(
            name="Custom",
            resource_manager=str(data["resourceManager"]).rstrip("/"),
            authority_host=str(data["authorityHost"]).rstrip("/"),
            arm_audience=str(data.get("armAudience") or "https://management.azure.com/"),
            batch_audience=str(data.get("batchAudience") or "https://batch.core.windows.net/"),
            ca_bundle=data.get("caBundle"),
            host_aliases=dict(data.get("hostAliases") or {}),
            hosts_file=data.get("hostsFile"),
            tenant_id=data.get("tenantId"),
            keyvault_dns_suffix=str(data.get("keyVaultDnsSuffix") or ".vault.azure.net"),
        )
    except KeyError as exc:
        raise ValueError(f"cloud file {path} lacks {exc.args[0]!r}") from None


@dataclass(frozen=True)
class Config:
    cloud: Cloud = PUBLIC_CLOUDS["AzurePublicCloud"]
    tick_seconds: float = 5.0
    drift_interval_seconds: float = 300.0
    cert_interval_seconds: float = 300.0
    node_interval_seconds: float = 300.0
    # One extension read per node per hour: the issue-15 budget (≤ 12 + nodes requests per pool
    # per hour at the 300 s node interval) spent on detection, and the Key Vault extension's own
    # default polling interval (3600 s), so a node is re-read as often as it fetches.
    node_recheck_seconds: float = 3600.0
    busy_interval_seconds: float = 15.0
    # Progress detail (a reason moving while Ready/Stalled stand) waits this long to be written
    # with what follows it (reconcile/settle.py): verdicts are written at once.
    status_settle_seconds: float = 30.0
    node_concurrency: int = 8
    concurrent_turns: int = 64
    arm_writes_per_second: float = 10.0
    arm_write_burst: int = 200
    arm_reads_per_second: float = 25.0
    arm_read_burst: int = 250
    expiry_warning_days: float = 30.0
    renewal_grace_seconds: float = 86400.0
    # Give free heap pages back to the system every few seconds (batchcert.allocator): on unless
    # BATCHCERT_MALLOC_TRIM=false.
    malloc_trim: bool = True
    # Install-wide: may a BatchCertPool run verification tasks? Off, the Azure role needs no
    # Batch jobs/* (granted account-wide) and spec.verification is refused with a reason.
    verification_allowed: bool = True
    # Azure RBAC: "up to 10 minutes" for a new role assignment to take effect.
    role_propagation_seconds: float = 600.0
    tenancy: TenancyPolicy = field(default_factory=TenancyPolicy)

    def with_cloud(self, cloud: Cloud) -> Config:
        return replace(self, cloud=cloud)


_DEFAULTS = Config()
# Environment variable → Config field; the defaults are the dataclass's, written once above.
_SETTINGS = {
    "BATCHCERT_TICK_SECONDS": "tick_seconds",
    "BATCHCERT_DRIFT_INTERVAL_SECONDS": "drift_interval_seconds",
    "BATCHCERT_CERT_INTERVAL_SECONDS": "cert_interval_seconds",
    "BATCHCERT_NODE_INTERVAL_SECONDS": "node_interval_seconds",
    "BATCHCERT_NODE_RECHECK_SECONDS": "node_recheck_seconds",
    "BATCHCERT_BUSY_INTERVAL_SECONDS": "busy_interval_seconds",
    "BATCHCERT_STATUS_SETTLE_SECONDS": "status_settle_seconds",
    "BATCHCERT_NODE_CONCURRENCY": "node_concurrency",
    "BATCHCERT_CONCURRENT_TURNS": "concurrent_turns",
    "BATCHCERT_ARM_WRITES_PER_SECOND": "arm_writes_per_second",
    "BATCHCERT_ARM_READS_PER_SECOND": "arm_reads_per_second",
    "BATCHCERT_EXPIRY_WARNING_DAYS": "expiry_warning_days",
    "BATCHCERT_RENEWAL_GRACE_SECONDS": "renewal_grace_seconds",
    "BATCHCERT_ROLE_PROPAGATION_SECONDS": "role_propagation_seconds",
}


def _number(env: Mapping[str, str], name: str, default: float) -> float:
    raw = env.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = float(raw)
    except ValueError:
        raise ValueError(f"{name}={raw!r} is not a number") from None
    if value <= 0:
        raise ValueError(f"{name}={raw!r} must be positive")
    return value


def _switch(env: Mapping[str, str], name: str, default: bool) -> bool:
    raw = env.get(name)
    if raw is None or raw.strip() == "":
        return default
    text = raw.strip().lower()
    if text in ("true", "1", "yes"):
        return True
    if text in ("false", "0", "no"):
        return False
    raise ValueError(f"{name}={raw!r}: write true or false")


def load_config(env: Mapping[str, str] | None = None) -> Config:
    env = os.environ if env is None else env
    if env.get("BATCHCERT_CLOUD_FILE"):
        cloud = load_cloud_file(env["BATCHCERT_CLOUD_FILE"])
    else:
        name = env.get("BATCHCERT_CLOUD", "AzurePublicCloud")
        if name not in PUBLIC_CLOUDS:
            raise ValueError(
                f"BATCHCERT_CLOUD={name!r}: expected one of {', '.join(PUBLIC_CLOUDS)}"
            )
        cloud = PUBLIC_CLOUDS[name]
    if env.get("BATCHCERT_CA_BUNDLE"):
        cloud = replace(cloud, ca_bundle=env["BATCHCERT_CA_BUNDLE"])
    if env.get("BATCHCERT_HOST_ALIASES"):
        cloud = replace(
            cloud,
            host_aliases={
                **cloud.host_aliases,
                **parse_host_aliases(env["BATCHCERT_HOST_ALIASES"]),
            },
        )
    values: dict[str, Any] = {
        field: _number(env, name, getattr(_DEFAULTS, field)) for name, field in _SETTINGS.items()
    }
    values["node_concurrency"] = int(values["node_concurrency"])
    values["concurrent_turns"] = int(values["concurrent_turns"])
    values["verification_allowed"] = _switch(
        env, "BATCHCERT_VERIFICATION_ALLOWED", _DEFAULTS.verification_allowed
    )
    values["malloc_trim"] = _switch(env, "BATCHCERT_MALLOC_TRIM", _DEFAULTS.malloc_trim)
    return Config(cloud=cloud, tenancy=load_policy(env.get("BATCHCERT_TENANCY_FILE")), **values)


def parse_host_aliases(text: str) -> dict[str, str]:
    """Parse ``"*.sim.test=127.0.0.1,login.example=127.0.0.1"`` into a pattern → address map."""
    aliases: dict[str, str] = {}
    for item in text.replace(";", ",").split(","):
        item = item.strip()
        if not item:
            continue
        pattern, sep, address = item.partition("=")
        if not sep or not pattern.strip() or not address.strip():
            raise ValueError(f"host alias {item!r} is not of the form PATTERN=ADDRESS")
        aliases[pattern.strip().lower()] = address.strip()
    return aliases
