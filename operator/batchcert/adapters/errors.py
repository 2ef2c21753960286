"""SDK exceptions → :class:`batchcert.errors.AzureCallError`, in one place for every adapter.

Each failure is logged here once (logger ``batchcert.azure``): service, operation, status, code
and Azure's message with anything token-shaped removed. A 404 is an answer the reconcile expects
(a pool before its creation, a certificate to create) and is judged by the condition it leads
to, so it is logged at DEBUG; throttling at INFO (the backoff handles it); the rest at WARNING.
"""

from __future__ import annotations

import email.utils
import json
import logging
import socket
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from typing import Any

from azure.core.exceptions import (
    AzureError,
    ClientAuthenticationError,
    HttpResponseError,
    ServiceRequestError,
    ServiceResponseError,
)

from batchcert.errors import AzureCallError
from batchcert.oplog import redact

log = logging.getLogger("batchcert.azure")


def _error_code_and_message(error: HttpResponseError) -> tuple[str | None, str]:
    code = getattr(error, "error", None) and getattr(error.error, "code", None)
    message = getattr(error, "error", None) and getattr(error.error, "message", None)
    response = error.response
    if (not code or not message) and response is not None:
        try:
            body: Any = json.loads(response.text())
        except (ValueError, TypeError):
            body = None
        if isinstance(body, dict):
            inner = body.get("error", body)
            if isinstance(inner, dict):
                code = code or inner.get("code")
                raw = inner.get("message")
                if isinstance(raw, dict):  # Batch data plane: {"lang", "value"}
                    raw = raw.get("value")
                message = message or raw
    return (str(code) if code else None), str(message or error.message or error.reason or "")


def retry_after_seconds(headers: Any) -> float | None:
    """The one reading of ``Retry-After``: delta-seconds or an HTTP-date (RFC 9110), else None."""
    raw = headers.get("Retry-After") or headers.get("retry-after")
    if raw is None:
        return None
    try:
        return max(0.0, float(raw))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(str(raw))
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - datetime.now(UTC)).total_seconds())


def _retry_after(error: HttpResponseError) -> float | None:
    response = error.response
    return None if response is None else retry_after_seconds(getattr(response, "headers", {}))


def _is_name_resolution(error: BaseException) -> bool:
    """A DNS failure anywhere in the chain (azure-core wraps aiohttp, which wraps gaierror)."""
    seen: set[int] = set()
    current: BaseException | None = error
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, socket.gaierror):
            return True
        nxt = getattr(current, "inner_exception", None) or current.__cause__ or current.__context__
        if nxt is None and getattr(current, "os_error", None) is not None:  # aiohttp connector
            nxt = current.os_error  # type: ignore[attr-defined]
        current = nxt if isinstance(nxt, BaseException) else None
    return False


def to_call_error(service: str, operation: str, error: Exception) -> AzureCallError:
    if isinstance(error, ClientAuthenticationError) and error.response is None:
        return AzureCallError(
            service=service,
            operation=operation,
            status=401,
            code="CredentialUnavailable",
            message=str(error).splitlines()[0][:500],
        )
    if isinstance(error, HttpResponseError) and error.response is not None:
        code, message = _error_code_and_message(error)
        return AzureCallError(
            service=service,
            operation=operation,
            status=error.status_code,
            code=code,
            message=message[:1000],
            retry_after=_retry_after(error),
        )
    if isinstance(error, (ServiceRequestError, ServiceResponseError, OSError, TimeoutError)):
        return AzureCallError(
            service=service,
            operation=operation,
            status=None,
            code="NameResolutionError" if _is_name_resolution(error) else type(error).__name__,
            message=str(error)[:500],
        )
    return AzureCallError(
        service=service,
        operation=operation,
        status=None,
        code=type(error).__name__,
        message=str(error)[:500],
    )


@asynccontextmanager
async def translating(service: str, operation: str) -> AsyncIterator[None]:
    """Run an SDK call; re-raise its failures as AzureCallError (bugs still raise as bugs)."""
    try:
        yield
    except AzureCallError:
        raise
    except (AzureError, OSError, TimeoutError) as exc:  # SDK and transport failures only:
        failure = to_call_error(service, operation, exc)
        log_failure(failure)
        raise failure from exc


def log_failure(failure: AzureCallError) -> None:
    status = failure.status
    level = logging.DEBUG if status == 404 else logging.INFO if status == 429 else logging.WARNING
    log.log(
        level,
        "Azure %s %s failed: %s %s: %s",
        failure.service,
        failure.operation,
        status if status is not None else "no answer",
        failure.code or "-",
        redact(failure.message),
        extra={
            "service": failure.service,
            "operation": failure.operation,
            "httpStatus": status,
            "code": failure.code,
        },
    )
