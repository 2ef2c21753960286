"""Simulated Entra ID (login.sim.test): OpenID configuration and the token endpoint.

Role: let ``azure-identity`` sign in exactly as it does against Azure, for
``ClientSecretCredential`` (client secret, posted or HTTP Basic) and
``WorkloadIdentityCredential`` (a federated client assertion read from a token file), both with
``authority=https://login.sim.test:PORT`` and ``disable_instance_discovery=True``.

Federated assertions: an assertion must be a compact JWT, inside its validity window, whose
``iss``/``sub``/``aud`` match a federated credential registered on the app (else 401
``invalid_client`` AADSTS70021, as in external-secrets/external-secrets#2783's real answer), and
whose signature verifies: assertions of the simulator's own "cluster issuer" (the token file it
writes) against its key, every other issuer's as Entra does it, by OIDC discovery and JWKS
fetched from the issuer (``issuers.py``: AADSTS50166 when the issuer cannot be reached, AADSTS50013
when the signature fails). An unsigned or foreign-signed token is never accepted.

Invariants: only the client-credentials grant exists (a daemon/operator has nothing else);
scopes must be ``<resource>/.default``; every answer is JSON in Entra's error shape
(``error``, ``error_description`` starting ``AADSTSnnnn:``, ``error_codes``, ids, timestamp).
"""

from __future__ import annotations

import base64
import secrets
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from aiohttp import web

from batchsim.entra.issuers import IssuerError, IssuerKeys
from batchsim.entra.tokens import (
    ARM_AUDIENCES,
    BATCH_AUDIENCE,
    KEYVAULT_AUDIENCE,
    TOKEN_LIFETIME_S,
    TokenAuthority,
    audience_from_scope,
    decode_jwt_unverified,
    encode_jwt,
    normalize_audience,
    verify_jwt_signature,
)

TOKEN_EXCHANGE_AUDIENCE = "api://AzureADTokenExchange"
CLUSTER_ISSUER = "https://oidc.sim.test/cluster"


@dataclass
class FederatedCredential:
    issuer: str
    subject: str
    audiences: list[str] = field(default_factory=lambda: [TOKEN_EXCHANGE_AUDIENCE])


@dataclass
class AppRegistration:
    """An app registration with its service principal (what a token's ``oid`` names)."""

    name: str
    client_id: str
    object_id: str
    secrets: list[str] = field(default_factory=list)
    federated: list[FederatedCredential] = field(default_factory=list)


class EntraError(Exception):
    def __init__(self, status: int, error: str, aadsts: int, description: str) -> None:
        super().__init__(description)
        self.status = status
        self.error = error
        self.aadsts = aadsts
        self.description = description


@dataclass
class Directory:
    """The simulated tenant: app registrations, known resources, the cluster issuer key."""

    tenant_id: str
    apps: dict[str, AppRegistration] = field(default_factory=dict)  # by client id (lower)
    cluster_key: bytes = field(default_factory=lambda: secrets.token_bytes(32))
    issuers: IssuerKeys = field(default_factory=IssuerKeys)
    # Resources a token can be requested for (audience URIs); Key Vault's simulated resource is
    # added by the Key Vault service's challenge (see app.py).
    resources: set[str] = field(
        default_factory=lambda: {
            *(normalize_audience(a) for a in ARM_AUDIENCES),
            normalize_audience(BATCH_AUDIENCE),
            normalize_audience(KEYVAULT_AUDIENCE),
        }
    )

    def register(
        self,
        name: str,
        *,
        client_id: str | None = None,
        object_id: str | None = None,
        client_secret: str | None = None,
        federated: list[FederatedCredential] | None = None,
    ) -> AppRegistration:
        app = AppRegistration(
            name=name,
            client_id=client_id or str(uuid.uuid4()),
            object_id=object_id or str(uuid.uuid4()),
            secrets=[client_secret] if client_secret else [],
            federated=list(federated or []),
        )
        self.apps[app.client_id.lower()] = app
        return app

    def app(self, client_id: str) -> AppRegistration | None:
        return self.apps.get(client_id.lower())

    def by_name(self, name: str) -> AppRegistration | None:
        return next((a for a in self.apps.values() if a.name == name), None)

    def issue_cluster_token(
        self,
        subject: str,
        now: float,
        *,
        lifetime_s: int = 86_400,
        audience: str = TOKEN_EXCHANGE_AUDIENCE,
    ) -> str:
        """A service-account-style JWT from the simulator's cluster issuer (the token file)."""
        claims = {
            "iss": CLUSTER_ISSUER,
            "sub": subject,
            "aud": [audience],
            "iat": int(now),
            "nbf": int(now),
            "exp": int(now) + lifetime_s,
        }
        return encode_jwt(claims, self.cluster_key, kid="sim-cluster")

    # --- the token grant ----------------------------------------------------------------

    async def grant(
        self,
        tenant: str,
        form: dict[str, str],
        basic: tuple[str, str] | None,
        authority: TokenAuthority,
    ) -> tuple[AppRegistration, str, str]:
        """Validate a client-credentials request; returns (app, audience, access token)."""
        if tenant.lower() != self.tenant_id.lower():
            raise EntraError(
                400,
                "invalid_request",
                90002,
                f"Tenant '{tenant}' not found. "
                "Check to make sure you have the correct tenant ID and are signing "
                "into the correct cloud.",
            )
        grant_type = form.get("grant_type", "")
        if grant_type != "client_credentials":
            raise EntraError(
                400,
                "unsupported_grant_type",
                70003,
                f"The app requested an unsupported grant type '{grant_type}'.",
            )
        client_id = form.get("client_id") or (basic[0] if basic else "")
        if not client_id:
            raise EntraError(
                400,
                "invalid_request",
                900144,
                "The request body must contain the following parameter: 'client_id'.",
            )
        app = self.app(client_id)
        if app is None:
            raise EntraError(
                400,
                "unauthorized_client",
                700016,
                f"Application with identifier '{client_id}' was not found in the "
                f"directory '{self.tenant_id}'. This can happen if the application "
                "has not been installed by the administrator of the tenant or "
                "consented to by any user in the tenant.",
            )
        audience = self._audience(form.get("scope", ""))
        assertion_type = form.get("client_assertion_type")
        if assertion_type is not None:
            await self._check_assertion(
                app, assertion_type, form.get("client_assertion", ""), authority.now()
            )
        else:
            secret = form.get("client_secret") or (basic[1] if basic else None)
            if not secret:
                raise EntraError(
                    401,
                    "invalid_client",
                    7000218,
                    "The request body must contain the following parameter: "
                    "'client_assertion' or 'client_secret'.",
                )
            if not any(secrets.compare_digest(secret, s) for s in app.secrets):
                raise EntraError(
                    401,
                    "invalid_client",
                    7000215,
                    "Invalid client secret provided. Ensure the secret being sent "
                    "in the request is the client secret value, not the client "
                    f"secret ID, for a secret added to app '{app.client_id}'.",
                )
        token = authority.mint(
            audience=audience, object_id=app.object_id, app_id=app.client_id, name=app.name
        )
        return app, audience, token

    def _audience(self, scope: str) -> str:
        scopes = scope.split()
        if len(scopes) != 1 or not scopes[0].endswith("/.default"):
            raise EntraError(
                400,
                "invalid_scope",
                1002012,
                f"The provided value for scope {scope} is not valid. Client "
                "credential flows must have a scope value with /.default suffixed "
                "to the resource identifier (application ID URI).",
            )
        audience = audience_from_scope(scopes[0])
        if normalize_audience(audience) not in self.resources:
            raise EntraError(
                400,
                "invalid_resource",
                500011,
                f"The resource principal named {audience} was not found in the "
                f"tenant named {self.tenant_id}. This can happen if the "
                "application has not been installed by the administrator of the "
                "tenant or consented to by any user in the tenant.",
            )
        return audience

    async def _check_assertion(
        self, app: AppRegistration, assertion_type: str, assertion: str, now: float
    ) -> None:
        if assertion_type != "urn:ietf:params:oauth:client-assertion-type:jwt-bearer":
            raise EntraError(
                400,
                "invalid_request",
                50027,
                "Invalid client_assertion_type: expected "
                "'urn:ietf:params:oauth:client-assertion-type:jwt-bearer'.",
            )
        try:
            header, claims = decode_jwt_unverified(assertion)
        except ValueError:
            raise EntraError(
                400, "invalid_request", 50027, "JWT token is invalid or malformed."
            ) from None
        iss, sub = str(claims.get("iss", "")), str(claims.get("sub", ""))
        aud_claim = claims.get("aud", [])
        auds = [aud_claim] if isinstance(aud_claim, str) else [str(a) for a in aud_claim]
        exp, nbf = claims.get("exp"), claims.get("nbf", claims.get("iat", 0))
        if (
            not isinstance(exp, (int, float))
            or not isinstance(nbf, (int, float))
            or now >= exp
            or now < nbf - 300
        ):
            raise EntraError(
                400,
                "invalid_client",
                700024,
                "Client assertion is not within its valid time range. Current time: "
                f"{_iso(now)}, assertion valid from {_iso(nbf)}, expiry time of "
                f"assertion {_iso(exp)}.",
            )
        match = next(
            (
                f
                for f in app.federated
                if f.issuer == iss and f.subject == sub and set(f.audiences) & set(auds)
            ),
            None,
        )
        if match is None:
            raise EntraError(
                401,
                "invalid_client",
                70021,
                "No matching federated identity record found for presented "
                f"assertion. Assertion Issuer: '{iss}'. Assertion Subject: '{sub}'. "
                f"Assertion Audience: '{','.join(auds)}'.",
            )
        if iss == CLUSTER_ISSUER:
            try:
                verify_jwt_signature(assertion, self.cluster_key)
            except ValueError:
                raise EntraError(
                    401, "invalid_client", 50013, "Assertion failed signature validation."
                ) from None
            return
        try:
            await self.issuers.verify(assertion, header, iss)
        except IssuerError as err:
            if err.kind == "unreachable":
                raise EntraError(
                    400, "invalid_request", 50166, "Request to External OIDC endpoint failed."
                ) from None
            raise EntraError(
                401, "invalid_client", 50013, "Assertion failed signature validation."
            ) from None


def _iso(seconds: Any) -> str:
    try:
        return datetime.fromtimestamp(float(seconds), UTC).isoformat().replace("+00:00", "Z")
    except (TypeError, ValueError, OverflowError):
        return str(seconds)


def openid_configuration(authority_host: str, tenant: str) -> dict[str, Any]:
    base = f"{authority_host}/{tenant}"
    return {
        "token_endpoint": f"{base}/oauth2/v2.0/token",
        "token_endpoint_auth_methods_supported": [
            "client_secret_post",
            "private_key_jwt",
            "client_secret_basic",
        ],
        "jwks_uri": f"{authority_host}/{tenant}/discovery/v2.0/keys",
        "response_modes_supported": ["query", "fragment", "form_post"],
        "subject_types_supported": ["pairwise"],
        "id_token_signing_alg_values_supported": ["RS256"],
        "response_types_supported": ["code", "id_token", "code id_token", "id_token token"],
        "scopes_supported": ["openid", "profile", "email", "offline_access"],
        "issuer": f"{base}/v2.0",
        "request_uri_parameter_supported": False,
        "authorization_endpoint": f"{base}/oauth2/v2.0/authorize",
        "device_authorization_endpoint": f"{base}/oauth2/v2.0/devicecode",
        "end_session_endpoint": f"{base}/oauth2/v2.0/logout",
        "tenant_region_scope": "EU",
        "cloud_instance_name": "sim.test",
    }


def build_entra_app(
    directory: Directory,
    authority: TokenAuthority,
    authority_host: Callable[[], str],
    record: Callable[..., None],
) -> web.Application:
    """The sub-application served for ``login.sim.test``.

    ``record(operation, request, status, principal, body)`` logs each request.
    """
    app = web.Application()

    async def openid(request: web.Request) -> web.Response:
        tenant = request.match_info["tenant"]
        if tenant.lower() not in (directory.tenant_id.lower(), "organizations", "common"):
            body: dict[str, Any] = _error_body(
                EntraError(400, "invalid_tenant", 90002, f"Tenant '{tenant}' not found.")
            )
            record("OpenIdConfiguration", request, 400, None, None)
            return web.json_response(body, status=400)
        record("OpenIdConfiguration", request, 200, None, None)
        return web.json_response(openid_configuration(authority_host(), directory.tenant_id))

    async def token(request: web.Request) -> web.Response:
        form = {k: str(v) for k, v in (await request.post()).items()}
        logged = {
            k: ("***" if k in ("client_secret", "client_assertion") else v) for k, v in form.items()
        }
        try:
            app_reg, _, access_token = await directory.grant(
                request.match_info["tenant"], form, _basic_auth(request), authority
            )
        except EntraError as err:
            record("Token", request, err.status, form.get("client_id"), logged)
            return web.json_response(_error_body(err), status=err.status)
        record("Token", request, 200, app_reg.object_id, logged)
        return web.json_response(
            {
                "token_type": "Bearer",
                "expires_in": TOKEN_LIFETIME_S,
                "ext_expires_in": TOKEN_LIFETIME_S,
                "access_token": access_token,
            },
            headers={"Cache-Control": "no-store, no-cache", "Pragma": "no-cache"},
        )

    app.router.add_get("/{tenant}/v2.0/.well-known/openid-configuration", openid)
    # MSAL may ask the v1 location for some authorities; answer with the same document.
    app.router.add_get("/{tenant}/.well-known/openid-configuration", openid)
    app.router.add_post("/{tenant}/oauth2/v2.0/token", token)
    app.router.add_post("/{tenant}/oauth2/token", token)
    return app


def _basic_auth(request: web.Request) -> tuple[str, str] | None:
    header = request.headers.get("Authorization", "")
    if not header.lower().startswith("basic "):
        return None
    try:
        user, _, password = base64.b64decode(header[6:]).decode().partition(":")
    except (ValueError, UnicodeDecodeError):
        return None
    return user, password


def _error_body(err: EntraError) -> dict[str, Any]:
    trace, correlation = str(uuid.uuid4()), str(uuid.uuid4())
    # Entra stamps errors with real UTC time; so do we (the token layer runs on real time).
    stamp = datetime.fromtimestamp(time.time(), UTC).strftime("%Y-%m-%d %H:%M:%SZ")
    return {
        "error": err.error,
        "error_description": f"AADSTS{err.aadsts}: {err.description} Trace ID: {trace} "
        f"Correlation ID: {correlation} Timestamp: {stamp}",
        "error_codes": [err.aadsts],
        "timestamp": stamp,
        "trace_id": trace,
        "correlation_id": correlation,
        "error_uri": f"https://login.sim.test/error?code={err.aadsts}",
    }
