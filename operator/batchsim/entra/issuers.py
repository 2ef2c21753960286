"""External token issuers, as Entra reaches them: OIDC discovery, then the issuer's JWKS.

Role: verify the signature of a federated client assertion from an issuer other than the
simulator's own (a Kubernetes cluster's service-account issuer, say) the way Entra does: fetch
``<iss>/.well-known/openid-configuration`` over HTTPS, require its ``issuer`` to be the token's
``iss``, fetch its ``jwks_uri`` and check the RS256 signature against the key the token's
``kid`` names. Keys are remembered per issuer for five minutes and fetched again at once for a
``kid`` not seen before (key rotation).

Evidence: Entra answers an unreachable or unusable discovery document/JWKS with 400
``invalid_request`` ``AADSTS50166: Request to External OIDC endpoint failed.``
(Azure/azure-workload-identity#642, a real response body). The code for a bad signature is
unconfirmed; ``AADSTS50013`` ("Assertion failed signature validation") is the code Entra uses for
assertions whose signature fails, and it refuses with 401 ``invalid_client`` like AADSTS70021.

Never kinder: only ``https`` issuers; no signature, an unknown ``kid``, an algorithm other than
RS256, or a document whose ``issuer`` differs from ``iss`` are all refusals. The one
accommodation: the simulator may be told to trust extra CAs (a dev cluster's own CA), where Entra
needs a publicly trusted certificate.
"""

from __future__ import annotations

import base64
import json
import ssl
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import aiohttp
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, rsa

KEYS_TTL_S = 300.0


class IssuerError(Exception):
    """Why an assertion's issuer could not vouch for it: ``unreachable`` or ``signature``."""

    def __init__(self, kind: str, message: str) -> None:
        super().__init__(message)
        self.kind = kind


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _rsa_key(jwk: dict[str, Any]) -> rsa.RSAPublicKey:
    n = int.from_bytes(_unb64(str(jwk["n"])), "big")
    e = int.from_bytes(_unb64(str(jwk["e"])), "big")
    return rsa.RSAPublicNumbers(e, n).public_key()


@dataclass
class IssuerKeys:
    """The keys of external issuers, fetched as Entra fetches them."""

    now: Callable[[], float] = time.time
    extra_ca_pems: list[str] = field(default_factory=list)
    _keys: dict[str, tuple[float, dict[str, dict[str, Any]]]] = field(default_factory=dict)
    fetches: int = 0

    def trust(self, ca_pem: str) -> None:
        """Trust one more CA for issuer endpoints (a dev cluster's; Entra needs a public CA)."""
        if ca_pem not in self.extra_ca_pems:
            self.extra_ca_pems.append(ca_pem)
        self._keys.clear()

    def _ssl(self) -> ssl.SSLContext:
        context = ssl.create_default_context()
        for pem in self.extra_ca_pems:
            context.load_verify_locations(cadata=pem)
        return context

    async def _fetch(self, issuer: str) -> dict[str, dict[str, Any]]:
        self.fetches += 1
        timeout = aiohttp.ClientTimeout(total=10)
        try:
            async with aiohttp.ClientSession(timeout=timeout) as session:
                discovery_url = issuer.rstrip("/") + "/.well-known/openid-configuration"
                async with session.get(discovery_url, ssl=self._ssl()) as response:
                    if response.status != 200:
                        raise IssuerError("unreachable", f"{discovery_url}: HTTP {response.status}")
                    discovery = json.loads(await response.text())
                if str(discovery.get("issuer", "")).rstrip("/") != issuer.rstrip("/"):
                    raise IssuerError("unreachable", "discovery document names another issuer")
                jwks_uri = str(discovery.get("jwks_uri") or "")
                if not jwks_uri.startswith("https://"):
                    raise IssuerError("unreachable", "discovery document has no https jwks_uri")
                async with session.get(jwks_uri, ssl=self._ssl()) as response:
                    if response.status != 200:
                        raise IssuerError("unreachable", f"{jwks_uri}: HTTP {response.status}")
                    jwks = json.loads(await response.text())
        except (aiohttp.ClientError, TimeoutError, ValueError, ssl.SSLError) as exc:
            raise IssuerError("unreachable", f"{issuer}: {exc}") from None
        keys = {
            str(k.get("kid", "")): k
            for k in (jwks.get("keys") or [])
            if isinstance(k, dict) and k.get("kty") == "RSA"
        }
        self._keys[issuer] = (self.now() + KEYS_TTL_S, keys)
        return keys

    async def _key(self, issuer: str, kid: str) -> dict[str, Any] | None:
        cached = self._keys.get(issuer)
        if cached is None or self.now() >= cached[0] or kid not in cached[1]:
            return (await self._fetch(issuer)).get(kid)
        return cached[1].get(kid)

    async def verify(self, token: str, header: dict[str, Any], issuer: str) -> None:
        """Raise IssuerError unless ``token`` is RS256-signed by a key ``issuer`` publishes."""
        if not issuer.startswith("https://"):
            raise IssuerError("unreachable", f"issuer {issuer} is not an https URL")
        jwk = await self._key(issuer, str(header.get("kid", "")))
        if header.get("alg") != "RS256" or jwk is None:
            raise IssuerError("signature", "no key of the issuer matches the assertion")
        signing_input, _, signature = token.rpartition(".")
        try:
            _rsa_key(jwk).verify(
                _unb64(signature),
                signing_input.encode("ascii"),
                padding.PKCS1v15(),
                hashes.SHA256(),
            )
        except (InvalidSignature, ValueError, KeyError) as exc:
            raise IssuerError("signature", f"signature does not verify: {exc}") from None
