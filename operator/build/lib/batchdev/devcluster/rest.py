"""A minimal HTTPS client for the handful of calls the dev cluster makes itself.

Readiness probes, the ``default`` namespace check and the ServiceAccount/TokenRequest calls need
five requests, not a Kubernetes client: this stdlib client keeps ``up`` fast and the dev tooling
free of client-version coupling. It always verifies the server against the cluster CA and
authenticates with the admin client certificate. Every request has a timeout.
"""

from __future__ import annotations

import http.client
import json
import ssl
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from batchdev.devcluster.errors import DevClusterError


@dataclass(frozen=True)
class Response:
    status: int
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)

    @property
    def text(self) -> str:
        return self.body.decode("utf-8", "replace")


class AdminClient:
    """Requests to ``https://127.0.0.1:<port>`` as the admin (``O=system:masters``)."""

    def __init__(
        self, port: int, ca_file: Path, cert_file: Path, key_file: Path, timeout: float = 5.0
    ) -> None:
        self._port = port
        self._timeout = timeout
        self._context = ssl.create_default_context(cafile=str(ca_file))
        self._context.load_cert_chain(str(cert_file), str(key_file))

    def request(self, method: str, path: str, body: Any = None) -> Response:
        """One request; raises ``OSError`` (refused, timeout, TLS) as the socket does."""
        conn = http.client.HTTPSConnection(
            "127.0.0.1", self._port, context=self._context, timeout=self._timeout
        )
        try:
            headers = {"Accept": "application/json"}
            payload = None
            if body is not None:
                payload = json.dumps(body).encode()
                headers["Content-Type"] = "application/json"
            conn.request(method, path, body=payload, headers=headers)
            response = conn.getresponse()
            return Response(response.status, response.read())
        finally:
            conn.close()

    def get(self, path: str) -> Response:
        return self.request("GET", path)

    def create(self, path: str, body: Any) -> Response:
        """POST ``body``; an object that already exists (409) counts as created."""
        response = self.request("POST", path, body)
        if response.status not in (200, 201, 202, 409):
            raise DevClusterError(f"POST {path} failed: HTTP {response.status}: {response.text}")
        return response
