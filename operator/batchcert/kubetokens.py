"""ServiceAccount reads and TokenRequests, through kopf's own API client.

The operator talks to the API server only through kopf (its login, its retries, its session); the
two calls per-namespace credentials need (``adapters.credentials.ServiceAccountApi``) are made
the way ``handlers.write_status`` patches status: with kopf's ``_cogs.clients.api`` (a private
module, pinned in constraints.txt). They must run inside kopf's handler or daemon tasks, where
kopf has put its API context.

Invariants: a missing ServiceAccount is None, not an error; the token is returned to the
credential and never logged (kopf logs request URLs, never bodies).
"""

from __future__ import annotations

import logging
from datetime import datetime
from typing import Any

import kopf

from batchcert.models.timestamps import parse_rfc3339

log = logging.getLogger(__name__)


class KopfServiceAccounts:
    def __init__(self, settings: kopf.OperatorSettings) -> None:
        self._settings = settings

    async def get_service_account(self, namespace: str, name: str) -> dict[str, Any] | None:
        from kopf._cogs.clients import api
        from kopf._cogs.clients.errors import APINotFoundError

        try:
            found = await api.get(
                url=f"/api/v1/namespaces/{namespace}/serviceaccounts/{name}",
                settings=self._settings,
                logger=log,
            )
        except APINotFoundError:
            return None
        return dict(found)

    async def create_token(
        self, namespace: str, name: str, *, audience: str, seconds: int
    ) -> tuple[str, float]:
        from kopf._cogs.clients import api

        answer = await api.post(
            url=f"/api/v1/namespaces/{namespace}/serviceaccounts/{name}/token",
            payload={
                "apiVersion": "authentication.k8s.io/v1",
                "kind": "TokenRequest",
                "spec": {"audiences": [audience], "expirationSeconds": seconds},
            },
            settings=self._settings,
            logger=log,
        )
        status = (answer or {}).get("status") or {}
        expires: datetime | None = parse_rfc3339(status.get("expirationTimestamp"))
        token = status.get("token")
        if not token or expires is None:
            raise RuntimeError(
                f"TokenRequest for {namespace}/{name} answered without a token or its expiry"
            )
        return str(token), expires.timestamp()
