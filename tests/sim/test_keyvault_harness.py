"""Helpers for the Key Vault data plane tests on the shared simulator, and their smoke test.

``KeyVaultSim`` wraps the ``sim`` fixture of ``tests/sim/conftest.py`` (a whole simulator on a
background thread, HTTPS, demo world, frozen clock) with what the Key Vault tests need: fresh
vaults with access policies for the operator principal, real ``CertificateClient``s signed in
through the simulated Entra ID with ``ClientSecretCredential``, and the node-facing
``resolve_secret`` run on the simulator's own thread. Seeding and time go through the control
API, as any other client of the simulator would.

Covers (the smoke test): the TLS chain verifies and vault hosts reach the Key Vault service,
unknown vaults do not.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from typing import Any

import pytest
import requests
from azure.identity import ClientSecretCredential
from azure.identity.aio import ClientSecretCredential as AioClientSecretCredential
from azure.keyvault.certificates import (
    CertificateClient,
    CertificatePolicy,
    CertificatePolicyAction,
    LifetimeAction,
)
from azure.keyvault.certificates.aio import CertificateClient as AioCertificateClient

from batchsim.keyvault.service import KeyVaultService
from batchsim.keyvault.store import SecretResolution
from batchsim.requestlog import RequestLog
from batchsim.server import RunningSimulator

DAY = 86_400
ALL_CERTIFICATE_PERMISSIONS = ["get", "list", "create", "update", "delete", "purge", "recover"]
_names = itertools.count()


@dataclass(frozen=True)
class Principal:
    client_id: str
    object_id: str
    secret: str


@dataclass
class KeyVaultSim:
    running: RunningSimulator
    location: str = "westeurope"
    _shared: str | None = field(default=None, init=False)

    # --- addresses and principals -------------------------------------------------------
    @property
    def info(self) -> dict[str, Any]:
        return self.running.info

    @property
    def port(self) -> int:
        return self.running.port

    @property
    def ca_path(self) -> str:
        return self.running.ca_bundle

    @property
    def tenant_id(self) -> str:
        return str(self.info["tenantId"])

    @property
    def audience(self) -> str:
        return str(self.info["keyVaultAudience"])

    @property
    def operator(self) -> Principal:
        op = self.info["principals"]["operator"]
        return Principal(op["clientId"], op["objectId"], op["clientSecret"])

    @property
    def control(self) -> Any:
        return self.running.control

    @property
    def log(self) -> RequestLog:
        return self.running.sim.log  # thread-safe reads

    def vault_url(self, vault: str) -> str:
        return f"https://{vault}.vault.sim.test:{self.port}"

    def register_app(self, name: str) -> Principal:
        made = self.control.add_principal(name, client_secret=f"{name}-secret")
        return Principal(made["clientId"], made["objectId"], f"{name}-secret")

    # --- seeding through the control API ---------------------------------------------------
    def new_vault(self, *, grant_operator: bool = True) -> str:
        name = f"kvtest{next(_names)}"
        demo = self.info["demo"]
        self.control.add_vault(demo["subscriptionId"], demo["resourceGroup"], name, self.location)
        if grant_operator:
            self.control.grant(
                name,
                self.operator.object_id,
                {"certificates": ALL_CERTIFICATE_PERMISSIONS, "secrets": ["get", "list"]},
            )
        return name

    def shared_vault(self) -> str:
        """A vault holding certificate ``c1``, for tests that only read or fail."""
        if self._shared is None:
            self._shared = self.new_vault()
            self.control.add_certificate(self._shared, "c1", subject="CN=c1")
        return self._shared

    # --- time -----------------------------------------------------------------------------
    def now(self) -> float:
        return self.running.sim.clock.timestamp()

    def advance_to(self, instant: float) -> None:
        self.control.advance(max(0.0, instant - self.now()))

    # --- the simulator's own thread -------------------------------------------------------
    @property
    def kv(self) -> KeyVaultService:
        service = self.running.sim.kv
        assert isinstance(service, KeyVaultService)
        return service

    def resolve_secret(self, url: str) -> SecretResolution:
        return self.running.call(lambda: self.kv.resolve_secret(url))  # type: ignore[no-any-return]

    def tick(self) -> int:
        return self.running.call(self.kv.tick)  # type: ignore[no-any-return]

    def set_issue_delay(self, seconds: float) -> None:
        self.running.call(lambda: setattr(self.kv.store, "issue_delay_s", seconds))

    # --- real SDK clients -----------------------------------------------------------------
    def _credential_args(self, app: Principal | None) -> dict[str, Any]:
        app = app or self.operator
        return {
            "tenant_id": self.tenant_id,
            "client_id": app.client_id,
            "client_secret": app.secret,
            "authority": self.info["authorityHost"],
            "disable_instance_discovery": True,
            "connection_verify": self.ca_path,
        }

    def credential(self, app: Principal | None = None) -> ClientSecretCredential:
        return ClientSecretCredential(**self._credential_args(app))

    def aio_credential(self, app: Principal | None = None) -> AioClientSecretCredential:
        return AioClientSecretCredential(**self._credential_args(app))

    def token(self) -> str:
        return self.credential().get_token(self.audience + "/.default").token

    def client(
        self, vault: str, credential: Any = None, api_version: str | None = None
    ) -> CertificateClient:
        extra = {"api_version": api_version} if api_version else {}
        return CertificateClient(
            self.vault_url(vault),
            credential or self.credential(),
            connection_verify=self.ca_path,
            **extra,
        )

    def aio_client(self, vault: str, credential: Any) -> AioCertificateClient:
        return AioCertificateClient(
            self.vault_url(vault), credential, connection_verify=self.ca_path
        )


def policy(subject: str = "CN=web", months: int = 12, **kwargs: Any) -> CertificatePolicy:
    return CertificatePolicy(
        issuer_name="Self", subject=subject, validity_in_months=months, **kwargs
    )


def auto_renew(percentage: int | None = None, days: int | None = None) -> list[LifetimeAction]:
    return [
        LifetimeAction(
            action=CertificatePolicyAction.auto_renew,
            lifetime_percentage=percentage,
            days_before_expiry=days,
        )
    ]


def versions(client: CertificateClient, name: str) -> list[Any]:
    return list(client.list_properties_of_certificate_versions(name))


@pytest.fixture
def kvsim(sim: RunningSimulator) -> KeyVaultSim:
    return KeyVaultSim(sim)


@pytest.mark.sim
def test_vault_hosts_reach_the_key_vault_service_over_verified_tls(kvsim: KeyVaultSim) -> None:
    vault = kvsim.new_vault()
    response = requests.get(
        f"{kvsim.vault_url(vault)}/certificates?api-version=7.4", verify=kvsim.ca_path, timeout=10
    )
    assert response.status_code == 401  # reached the service; TLS verified against the CA
    assert "WWW-Authenticate" in response.headers
    unknown = requests.get(
        f"{kvsim.vault_url('nosuchvault')}/certificates?api-version=7.4",
        verify=kvsim.ca_path,
        timeout=10,
    )
    assert unknown.status_code == 404
    assert unknown.json()["error"]["code"] == "VaultNotFound"
