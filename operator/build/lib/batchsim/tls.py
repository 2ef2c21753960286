"""TLS for the simulator: a throw-away CA and server certificates for the ``*.sim.test`` names.

Role: make every simulated endpoint reachable over HTTPS with verification on (azure-core
refuses to send a bearer token over plain HTTP), under the host names real clients build.

Host names and certificates: one leaf covers ``login.sim.test``, ``management.sim.test``,
``*.vault.sim.test``, ``*.batch.sim.test`` and ``*.sim.test``. Batch accounts live at
``{account}.{region}.batch.sim.test`` (the real ``{account}.{region}.batch.azure.com`` shape),
two labels below ``batch.sim.test``, which no single wildcard covers; so the server picks, by
SNI, a per-region leaf for ``*.{region}.batch.sim.test``, issued on first use and cached.

Invariants: the CA key never leaves the state dir (or a private temporary dir); with a state
dir the same CA is reused across restarts so clients keep trusting the simulator.
"""

from __future__ import annotations

import re
import ssl
import threading
from pathlib import Path

import trustme

BASE_NAMES = (
    "login.sim.test",
    "management.sim.test",
    "*.vault.sim.test",
    "*.batch.sim.test",
    "*.sim.test",
    "localhost",
    "127.0.0.1",
)
_BATCH_HOST = re.compile(r"^[^.]+\.(?P<region>[a-z0-9-]+)\.batch\.sim\.test$", re.IGNORECASE)


class SimTls:
    def __init__(self, directory: Path) -> None:
        directory.mkdir(parents=True, exist_ok=True)
        cert_path, key_path = directory / "ca.pem", directory / "ca-key.pem"
        if cert_path.exists() and key_path.exists():
            self.ca = trustme.CA.from_pem(cert_path.read_bytes(), key_path.read_bytes())
        else:
            self.ca = trustme.CA(organization_name="batchcert Azure simulator")
            key_path.touch(mode=0o600)
            key_path.write_bytes(self.ca.private_key_pem.bytes())
            cert_path.write_bytes(self.ca.cert_pem.bytes())
        self.ca_bundle = cert_path
        self._regions: dict[str, ssl.SSLContext] = {}
        self._lock = threading.Lock()
        self.server_context = self._context(BASE_NAMES)
        self.server_context.sni_callback = self._pick_context

    def _context(self, names: tuple[str, ...]) -> ssl.SSLContext:
        ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        self.ca.issue_cert(*names).configure_cert(ctx)
        return ctx

    def region_context(self, region: str) -> ssl.SSLContext:
        region = region.lower()
        with self._lock:
            ctx = self._regions.get(region)
            if ctx is None:
                ctx = self._regions[region] = self._context(
                    (f"*.{region}.batch.sim.test", *BASE_NAMES)
                )
            return ctx

    def _pick_context(
        self, conn: ssl.SSLObject | ssl.SSLSocket, server_name: str | None, _ctx: ssl.SSLContext
    ) -> None:
        match = _BATCH_HOST.match(server_name or "")
        if match:
            conn.context = self.region_context(match["region"])

    def client_context(self) -> ssl.SSLContext:
        return ssl.create_default_context(cafile=str(self.ca_bundle))
