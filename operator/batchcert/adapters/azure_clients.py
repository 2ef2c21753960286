"""Azure SDK clients, built once per process and shared by every object.

One credential for the process (workload identity in a cluster, a client secret elsewhere, or the
SDK's default chain); ARM clients per subscription, Key Vault clients per vault, Batch data-plane
clients per account endpoint. Custom clouds (Azure Stack Hub, the project's simulator) get their
authority with instance discovery disabled and their CA bundle; Key Vault's challenge-resource
check is never weakened.

Every client and the credential share ONE aiohttp session whose connector holds ONE SSL context
(the default trust store plus the cloud's CA bundle, if any). Passing a CA bundle *path* to each
client instead makes azure-core build a fresh SSL context per request, so aiohttp can never reuse
a connection: a TLS handshake per call and memory growing with every node pass (measured by
``benchmarks/``).

Every SDK client (ARM, Key Vault, Batch) sends ``batchcert-operator/<version>`` in front of the
SDK's own User-Agent, plus ``BATCHCERT_USER_AGENT_SUFFIX`` when set (e.g. ``shard/0-of-2``): how a
shard's requests are told apart in Azure's logs and the simulator's counters. It is an environment
variable read here, not a flag: the shard is a CLI argument of ``batchcert run`` that does not
reach the clients.

Invariants: clients are created lazily and reused; construct inside the running event loop;
:meth:`AzureClients.close` closes every client, the credential, then the shared session.
"""

from __future__ import annotations

import os
import ssl
from typing import Any

import aiohttp
from azure.batch.aio import BatchClient
from azure.core.credentials_async import AsyncTokenCredential
from azure.core.pipeline.transport import AioHttpTransport
from azure.identity.aio import (
    ClientSecretCredential,
    DefaultAzureCredential,
    WorkloadIdentityCredential,
)
from azure.keyvault.certificates.aio import CertificateClient
from azure.mgmt.batch.aio import BatchManagementClient

from batchcert import __version__
from batchcert.adapters.credentials import (
    NamespaceCredential,
    ServiceAccountApi,
    ServiceAccountAssertion,
    WorkloadIdentity,
)
from batchcert.adapters.pacing import ArmPacer, ArmPacingPolicy, CountingPolicy
from batchcert.adapters.resolver import AliasResolver
from batchcert.config import Config

# The SDK retries transient failures itself (honouring Retry-After); keep that short so a storm
# surfaces in conditions and our own jittered backoff takes over instead of ten silent retries.
_SDK_RETRY_TOTAL = 3

USER_AGENT_SUFFIX_ENV = "BATCHCERT_USER_AGENT_SUFFIX"


def build_user_agent(env: dict[str, str] | None = None) -> str:
    """What the operator prepends to the SDK's User-Agent: its name and version, and the
    deployment's suffix (a shard tag) when ``BATCHCERT_USER_AGENT_SUFFIX`` is set."""
    env = dict(os.environ if env is None else env)
    suffix = env.get(USER_AGENT_SUFFIX_ENV, "").strip()
    return f"batchcert-operator/{__version__}" + (f" {suffix}" if suffix else "")


def build_ssl_context(ca_bundle: str | None) -> ssl.SSLContext:
    """The default trust store, plus a custom cloud's CA bundle when it has one."""
    context = ssl.create_default_context()
    if ca_bundle:
        context.load_verify_locations(cafile=ca_bundle)
    return context


def _authority_kwargs(config: Config, env: dict[str, str], transport: Any) -> dict[str, Any]:
    kwargs: dict[str, Any] = {}
    if transport is not None:
        kwargs["transport"] = transport
    if config.cloud.is_custom:
        kwargs["authority"] = config.cloud.authority_host
        kwargs["disable_instance_discovery"] = True
    elif env.get("AZURE_AUTHORITY_HOST") is None:
        kwargs["authority"] = config.cloud.authority_host
    return kwargs


def build_namespace_credential(
    config: Config,
    identity: WorkloadIdentity,
    api: ServiceAccountApi,
    *,
    env: dict[str, str] | None = None,
    transport: Any = None,
) -> NamespaceCredential:
    """The credential of a namespace's workload identity, in the operator's tenant unless the
    ServiceAccount names another (``azure.workload.identity/tenant-id``)."""
    env = dict(os.environ if env is None else env)
    tenant = env.get("AZURE_TENANT_ID") or config.cloud.tenant_id or ""
    if not (identity.tenant_id or tenant):
        raise ValueError("no tenant id: set AZURE_TENANT_ID or the cloud file's tenantId")
    return NamespaceCredential(
        identity,
        ServiceAccountAssertion(api, identity),
        tenant_id=tenant,
        **_authority_kwargs(config, env, transport),
    )


def build_credential(
    config: Config, env: dict[str, str] | None = None, transport: Any = None
) -> AsyncTokenCredential:
    """The process credential, from the environment only (never from the spec or a file we read)."""
    env = dict(os.environ if env is None else env)
    cloud = config.cloud
    kwargs = _authority_kwargs(config, env, transport)
    tenant = env.get("AZURE_TENANT_ID") or cloud.tenant_id
    client_id = env.get("AZURE_CLIENT_ID")
    if env.get("AZURE_FEDERATED_TOKEN_FILE") and tenant and client_id:
        return WorkloadIdentityCredential(
            tenant_id=tenant,
            client_id=client_id,
            token_file_path=env["AZURE_FEDERATED_TOKEN_FILE"],
            **kwargs,
        )
    if env.get("AZURE_CLIENT_SECRET") and tenant and client_id:
        return ClientSecretCredential(tenant, client_id, env["AZURE_CLIENT_SECRET"], **kwargs)
    kwargs.pop("disable_instance_discovery", None)
    return DefaultAzureCredential(exclude_interactive_browser_credential=True, **kwargs)


class AzureClients:
    """Lazily built, shared SDK clients."""

    def __init__(
        self,
        config: Config,
        credential: AsyncTokenCredential | None = None,
        *,
        shared_with: AzureClients | None = None,
    ) -> None:
        """``shared_with``: another namespace's clients whose connection pool and ARM pacer
        these share (one process, one set of connections, one self-imposed pace); the clients
        themselves, and so every cached token, stay per credential."""
        self.config = config
        self._owns_session = shared_with is None
        self._arm: dict[str, BatchManagementClient] = {}
        self._vaults: dict[str, CertificateClient] = {}
        self._batch: dict[str, BatchClient] = {}
        if shared_with is not None:
            self._session: aiohttp.ClientSession = shared_with._session
            self.credential: AsyncTokenCredential = credential or shared_with.credential
            self.pacer: ArmPacer = shared_with.pacer
            self.user_agent: str = shared_with.user_agent
            return
        # At most 32 connections per Azure host: each TLS connection holds a 256 KiB read
        # buffer, and 100 converging pools opened 45 to the simulator without a bound; 32 at ARM's
        # 0.1-0.2 s latency carry far more than ARM's buckets allow (25 reads/s, 10 writes/s).
        connector_kwargs: dict[str, Any] = {
            "ssl": build_ssl_context(config.cloud.ca_bundle),
            "limit_per_host": 32,
        }
        if config.cloud.host_aliases or config.cloud.hosts_file:
            connector_kwargs["resolver"] = AliasResolver(
                config.cloud.host_aliases, hosts_file=config.cloud.hosts_file
            )
        self._session = aiohttp.ClientSession(connector=aiohttp.TCPConnector(**connector_kwargs))
        self.credential = credential or build_credential(config, transport=self._transport())
        self.pacer = ArmPacer(
            write_rate=config.arm_writes_per_second,
            write_burst=config.arm_write_burst,
            read_rate=config.arm_reads_per_second,
            read_burst=config.arm_read_burst,
        )
        self.user_agent = build_user_agent()

    def for_credential(self, credential: AsyncTokenCredential) -> AzureClients:
        """Clients acting with ``credential`` over this process's connections."""
        return AzureClients(self.config, credential, shared_with=self)

    def transport(self) -> AioHttpTransport:
        """A transport over the shared session (for a credential built elsewhere)."""
        return self._transport()

    def _transport(self) -> AioHttpTransport:
        return AioHttpTransport(session=self._session, session_owner=False)

    def _client_kwargs(self) -> dict[str, Any]:
        # Bounded timeouts: an unreachable endpoint must become a condition in seconds, not minutes.
        return {
            "transport": self._transport(),
            "user_agent": self.user_agent,
            "retry_total": _SDK_RETRY_TOTAL,
            "connection_timeout": 10,
            "read_timeout": 60,
        }

    def arm(self, subscription_id: str) -> BatchManagementClient:
        key = subscription_id.lower()
        if key not in self._arm:
            self._arm[key] = BatchManagementClient(
                self.credential,
                subscription_id,
                base_url=self.config.cloud.resource_manager,
                credential_scopes=[self.config.cloud.arm_scope],
                per_retry_policies=[ArmPacingPolicy(self.pacer)],
                **self._client_kwargs(),
            )
        return self._arm[key]

    def vault(self, vault_url: str) -> CertificateClient:
        key = vault_url.lower().rstrip("/")
        if key not in self._vaults:
            self._vaults[key] = CertificateClient(
                vault_url,
                self.credential,
                per_retry_policies=[CountingPolicy(self.pacer, "keyvault")],
                **self._client_kwargs(),
            )
        return self._vaults[key]

    def batch(self, account_endpoint: str) -> BatchClient:
        endpoint = account_endpoint if "://" in account_endpoint else f"https://{account_endpoint}"
        key = endpoint.lower()
        if key not in self._batch:
            self._batch[key] = BatchClient(
                endpoint,
                self.credential,
                credential_scopes=[self.config.cloud.batch_scope],
                per_retry_policies=[CountingPolicy(self.pacer, "batch")],
                **self._client_kwargs(),
            )
        return self._batch[key]

    async def close(self) -> None:
        for arm in self._arm.values():
            await arm.close()
        for vault in self._vaults.values():
            await vault.close()
        for batch in self._batch.values():
            await batch.close()
        self._arm.clear()
        self._vaults.clear()
        self._batch.clear()
        await self.credential.close()
        if self._owns_session:
            await self._session.close()
