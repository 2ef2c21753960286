"""ServiceAccount reads and TokenRequests, through kopf's own API client.

The operator talks to the API server only through kopf (its login, its retries, its session); the
two calls per-namespace credentials need (``adapters.credentials.ServiceAccountApi``) are made
the way ``statuswriter.write_status`` patches status: with kopf's own client, reached through
``kopfprivate`` (kopf's private API in one module, kopf pinned). They must run inside kopf's handler or daemon tasks, where
kopf has put its API context.

Invariants: a missing ServiceAccount is None, not an error; the token is returned to the
credential and never logged (kopf logs request URLs, never bodies).
"""

from __future__ import annotations

import logging
from datetime import datetime
from typing import Any

import kopf

from batchcert.kopfprivate import get_json, post_json
from batchcert.models.timestamps import parse_rfc3339

log = logging.getLogger(__name__)


class KopfServiceAccounts:
    def __init__(self, settings: kopf.OperatorSettings) -> None:
        self._settings = settings

    async def get_service_account(self, namespace: str, name: str) -> dict[str, Any] | None:
        return await get_json(
            self._settings, f"/api/v1/namespaces/{namespace}/serviceaccounts/{name}", log
        )

    async def create_token(
        self, namespace: str, name: str, *, audience: str, seconds: int
    ) -> tuple[str, float]:
        answer = await post_json(
            self._settings,
            f"/api/v1/namespaces/{namespace}/serviceaccounts/{name}/token",
            {
                "apiVersion": "authentication.k8s.io/v1",
                "kind": "TokenRequest",
                "spec": {"audiences": [audience], "expirationSeconds": seconds},
            },
            log,
        )
        status = (answer or {}).get("status") or {}
        expires: datetime | None = parse_rfc3339(status.get("expirationTimestamp"))
        token = status.get("token")
        if not token or expires is None:
            raise RuntimeError(
                f"TokenRequest for {namespace}/{name} answered without a token or its expiry"
            )
        return str(token), expires.timestamp()
