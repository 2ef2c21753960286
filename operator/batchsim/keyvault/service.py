"""The simulated Key Vault data plane (certificates, and secret reads for nodes), over HTTP.

Role: serve ``https://{vault}.vault.sim.test[:PORT]`` (vault name from the Host header) the way
Key Vault answers the real ``azure-keyvault-certificates`` client, and give the rest of the
simulator a Python control API (seed certificates, renew, disable, delete, tick the clock) and
``resolve_secret`` for the node logic. State lives in ``keyvault_store``, bodies are rendered by
``keyvault_render``, policies are validated by ``keyvault_policy``, X.509 by ``x509``.

Mount either ``app.add_domain("*.vault.sim.test", service.sub_app())`` or call
``await service.handle(request)`` from a Host-dispatching handler.

Request pipeline (order matters, and is documented because tests depend on it):
1. lazy ``tick()`` (pending creates complete, due AutoRenew actions fire);
2. unknown vault → 404 ``VaultNotFound`` (Unconfirmed: the real failure is a DNS error);
3. no ``Authorization`` → 401 challenge; a bad/expired/wrong-audience/wrong-tenant token → 401
   with the challenge too, so the SDK's challenge policy behaves as against Azure;
4. ``api-version`` missing or unsupported → 400 ``BadParameter``;
5. unknown path → 404, wrong method → 405; known but not simulated → 501;
6. throttling (GETs per vault per window, ``throttle.KeyVaultThrottle``) → 429 ``Throttled``
   "Reason: VaultRequestTypeLimitReached", **without** Retry-After (as a real answer showed);
7. access policy via the ``authorize`` callback → 403 ``Forbidden``/``AccessDenied``;
8. the body is parsed (malformed JSON or wrong types → 400 ``BadParameter``), the operation runs.

The challenge ``resource`` is ``https://vault.sim.test[:PORT]`` with the port the client used.
Why: the SDK's ``_validate_challenge_resource`` requires the request's netloc (host *and* port)
to end with ``"." + netloc of the resource``; ``kv1.vault.sim.test:8443`` ends with
``.vault.sim.test:8443``, so the check passes unweakened, and a token is then requested for
scope ``https://vault.sim.test:8443/.default``. That resource (trailing slash optional) is the
only audience accepted; tokens for any other audience get 401 AKV10022.

Invariants: every request is logged once to the ``RequestLog`` (service ``keyvault``, the REST
operationId as operation); every authenticated GET of ``/secrets/...`` is logged with
``secret_read=True`` whatever its outcome, so "the operator never read a secret" is provable;
no handler ever answers 500 for client input.
"""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol
from urllib.parse import urlsplit

from aiohttp import web

from batchsim.clock import SimClock
from batchsim.entra.tokens import Principal, TokenError, decode_jwt_unverified
from batchsim.keyvault.ops import Context, Route, build_routes
from batchsim.keyvault.policy import KeyVaultError, validate_lifetime_actions
from batchsim.keyvault.store import KeyVaultStore, SecretResolution
from batchsim.keyvault.x509 import KeyPool
from batchsim.requestlog import RequestLog
from batchsim.throttle import KeyVaultThrottle

# What the pinned SDK sends (azure-keyvault-certificates 4.12.0 → 2026-04-01) plus the stable
# versions the behaviour doc lists.
SUPPORTED_API_VERSIONS = ("7.4", "7.5", "7.6", "2025-07-01", "2026-04-01")
LATEST_API_VERSION = "2026-04-01"
SERVICE_VERSION = "1.9.sim"
_JSON = "application/json; charset=utf-8"
_VAULT_NAME = re.compile(r"^[a-z][a-z0-9-]{1,22}[a-z0-9]$")


class Throttle(Protocol):
    def take(self, vault: str, method: str) -> int | None: ...


@dataclass
class _Answer:
    status: int
    body: Any = None
    headers: dict[str, str] = field(default_factory=dict)


class KeyVaultService:
    """The Key Vault data plane of the simulator; see the module docstring."""

    def __init__(
        self,
        clock: SimClock,
        verify_token: Callable[[str | None, str], Principal],
        authorize: Callable[[str, str, str, str], bool],
        log: RequestLog,
        *,
        tenant_id: str | None = None,
        dns_suffix: str = "vault.sim.test",
        login_host: str = "login.sim.test",
        throttle: Throttle | None = None,
        key_pool: KeyPool | None = None,
        issue_delay_s: float = 0.0,
        page_size: int = 25,
    ) -> None:
        self.clock = clock
        self.verify_token = verify_token
        self.authorize = authorize
        self.log = log
        # The tenant announced in challenges for vaults seeded without one; None announces no
        # tenant, so the client keeps its own.
        self.tenant_id = tenant_id
        self.dns_suffix = dns_suffix.lower().strip(".")
        self.login_host = login_host
        self.throttle: Throttle = throttle if throttle is not None else KeyVaultThrottle(clock)
        self.store = KeyVaultStore(clock, key_pool=key_pool, issue_delay_s=issue_delay_s)
        self.page_size = page_size
        self._routes: list[Route] = build_routes(self.store, page_size)

    # ------------------------------------------------------------- addressing
    def vault_url(self, vault: str, port: int | None = None) -> str:
        return f"https://{vault.lower()}.{self.dns_suffix}{_port_suffix(port)}"

    def audience(self, port: int | None = None) -> str:
        """The challenge ``resource``, and the only token audience accepted, for a port."""
        return f"https://{self.dns_suffix}{_port_suffix(port)}"

    def vault_from_host(self, host: str) -> str | None:
        hostname = host.rsplit(":", 1)[0] if not host.endswith("]") else host
        hostname = hostname.lower().rstrip(".")
        label, dot, rest = hostname.partition(".")
        return label if dot and rest == self.dns_suffix and label else None

    # ------------------------------------------------------------ control API
    def ensure_vault(
        self, name: str, *, tenant_id: str | None = None, location: str = "westus"
    ) -> None:
        if not _VAULT_NAME.match(name.lower()):
            raise ValueError(f"invalid vault name {name!r} (3-24 letters, digits, dashes)")
        self.store.ensure_vault(name, tenant_id=tenant_id or self.tenant_id, location=location)

    def remove_vault(self, name: str) -> None:
        self.store.remove_vault(name)

    def create_certificate(
        self,
        vault: str,
        name: str,
        *,
        subject: str,
        validity_months: int = 12,
        lifetime_action: dict[str, Any] | None = None,
        enabled: bool = True,
        content_type: str = "application/x-pkcs12",
        dns_names: list[str] | None = None,
    ) -> str:
        """Create (or add a version to) a self-signed certificate at once; returns the version.

        ``lifetime_action`` is one REST-shaped action, e.g. ``{"trigger": {"lifetime_percentage":
        80}, "action": {"action_type": "AutoRenew"}}``; None means no lifetime action at all
        (unlike the REST API, which defaults to AutoRenew at 80%).
        """
        policy = {
            "x509_props": {
                "subject": subject,
                "validity_months": validity_months,
                "sans": {"dns_names": dns_names or []},
            },
            "secret_props": {"contentType": content_type},
            "issuer": {"name": "Self"},
            "lifetime_actions": [lifetime_action] if lifetime_action is not None else [],
        }
        cert = self.store.create(vault, name, policy, enabled=enabled, delay_s=0.0)
        assert cert.current is not None
        return cert.current.version

    def renew_certificate(self, vault: str, name: str) -> str:
        return self.store.renew(vault, name).version

    def set_certificate_enabled(
        self, vault: str, name: str, enabled: bool, *, version: str | None = None
    ) -> None:
        self.store.update_version(vault, name, version, enabled=enabled)

    def delete_certificate(self, vault: str, name: str, *, purge: bool = False) -> None:
        self.store.delete(vault, name, purge=purge)

    def set_policy_lifetime_actions(
        self, vault: str, name: str, actions: list[dict[str, Any]]
    ) -> None:
        cert = self.store.certificate(vault, name)
        validate_lifetime_actions(actions, cert.policy["x509_props"]["validity_months"])
        self.store.update_policy(vault, name, {"lifetime_actions": actions})

    def certificate_info(self, vault: str, name: str) -> dict[str, Any]:
        """Metadata of a certificate and its versions (no key material), for tests and control."""
        self.tick()
        with self.store.lock:
            cert = self.store.certificate(vault, name)
            versions = [
                {
                    "version": v.version,
                    "x5t": v.x5t,
                    "enabled": v.enabled,
                    "nbf": v.nbf,
                    "exp": v.exp,
                    "created": v.created,
                }
                for v in cert.versions
            ]
            return {
                "name": cert.name,
                "current": versions[-1] if versions else None,
                "versions": versions,
                "policy": json.loads(json.dumps(cert.policy)),
            }

    def tick(self) -> int:
        """Complete due creates and fire due AutoRenew actions; cheap when nothing is due."""
        return self.store.tick()

    def resolve_secret(self, url: str) -> SecretResolution:
        """What a node fetching ``url`` gets: the current version (versionless URL) or exactly
        the named version. Codes: ``NotASecretsUrl``, ``VaultNotFound``, ``SecretNotFound``,
        ``CertificateDisabled``. Access checks are the caller's (it knows the node identity)."""
        self.tick()
        parts = urlsplit(url)
        vault = self.vault_from_host(parts.netloc) if parts.scheme.lower() == "https" else None
        segments = [s for s in parts.path.split("/") if s]
        if not segments or segments[0].lower() != "secrets" or not 2 <= len(segments) <= 3:
            return SecretResolution(
                ok=False,
                code="NotASecretsUrl",
                vault=vault,
                message=f"'{url}' is not a Key Vault /secrets/ URL.",
            )
        if vault is None:
            return SecretResolution(
                ok=False,
                code="VaultNotFound",
                name=segments[1],
                message=f"No simulated vault serves '{parts.netloc}'.",
            )
        version = segments[2] if len(segments) == 3 else None
        with self.store.lock:
            return self.store.resolve_secret(
                vault, segments[1], version, pinned=version is not None
            )

    def snapshot(self) -> dict[str, Any]:
        return self.store.snapshot()

    def restore(self, data: dict[str, Any]) -> None:
        self.store.restore(data)

    # ------------------------------------------------------------------ HTTP
    def routes(self) -> list[web.RouteDef]:
        return [web.route("*", "/{tail:.*}", self.handle)]

    def sub_app(self) -> web.Application:
        app = web.Application()
        app.add_routes(self.routes())
        return app

    async def handle(self, request: web.Request) -> web.StreamResponse:
        raw = await request.read() if request.method in ("POST", "PUT", "PATCH") else b""
        self.tick()
        host = request.host
        ctx = Context(
            vault=self.vault_from_host(host) or "",
            base=f"https://{host.lower()}",
            path=request.path,
            query=dict(request.query),
            api_version=request.query.get("api-version"),
        )
        route, ctx.params, allowed = self._match(request.method, request.path)
        try:
            self._admit(request, ctx, route, allowed, raw)
            assert route is not None
            with self.store.lock:
                answer = _Answer(*route.handler(ctx))
        except _RefusalError as refused:
            answer = refused.answer
        except KeyVaultError as exc:
            answer = _Answer(exc.status, exc.body())
        return self._respond(request, ctx, answer, route, raw)

    def _admit(
        self,
        request: web.Request,
        ctx: Context,
        route: Route | None,
        allowed: set[str],
        raw: bytes,
    ) -> None:
        """Steps 2-8 of the pipeline (module docstring); raises ``_RefusalError`` to answer early."""
        vault = self.store.get_vault(ctx.vault) if ctx.vault else None
        if vault is None:
            raise _refuse(
                404,
                "VaultNotFound",
                f"No vault is simulated at '{request.host}'. (A real client would fail to "
                "resolve this host name.)",
            )
        port = _port_of(request.host)
        challenge = self._challenge(vault.tenant_id, port)
        header = request.headers.get("Authorization")
        if not header:
            # Recorded 2026 wording (keyvault-certificates.json [0]).
            message = "AKV10000: Request is missing a Bearer, PoP, or MTLS_POP token."
            raise _refuse(401, "Unauthorized", message, headers=challenge)
        denied = self._authenticate(ctx, header, vault.tenant_id, port)
        if denied is not None:
            raise _refuse(401, "Unauthorized", denied, headers=challenge)
        if ctx.api_version is None:
            # Unconfirmed wording for a missing api-version.
            raise _refuse(400, "BadParameter", "The api-version query parameter is missing.")
        if ctx.api_version not in SUPPORTED_API_VERSIONS:
            raise _refuse(
                400,
                "BadParameter",
                f"The specified version ({ctx.api_version}) is not recognized. Consider using "
                f"the latest supported version ({LATEST_API_VERSION}).",
            )
        if route is None and allowed:
            # Unconfirmed: the body the service gives for an unsupported method.
            message = f"The requested resource does not support http method '{request.method}'."
            raise _refuse(
                405, "BadParameter", message, headers={"Allow": ", ".join(sorted(allowed))}
            )
        if route is None:
            # Unconfirmed: the body the service gives for a path it does not know.
            raise _refuse(
                404, "NotFound", f"No Key Vault operation at {request.method} {ctx.path}."
            )
        retry_after = self.throttle.take(ctx.vault, request.method)
        if retry_after is not None:
            # A real 429 (keyvault-certificates.json [13], an issue report of a raw answer):
            # this body, and no Retry-After header. Clients must pick their own backoff.
            message = (
                "Request was not processed because too many requests were received. "
                "Reason: VaultRequestTypeLimitReached"
            )
            raise _refuse(429, "Throttled", message)
        if route.permission is not None:
            assert ctx.principal is not None
            kind, permission = route.permission
            if not self.authorize(ctx.vault, ctx.principal.object_id, kind, permission):
                forbidden = _forbidden(ctx.principal, kind, permission, ctx.vault, vault.location)
                raise _RefusalError(_Answer(forbidden.status, forbidden.body()))
        if raw:
            try:
                ctx.body = json.loads(raw)
            except (ValueError, UnicodeDecodeError):
                # Unconfirmed wording for a body that is not JSON.
                raise _refuse(400, "BadParameter", "The request body is not valid JSON.") from None

    def _authenticate(
        self, ctx: Context, header: str, tenant_id: str | None, port: int | None
    ) -> str | None:
        """Set ``ctx.principal``; or return why the token is refused (the 401 message)."""
        expected = self.audience(port)
        try:
            principal = self.verify_token(header, expected)
        except TokenError as exc:
            if exc.reason == "audience":
                found = _claim(header, "aud")
                return f"AKV10022: Invalid audience. Expected {expected}, found: {found}."
            # Unconfirmed: the AKV message codes for malformed or expired tokens.
            return f"Token validation failed: {exc.message}"
        if tenant_id and principal.tenant_id and principal.tenant_id.lower() != tenant_id.lower():
            # Unconfirmed wording, modelled on AKV10032 (token from another tenant's issuer).
            return (
                f"AKV10032: Invalid issuer. Expected one of https://sts.windows.net/"
                f"{tenant_id}/, found: https://sts.windows.net/{principal.tenant_id}/."
            )
        ctx.principal = principal
        return None

    def _challenge(self, tenant_id: str | None, port: int | None) -> dict[str, str]:
        authority = f"https://{self.login_host}{_port_suffix(port)}/{tenant_id or ''}"
        return {
            "WWW-Authenticate": f'Bearer authorization="{authority}", resource="{self.audience(port)}"'
        }

    def _match(self, method: str, path: str) -> tuple[Route | None, dict[str, str], set[str]]:
        allowed: set[str] = set()
        for route in self._routes:
            found = route.pattern.fullmatch(path)
            if found is None:
                continue
            if method.upper() in route.methods:
                return route, {k: v or "" for k, v in found.groupdict().items()}, allowed
            allowed |= route.methods
        return None, {}, allowed

    def _respond(
        self, request: web.Request, ctx: Context, answer: _Answer, route: Route | None, raw: bytes
    ) -> web.Response:
        operation = route.operation if route is not None else "Unknown"
        secret_read = route is not None and route.secret_read and ctx.principal is not None
        logged_body: Any = (
            ctx.body if ctx.body is not None else (raw.decode("utf-8", "replace") if raw else None)
        )
        self.log.record(
            "keyvault",
            operation,
            request.method,
            request.path,
            ctx.query,
            ctx.api_version,
            answer.status,
            ctx.principal.object_id if ctx.principal else None,
            body=logged_body,
            secret_read=secret_read,
        )
        headers = {
            "x-ms-request-id": str(uuid.uuid4()),
            "x-ms-keyvault-service-version": SERVICE_VERSION,
            "Cache-Control": "no-cache",
            **answer.headers,
        }
        vault = self.store.get_vault(ctx.vault) if ctx.vault else None
        if vault is not None:
            headers["x-ms-keyvault-region"] = vault.location
        client_request_id = request.headers.get("x-ms-client-request-id")
        if client_request_id:
            headers["x-ms-client-request-id"] = client_request_id
        if answer.body is None:
            return web.Response(status=answer.status, headers=headers)
        headers["Content-Type"] = _JSON
        return web.Response(
            status=answer.status, headers=headers, body=json.dumps(answer.body).encode("utf-8")
        )


def _port_of(host: str) -> int | None:
    _, sep, port = host.rpartition(":")
    return int(port) if sep and port.isdigit() else None


def _port_suffix(port: int | None) -> str:
    return "" if port in (None, 443) else f":{port}"


def _claim(header: str, name: str) -> str:
    try:
        _, claims = decode_jwt_unverified(header.partition(" ")[2].strip())
    except ValueError:
        return "(unreadable)"
    return str(claims.get(name, ""))


class _RefusalError(Exception):
    """An early answer from the request pipeline (not an error of the simulator)."""

    def __init__(self, answer: _Answer) -> None:
        super().__init__(answer.status)
        self.answer = answer


def _refuse(
    status: int, code: str, message: str, *, headers: dict[str, str] | None = None
) -> _RefusalError:
    body = KeyVaultError(status, code, message).body()
    return _RefusalError(_Answer(status, body, dict(headers or {})))


def _forbidden(
    principal: Principal, kind: str, permission: str, vault: str, location: str
) -> KeyVaultError:
    caller = (
        f"appid={principal.app_id};oid={principal.object_id};"
        f"iss=https://sts.windows.net/{principal.tenant_id}/"
    )
    return KeyVaultError(
        403,
        "Forbidden",
        f"The user, group or application '{caller}' does not have {kind} {permission} "
        f"permission on key vault '{vault};location={location}'. For help resolving this "
        "issue, please see https://go.microsoft.com/fwlink/?linkid=2125287",
        inner="AccessDenied",
    )
