"""Per-namespace Azure credentials: Kubernetes workload identity federation, done by the operator
for the namespace of each object.

For a namespace's ServiceAccount annotated ``azure.workload.identity/client-id``, the credential
asks the API server for a short-lived token of that ServiceAccount (TokenRequest, audience
``api://AzureADTokenExchange``) and presents it to Entra as the client assertion of that client
id (``ClientAssertionCredential``: what ``WorkloadIdentityCredential`` does with a projected token
file, with the token requested instead of read). Entra accepts it only if the managed identity
has a federated identity credential for exactly this issuer and ``system:serviceaccount:<ns>:<sa>``
subject, so a namespace can act only as the identities that trust it.

Invariants:
* a ServiceAccount token is requested only when an access token must be fetched and the one held
  is missing or past 80 % of its life (kubelet's refresh rule for projected tokens);
* access tokens are cached by azure-identity per scope until shortly before they expire, and every
  SDK client's bearer policy caches them again: a steady namespace costs one exchange per scope
  (ARM, Batch, Key Vault) per token lifetime, not one per call;
* no token (ServiceAccount or Azure) is ever logged, put into an exception message or returned
  to the reconcile; only its expiry is kept beside it.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

from azure.core.credentials import AccessToken
from azure.core.exceptions import ClientAuthenticationError
from azure.identity.aio import ClientAssertionCredential

TOKEN_EXCHANGE_AUDIENCE = "api://AzureADTokenExchange"
CLIENT_ID_ANNOTATION = "azure.workload.identity/client-id"
TENANT_ID_ANNOTATION = "azure.workload.identity/tenant-id"
# The shortest lifetime the API server grants is 600 s; an hour is what kubelet projects.
SERVICE_ACCOUNT_TOKEN_SECONDS = 3600
_REFRESH_AT_FRACTION = 0.8


class ServiceAccountApi(Protocol):
    """The two Kubernetes calls a namespace credential needs (implemented over kopf's client)."""

    async def get_service_account(self, namespace: str, name: str) -> dict[str, Any] | None:
        """The ServiceAccount, or None when it does not exist."""
        ...

    async def create_token(
        self, namespace: str, name: str, *, audience: str, seconds: int
    ) -> tuple[str, float]:
        """A TokenRequest for the ServiceAccount: (token, expiry as POSIX seconds)."""
        ...


@dataclass(frozen=True)
class WorkloadIdentity:
    """Which Entra application a namespace's ServiceAccount stands for (no secret in here)."""

    namespace: str
    service_account: str
    client_id: str
    tenant_id: str | None = None

    @property
    def subject(self) -> str:
        return f"system:serviceaccount:{self.namespace}:{self.service_account}"


def read_workload_identity(
    namespace: str, name: str, service_account: dict[str, Any] | None
) -> WorkloadIdentity | None:
    """The identity a ServiceAccount is annotated with; None when it has none (or is absent)."""
    if service_account is None:
        return None
    annotations = (service_account.get("metadata") or {}).get("annotations") or {}
    client_id = str(annotations.get(CLIENT_ID_ANNOTATION) or "").strip()
    if not client_id:
        return None
    tenant_id = str(annotations.get(TENANT_ID_ANNOTATION) or "").strip() or None
    return WorkloadIdentity(namespace, name, client_id, tenant_id)


class ServiceAccountAssertion:
    """The ServiceAccount token presented to Entra, requested again before it grows old."""

    def __init__(
        self,
        api: ServiceAccountApi,
        identity: WorkloadIdentity,
        *,
        clock: Callable[[], float] = time.time,
        seconds: int = SERVICE_ACCOUNT_TOKEN_SECONDS,
    ) -> None:
        self._api = api
        self._identity = identity
        self._clock = clock
        self._seconds = seconds
        self._token: str | None = None
        self._issued_at = 0.0
        self._expires_at = 0.0
        self._lock = asyncio.Lock()
        self.requests = 0  # TokenRequests made (for tests and the request budget)

    def _fresh(self) -> bool:
        life = self._expires_at - self._issued_at
        return (
            self._token is not None
            and self._clock() < self._issued_at + life * _REFRESH_AT_FRACTION
        )

    async def ensure_fresh(self) -> None:
        if self._fresh():
            return
        async with self._lock:
            if self._fresh():
                return
            issued = self._clock()
            token, expires_at = await self._api.create_token(
                self._identity.namespace,
                self._identity.service_account,
                audience=TOKEN_EXCHANGE_AUDIENCE,
                seconds=self._seconds,
            )
            self.requests += 1
            self._token, self._issued_at, self._expires_at = token, issued, expires_at

    def current(self) -> str:
        """For ``ClientAssertionCredential``'s (synchronous) callback; fresh by construction."""
        if self._token is None:  # never reached: get_token refreshes first
            raise RuntimeError("no ServiceAccount token requested yet")
        return self._token


class NamespaceCredential:
    """An ``AsyncTokenCredential`` acting as one namespace's workload identity."""

    def __init__(
        self,
        identity: WorkloadIdentity,
        assertion: ServiceAccountAssertion,
        *,
        tenant_id: str,
        **kwargs: Any,
    ) -> None:
        self.identity = identity
        self.assertion = assertion
        self._inner = ClientAssertionCredential(
            identity.tenant_id or tenant_id, identity.client_id, assertion.current, **kwargs
        )

    async def get_token(self, *scopes: str, **kwargs: Any) -> AccessToken:
        try:
            await self.assertion.ensure_fresh()
        except Exception as exc:
            # As the SDK reports a credential that cannot sign in: the adapters classify it
            # (AuthenticationFailed) instead of an exception escaping the turn.
            raise ClientAuthenticationError(
                message=f"no token for ServiceAccount {self.identity.namespace}/"
                f"{self.identity.service_account}: {type(exc).__name__}"
            ) from None
        return await self._inner.get_token(*scopes, **kwargs)

    async def close(self) -> None:
        await self._inner.close()

    async def __aenter__(self) -> NamespaceCredential:
        return self

    async def __aexit__(self, *args: Any) -> None:
        await self.close()
