"""Access tokens of the simulated Entra ID: minting and verification.

Role: the one place that knows the token format. Entra (``entra.py``) mints tokens; every
simulated service (ARM, Batch, and the Key Vault data plane owned by ``keyvault.py``) calls
``TokenAuthority.verify_token(authorization_header, audience)`` and either gets a ``Principal``
or a ``TokenError`` it turns into its own 401 shape.

Tokens are compact JWTs signed HS256 with a per-simulator secret, carrying the claims real Entra
v1 access tokens carry that services look at: ``aud``, ``iss``, ``tid``, ``oid``, ``appid``,
``iat``, ``nbf``, ``exp``.

Token times are *real* (wall-clock) seconds, deliberately not simulated time: clients cache
tokens by ``expires_in`` on their own real clock, so judging them on the simulated clock would
turn every clock advance into an expiry no client could foresee (Azure and its clients share
one clock). The time source is injected, so tests can still expire tokens.

Invariants:
* a token verifies only with this simulator's secret (a restart with a state dir keeps it);
* audiences compare after stripping trailing slashes, so ``https://batch.core.windows.net/``
  and the scope-derived ``https://batch.core.windows.net//`` are the same audience (the Batch
  SDK really asks for ``https://batch.core.windows.net//.default``);
* ``verify_token`` never raises anything but ``TokenError``.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import secrets
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

# Audiences of the services the simulator serves, as Entra puts them into ``aud``.
ARM_AUDIENCES = ("https://management.azure.com/", "https://management.core.windows.net/")
BATCH_AUDIENCE = "https://batch.core.windows.net/"
KEYVAULT_AUDIENCE = "https://vault.azure.net"

TOKEN_LIFETIME_S = 3599


@dataclass(frozen=True)
class Principal:
    """Who called: the service principal (or managed identity) behind a token."""

    object_id: str
    app_id: str
    tenant_id: str
    audience: str
    name: str = ""


class TokenError(Exception):
    """A token was missing, malformed, forged, expired or for another audience.

    ``reason`` is one of ``missing``, ``invalid``, ``expired``, ``audience``; services choose
    their own 401 body from it (ARM: ``AuthenticationFailed`` / ``InvalidAuthenticationToken`` /
    ``ExpiredAuthenticationToken`` / ``InvalidAuthenticationTokenAudience``).
    """

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason
        self.message = message


def normalize_audience(audience: str) -> str:
    return audience.rstrip("/").lower()


def audience_from_scope(scope: str) -> str:
    """``https://batch.core.windows.net//.default`` → ``https://batch.core.windows.net/``.

    Entra drops ``/.default`` and keeps whatever precedes it; we then normalise trailing
    slashes so the double-slash form the Batch SDK sends is the plain resource URI.
    """
    resource = scope.strip()
    if resource.endswith("/.default"):
        resource = resource[: -len("/.default")]
    return resource.rstrip("/") + "/"


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def encode_jwt(claims: dict[str, Any], key: bytes, *, kid: str = "sim") -> str:
    header = {"alg": "HS256", "typ": "JWT", "kid": kid}
    signing_input = (
        _b64(json.dumps(header, separators=(",", ":")).encode())
        + "."
        + _b64(json.dumps(claims, separators=(",", ":")).encode())
    )
    signature = hmac.new(key, signing_input.encode("ascii"), hashlib.sha256).digest()
    return signing_input + "." + _b64(signature)


def decode_jwt_unverified(token: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """(header, claims) of a compact JWT without checking the signature; ValueError if malformed."""
    parts = token.split(".")
    if len(parts) != 3:
        raise ValueError("not a compact JWT")
    try:
        header = json.loads(_unb64(parts[0]))
        claims = json.loads(_unb64(parts[1]))
    except (ValueError, UnicodeDecodeError) as exc:
        raise ValueError(f"malformed JWT: {exc}") from exc
    if not isinstance(header, dict) or not isinstance(claims, dict):
        raise ValueError("malformed JWT: header and claims must be objects")
    return header, claims


def verify_jwt_signature(token: str, key: bytes) -> dict[str, Any]:
    """The claims of an HS256 JWT signed with ``key``; ValueError when it is not."""
    header, claims = decode_jwt_unverified(token)
    if header.get("alg") != "HS256":
        raise ValueError("unexpected JWT algorithm")
    signing_input, _, signature = token.rpartition(".")
    expected = hmac.new(key, signing_input.encode("ascii"), hashlib.sha256).digest()
    try:
        given = _unb64(signature)
    except ValueError as exc:
        raise ValueError("malformed JWT signature") from exc
    if not hmac.compare_digest(expected, given):
        raise ValueError("JWT signature does not verify")
    return claims


class TokenAuthority:
    """Mints and verifies the simulator's access tokens (real-time validity, see module doc)."""

    def __init__(
        self, now: Callable[[], float], tenant_id: str, issuer: str, key: bytes | None = None
    ):
        self.now = now
        self.tenant_id = tenant_id
        self.issuer = issuer
        self.key = key if key is not None else secrets.token_bytes(32)

    def mint(
        self,
        *,
        audience: str,
        object_id: str,
        app_id: str,
        name: str = "",
        lifetime_s: int = TOKEN_LIFETIME_S,
    ) -> str:
        now = int(self.now())
        claims = {
            "aud": audience,
            "iss": self.issuer,
            "tid": self.tenant_id,
            "oid": object_id,
            "appid": app_id,
            "sub": object_id,
            "name": name,
            "iat": now,
            "nbf": now - 300,  # Entra back-dates nbf by five minutes to absorb clock skew
            "exp": now + lifetime_s,
            "ver": "1.0",
        }
        return encode_jwt(claims, self.key)

    def verify_token(self, authorization: str | None, audience: str | Iterable[str]) -> Principal:
        """Check an ``Authorization`` header value for one of the given audiences.

        Raises ``TokenError`` (never anything else) when the header is absent, not a bearer
        token, not ours, expired/not yet valid, or for another audience.
        """
        audiences = [audience] if isinstance(audience, str) else list(audience)
        if not authorization or not authorization.strip():
            raise TokenError(
                "missing", "Authentication information is not given in the correct format."
            )
        scheme, _, token = authorization.strip().partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise TokenError(
                "invalid",
                "Authentication failed. The 'Authorization' header is provided in an invalid format.",
            )
        try:
            claims = verify_jwt_signature(token.strip(), self.key)
        except ValueError as exc:
            raise TokenError("invalid", f"The access token is invalid: {exc}.") from exc
        now = self.now()
        exp, nbf = claims.get("exp"), claims.get("nbf")
        if not isinstance(exp, (int, float)) or not isinstance(nbf, (int, float)):
            raise TokenError("invalid", "The access token has no validity period.")
        if now >= exp:
            raise TokenError(
                "expired",
                "The access token expiry UTC time is earlier than current UTC time.",
            )
        if now < nbf:
            raise TokenError("invalid", "The access token is not yet valid.")
        aud = str(claims.get("aud", ""))
        if normalize_audience(aud) not in {normalize_audience(a) for a in audiences}:
            raise TokenError(
                "audience",
                f"The access token has been obtained for wrong audience or resource '{aud}'. "
                f"It should exactly match with one of the allowed audiences "
                f"'{', '.join(audiences)}'.",
            )
        return Principal(
            object_id=str(claims.get("oid", "")),
            app_id=str(claims.get("appid", "")),
            tenant_id=str(claims.get("tid", "")),
            audience=aud,
            name=str(claims.get("name", "")),
        )
