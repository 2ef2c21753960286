"""A self-contained HTTPS harness for the Key Vault data plane tests, and its own smoke test.

Serves ``KeyVaultService`` for ``*.vault.sim.test`` and the simulated Entra ID for
``login.sim.test`` on one loopback port with a throw-away ``trustme`` CA, in a background thread
(the sync SDK blocks), so the real SDK clients can be driven with TLS verification on.
Interim: once ``tests/sim/conftest.py`` offers the shared simulator fixture, the Key Vault tests
move to it; this harness only composes the simulator's own parts (no behaviour of its own).

Covers (the smoke test): the harness's TLS chain verifies and a vault host reaches the service.
"""

from __future__ import annotations

import asyncio
import itertools
import ssl
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import requests
import trustme
from aiohttp import web
from azure.identity import ClientSecretCredential
from azure.identity.aio import ClientSecretCredential as AioClientSecretCredential
from azure.keyvault.certificates import (
    CertificateClient,
    CertificatePolicy,
    CertificatePolicyAction,
    LifetimeAction,
)
from azure.keyvault.certificates.aio import CertificateClient as AioCertificateClient

from batchcert.hostaliases import install_host_aliases
from batchcert.sim.clock import SimClock
from batchcert.sim.entra import AppRegistration, Directory, build_entra_app
from batchcert.sim.keyvault import KeyVaultService
from batchcert.sim.requestlog import RequestLog
from batchcert.sim.throttle import KeyVaultThrottle
from batchcert.sim.tokens import TokenAuthority, normalize_audience

TENANT = "72f988bf-86f1-41af-91ab-2d7cd011db47"
DAY = 86_400
ALL_CERTIFICATE_PERMISSIONS = {"get", "list", "create", "update", "delete", "purge", "recover"}


@dataclass
class KeyVaultSim:
    port: int
    ca_path: str
    clock: SimClock
    log: RequestLog
    kv: KeyVaultService
    throttle: KeyVaultThrottle
    directory: Directory
    authority: TokenAuthority
    operator: AppRegistration
    tenant_id: str = TENANT
    grants: dict[tuple[str, str], dict[str, set[str]]] = field(default_factory=dict)
    _names: Iterator[int] = field(default_factory=itertools.count)

    def authorize(self, vault: str, object_id: str, kind: str, permission: str) -> bool:
        return permission in self.grants.get((vault.lower(), object_id.lower()), {}).get(kind, ())

    def vault_url(self, vault: str) -> str:
        return f"https://{vault}.vault.sim.test:{self.port}"

    def new_vault(self, *, grant_operator: bool = True) -> str:
        name = f"kvtest{next(self._names)}"
        self.kv.ensure_vault(name, tenant_id=self.tenant_id)
        if grant_operator:
            self.grants[(name, self.operator.object_id.lower())] = {
                "certificates": set(ALL_CERTIFICATE_PERMISSIONS),
                "secrets": {"get", "list"},
            }
        return name

    def shared_vault(self) -> str:
        """One vault holding certificate ``c1``, for read-only tests."""
        if self.kv.store.get_vault("kvshared") is None:
            self.kv.ensure_vault("kvshared", tenant_id=self.tenant_id)
            self.grants[("kvshared", self.operator.object_id.lower())] = {
                "certificates": set(ALL_CERTIFICATE_PERMISSIONS),
                "secrets": {"get"},
            }
            self.kv.create_certificate("kvshared", "c1", subject="CN=c1")
        return "kvshared"

    def register_app(self, name: str) -> AppRegistration:
        return self.directory.register(name, client_secret=f"{name}-secret")

    def _credential_args(self, app: AppRegistration | None) -> dict[str, Any]:
        app = app or self.operator
        return {
            "tenant_id": self.tenant_id,
            "client_id": app.client_id,
            "client_secret": app.secrets[0],
            "authority": f"https://login.sim.test:{self.port}",
            "disable_instance_discovery": True,
            "connection_verify": self.ca_path,
        }

    def credential(self, app: AppRegistration | None = None) -> ClientSecretCredential:
        return ClientSecretCredential(**self._credential_args(app))

    def aio_credential(self, app: AppRegistration | None = None) -> AioClientSecretCredential:
        return AioClientSecretCredential(**self._credential_args(app))

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

    def fresh_service(self) -> KeyVaultService:
        return KeyVaultService(
            self.clock, self.authority.verify_token, self.authorize, RequestLog(clock=self.clock)
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


def _serve(app: web.Application, context: ssl.SSLContext) -> tuple[int, Any]:
    """Run ``app`` on 127.0.0.1 in a thread; returns (port, stop)."""
    loop = asyncio.new_event_loop()
    runner = web.AppRunner(app)
    ready = threading.Event()
    port: list[int] = []

    def run() -> None:
        asyncio.set_event_loop(loop)
        loop.run_until_complete(runner.setup())
        site = web.TCPSite(runner, "127.0.0.1", 0, ssl_context=context)
        loop.run_until_complete(site.start())
        port.append(runner.addresses[0][1])
        ready.set()
        loop.run_forever()

    thread = threading.Thread(target=run, name="kv-harness", daemon=True)
    thread.start()
    if not ready.wait(timeout=30):
        raise RuntimeError("the Key Vault harness did not start within 30 s")

    def stop() -> None:
        asyncio.run_coroutine_threadsafe(runner.cleanup(), loop).result(timeout=10)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(timeout=10)

    return port[0], stop


@contextmanager
def running_kvsim(workdir: Path) -> Iterator[KeyVaultSim]:
    """Start Entra + Key Vault on one HTTPS port; stop them on exit."""
    install_host_aliases({"*.sim.test": "127.0.0.1"})
    ca = trustme.CA()
    ca_path = workdir / "ca.pem"
    ca.cert_pem.write_to_path(str(ca_path))
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("*.vault.sim.test", "vault.sim.test", "login.sim.test").configure_cert(context)

    clock = SimClock(scale=0.0)  # frozen: only advance() moves simulated time
    log = RequestLog(clock=clock)
    # Tokens run on real time by design (tokens.py); the simulated clock is for certificates.
    authority = TokenAuthority(time.time, TENANT, issuer=f"https://sts.windows.net/{TENANT}/")
    directory = Directory(tenant_id=TENANT)
    operator = directory.register("operator", client_secret="operator-secret")
    throttle = KeyVaultThrottle(clock)
    holder: dict[str, KeyVaultSim] = {}
    kv = KeyVaultService(
        clock,
        authority.verify_token,
        lambda *args: holder["sim"].authorize(*args),
        log,
        tenant_id=TENANT,
        throttle=throttle,
    )
    port_box: list[int] = []

    def record(
        operation: str, request: web.Request, status: int, principal: str | None, body: Any
    ) -> None:
        log.record(
            "entra",
            operation,
            request.method,
            request.path,
            dict(request.query),
            None,
            status,
            principal,
            body=body,
        )

    app = web.Application()
    app.add_domain(
        "login.sim.test",
        build_entra_app(
            directory, authority, lambda: f"https://login.sim.test:{port_box[0]}", record
        ),
    )
    app.add_domain("*.vault.sim.test", kv.sub_app())
    port, stop = _serve(app, context)
    port_box.append(port)
    directory.resources.add(normalize_audience(kv.audience(port)))
    holder["sim"] = KeyVaultSim(
        port=port,
        ca_path=str(ca_path),
        clock=clock,
        log=log,
        kv=kv,
        throttle=throttle,
        directory=directory,
        authority=authority,
        operator=operator,
    )
    try:
        yield holder["sim"]
    finally:
        stop()


@pytest.fixture(scope="module")
def kvsim(tmp_path_factory: pytest.TempPathFactory) -> Iterator[KeyVaultSim]:
    with running_kvsim(tmp_path_factory.mktemp("kv-harness")) as sim:
        yield sim


@pytest.mark.sim
def test_harness_serves_vault_hosts_over_verified_tls(kvsim: KeyVaultSim) -> None:
    vault = kvsim.new_vault()
    response = requests.get(
        f"{kvsim.vault_url(vault)}/certificates?api-version=7.4", verify=kvsim.ca_path, timeout=10
    )
    assert response.status_code == 401  # reached the service, TLS verified against the CA
    unknown = requests.get(
        f"{kvsim.vault_url('nosuchvault')}/certificates?api-version=7.4",
        verify=kvsim.ca_path,
        timeout=10,
    )
    assert unknown.status_code == 404
    assert unknown.json()["error"]["code"] == "VaultNotFound"
