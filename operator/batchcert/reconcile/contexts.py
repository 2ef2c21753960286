"""Whose Azure identity acts for an object: resolved once at the start of each turn.

For an object in namespace N the operator acts as N's workload identity: the ServiceAccount
``spec.credentials.serviceAccountName`` (default ``batchcert``) annotated
``azure.workload.identity/client-id``. Without one, it acts as itself only if the install's
tenancy policy lets N do so. Before either, the policy's allow-lists for N are checked against
what the spec names. The answer is an *Azure context* (everything that talks to Azure with one
credential: clients, adapters, shared facts, the certificate watcher, the reconciler) or a
``Refusal`` that the turn writes as ``Ready=False NotAllowedForNamespace`` without any Azure call.

Contexts are kept per credential, so every cache inside one (identities, account endpoints,
vaults, certificate readings, their single-flight reads) is keyed by the credential that read it:
a fact one namespace may read is never served to another. Namespaces that fall back to the
operator's identity share the operator's context, as they always did (one trust domain).

Invariants: no Azure call happens here (only Kubernetes reads of ServiceAccounts, remembered for
``ttl`` seconds, absence included); a context is built once per (namespace, ServiceAccount,
client id) and reused; a ServiceAccount annotated with a client id is always used, never silently
replaced by the operator's identity.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from pydantic import ValidationError

from batchcert.adapters.credentials import (
    CLIENT_ID_ANNOTATION,
    ServiceAccountApi,
    WorkloadIdentity,
    read_workload_identity,
)
from batchcert.models.spec import DEFAULT_SERVICE_ACCOUNT, parse_spec
from batchcert.reconcile.lookups import SingleFlightCache
from batchcert.tenancy import (
    CREDENTIALS_UNAVAILABLE,
    NOT_ALLOWED,
    Refusal,
    TenancyPolicy,
    check_allowed,
)

C = TypeVar("C")
__all__ = ["NOT_ALLOWED", "AzureContexts", "Resolved"]


@dataclass(frozen=True)
class Resolved(Generic[C]):
    context: C
    identity: WorkloadIdentity | None  # None: the operator's own identity


def service_account_of(spec: dict[str, Any]) -> str:
    credentials = spec.get("credentials") or {}
    name = credentials.get("serviceAccountName") if isinstance(credentials, dict) else None
    return str(name or DEFAULT_SERVICE_ACCOUNT)


class AzureContexts(Generic[C]):
    def __init__(
        self,
        policy: TenancyPolicy,
        accounts: ServiceAccountApi,
        operator_context: C,
        build: Callable[[WorkloadIdentity], C],
        *,
        ttl: float = 60.0,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self._policy = policy
        self._accounts = accounts
        self.operator_context = operator_context
        self._build = build
        self._contexts: dict[WorkloadIdentity, C] = {}
        # (identity or None,): "no such ServiceAccount" is an answer, remembered like the rest.
        self._service_accounts: SingleFlightCache[
            tuple[str, str], tuple[WorkloadIdentity | None]
        ] = SingleFlightCache(ttl, monotonic)

    @property
    def contexts(self) -> list[C]:
        return [self.operator_context, *self._contexts.values()]

    async def resolve(self, namespace: str, spec: dict[str, Any]) -> Resolved[C] | Refusal:
        try:
            parsed = parse_spec(spec)
        except ValidationError:
            parsed = None  # the reconcile refuses it (InvalidSpec) before any Azure call
        if parsed is not None:
            refusal = check_allowed(self._policy, namespace, parsed)
            if refusal is not None:
                return refusal
        name = service_account_of(spec)
        try:
            identity = await self._workload_identity(namespace, name)
            if identity is not None:
                context = self._contexts.get(identity)
                if context is None:
                    context = self._contexts[identity] = self._build(identity)
                return Resolved(context, identity)
        except Exception as exc:  # the API server's answer or our own configuration
            # Never the operator's identity instead: a namespace with its own identity must not
            # silently act as the operator. The message carries no token (none was obtained).
            return Refusal(
                "serviceAccount",
                f"the ServiceAccount {namespace}/{name} could not be used: "
                f"{type(exc).__name__}: {str(exc)[:300]} (the operator needs get on "
                "serviceaccounts and create on serviceaccounts/token, and AZURE_TENANT_ID)",
                CREDENTIALS_UNAVAILABLE,
            )
        if self._policy.may_use_operator_identity(namespace):
            return Resolved(self.operator_context, None)
        return Refusal(
            "operatorIdentityNamespaces",
            f"namespace {namespace} has no ServiceAccount {name} annotated {CLIENT_ID_ANNOTATION} "
            "and the operator's tenancy policy does not let it use the operator's own identity "
            "(rule operatorIdentityNamespaces): create the ServiceAccount for the team's managed "
            "identity (docs/operating.md, Tenancy: per-team setup)",
        )

    async def _workload_identity(self, namespace: str, name: str) -> WorkloadIdentity | None:
        async def load() -> tuple[WorkloadIdentity | None]:
            found = await self._accounts.get_service_account(namespace, name)
            return (read_workload_identity(namespace, name, found),)

        answer = await self._service_accounts.get((namespace, name), load)
        return answer[0] if answer else None
