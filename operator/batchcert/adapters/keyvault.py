"""Key Vault certificates: metadata of the current version, never secret content.

Invariants: ``get_certificate`` (``GET /certificates/{name}/``) gives the current version, its
thumbprint and validity, and the policy with its lifetime actions; node verification also lists
the versions' thumbprints (``GET /certificates/{name}/versions``); the ``/secrets/`` endpoints
(private keys) are never touched.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from azure.core.rest import HttpRequest

from batchcert.adapters.azure_clients import AzureClients
from batchcert.adapters.errors import translating
from batchcert.errors import AzureCallError, classify
from batchcert.models.azure import CertificateFacts, CertificateReading, LifetimeAction


def _utc(moment: datetime | None) -> datetime | None:
    if moment is None:
        return None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


class KeyVaultAdapter:
    def __init__(self, clients: AzureClients) -> None:
        self._clients = clients

    async def get_certificate_facts(self, vault_url: str, name: str) -> CertificateFacts:
        client = self._clients.vault(vault_url)
        async with translating("keyvault", "certificates.get"):
            cert = await client.get_certificate(name)
        props = cert.properties
        if props is None:
            raise AzureCallError(
                service="keyvault",
                operation="certificates.get",
                status=200,
                code="InvalidResponse",
                message=f"certificate {name} has no properties",
            )
        actions: list[LifetimeAction] = []
        for action in (cert.policy.lifetime_actions if cert.policy else None) or []:
            kind = getattr(action.action, "value", action.action)
            actions.append(
                LifetimeAction(
                    action=str(kind),
                    lifetime_percentage=action.lifetime_percentage,
                    days_before_expiry=action.days_before_expiry,
                )
            )
        return CertificateFacts(
            vault_url=vault_url,
            name=name,
            version=str(props.version),
            thumbprint=(props.x509_thumbprint or b"").hex().upper(),
            not_before=_utc(props.not_before),
            not_after=_utc(props.expires_on),
            enabled=bool(props.enabled),
            lifetime_actions=tuple(actions),
        )

    async def list_version_thumbprints(self, vault_url: str, name: str) -> dict[str, str]:
        """Every version's SHA-1 thumbprint (upper-case hex) → version id (metadata only)."""
        client = self._clients.vault(vault_url)
        async with translating("keyvault", "certificates.listVersions"):
            return {
                (props.x509_thumbprint or b"").hex().upper(): str(props.version)
                async for props in client.list_properties_of_certificate_versions(name)
                if props.x509_thumbprint
            }

    async def begin_create_certificate(
        self, vault_url: str, name: str, body: dict[str, Any]
    ) -> None:
        """Start creating a certificate (``POST /certificates/{name}/create``).

        Only the initial request is sent (Key Vault answers 202 with a pending operation); the
        SDK's ``create_certificate`` would poll to completion, and a handler never waits on Azure.
        Completion is observed by later reads.
        """
        client = self._clients.vault(vault_url)
        async with translating("keyvault", "certificates.create"):
            response = await client.send_request(
                HttpRequest("POST", f"/certificates/{name}/create", json=body)
            )
            response.raise_for_status()

    async def read_certificate(
        self, key: tuple[str, str], vault_url: str, name: str, now: datetime
    ) -> CertificateReading:
        """A reading that carries either the facts or the failure (for status, not for raising)."""
        try:
            facts = await self.get_certificate_facts(vault_url, name)
        except AzureCallError as exc:
            return failed_reading(key, now, exc)
        return CertificateReading(key=key, read_at=now, facts=facts)


def failed_reading(
    key: tuple[str, str], now: datetime, error: AzureCallError
) -> CertificateReading:
    """A failed read, with the classifier's verdict carried along (its one meaning)."""
    verdict = classify(error)
    return CertificateReading(
        key=key,
        read_at=now,
        error_status=error.status,
        error_code=error.code,
        error_message=error.message,
        failure_reason=verdict.reason,
        failure_message=verdict.message,
    )
