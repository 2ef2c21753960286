"""The operations of the simulated Key Vault data plane: routes, input checks, handlers.

Role: map ``(method, path)`` to a REST operation (named by its operationId in the Key Vault
spec), the access-policy permission it needs, and a handler that validates the request and
answers from ``keyvault_store`` through ``keyvault_render``. Authentication, api-version,
throttling, authorization and logging happen before, in ``keyvault.py``.

Invariants: handlers return ``(status, body, headers)`` or raise ``KeyVaultError``; every input
check raises 400 ``BadParameter`` rather than letting a ``KeyError``/``TypeError`` escape;
operations the simulator does not model answer 501 ``NotImplemented`` (honest, instead of a
made-up Azure answer).
"""

from __future__ import annotations

import base64
import json
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from batchsim.entra.tokens import Principal
from batchsim.keyvault import render
from batchsim.keyvault.policy import KeyVaultError, bad_parameter, invalid_property
from batchsim.keyvault.store import KeyVaultStore, not_found

Answer = tuple[int, Any, dict[str, str]]
_OBJECT_NAME = re.compile(r"^[0-9a-zA-Z-]{1,127}$")
_MAX_PAGE = 25  # the spec's maximum for maxresults


@dataclass
class Context:
    vault: str
    base: str  # the vault URL the client used, e.g. https://kv1.vault.sim.test:8443
    path: str
    query: dict[str, str]
    api_version: str | None
    principal: Principal | None = None
    params: dict[str, str] = field(default_factory=dict)
    body: Any = None


@dataclass(frozen=True)
class Route:
    methods: frozenset[str]
    pattern: re.Pattern[str]
    operation: str
    handler: Callable[[Context], Answer]
    permission: tuple[str, str] | None  # (kind, permission) checked against access policies
    secret_read: bool = False


def _name(ctx: Context) -> str:
    name = ctx.params["name"]
    if not _OBJECT_NAME.match(name):
        # Unconfirmed wording for names outside ^[0-9a-zA-Z-]{1,127}$.
        raise bad_parameter(f"The request URI contains an invalid name: {name}")
    return name


def _body(ctx: Context) -> dict[str, Any]:
    if ctx.body is None:
        return {}
    if not isinstance(ctx.body, dict):
        raise invalid_property("body", None, "The request body must be a JSON object.")
    return ctx.body


def _enabled(raw: Any, path: str) -> bool | None:
    if raw is None:
        return None
    if not isinstance(raw, dict):
        raise invalid_property(path, raw, "It must be a JSON object.")
    enabled = raw.get("enabled")
    if enabled is not None and not isinstance(enabled, bool):
        raise invalid_property(f"{path}.enabled", enabled, "It must be a boolean.")
    return enabled


def _tags(raw: Any) -> dict[str, str] | None:
    if raw is None:
        return None
    if not isinstance(raw, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in raw.items()
    ):
        raise invalid_property("tags", raw, "Tags must be an object of string values.")
    return dict(raw)


class _Pager:
    def __init__(self, default_size: int) -> None:
        self.default_size = default_size

    def page(self, ctx: Context, items: list[dict[str, Any]]) -> Answer:
        size = self._size(ctx)
        offset = self._offset(ctx)
        chunk = items[offset : offset + size]
        next_link = None
        if offset + size < len(items):
            token = base64.urlsafe_b64encode(json.dumps({"offset": offset + size}).encode())
            next_link = (
                f"{ctx.base}{ctx.path}?api-version={ctx.api_version}"
                f"&$skiptoken={token.decode().rstrip('=')}&maxresults={size}"
            )
        return 200, {"value": chunk, "nextLink": next_link}, {}

    def _size(self, ctx: Context) -> int:
        raw = ctx.query.get("maxresults")
        if raw is None:
            return min(self.default_size, _MAX_PAGE)
        if not raw.isdigit() or not 1 <= int(raw) <= _MAX_PAGE:
            # Unconfirmed wording; the spec bounds maxresults to 1..25.
            raise bad_parameter(
                f"Invalid maxresults value '{raw}': it must be between 1 and {_MAX_PAGE}."
            )
        return int(raw)

    @staticmethod
    def _offset(ctx: Context) -> int:
        token = ctx.query.get("$skiptoken")
        if not token:
            return 0
        try:
            data = json.loads(base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)))
            offset = data["offset"]
            if not isinstance(offset, int) or offset < 0:
                raise ValueError(offset)
        except (ValueError, KeyError, TypeError) as exc:
            raise bad_parameter("The $skiptoken is invalid.") from exc
        return offset


def build_routes(store: KeyVaultStore, page_size: int) -> list[Route]:
    """The route table; order matters (specific paths before ``{name}/{version}``)."""
    pager = _Pager(page_size)

    def list_certificates(ctx: Context) -> Answer:
        vault = store.vault(ctx.vault)
        include_pending = ctx.query.get("includePending", "false").lower() == "true"
        items = []
        for cert in sorted(vault.certificates.values(), key=lambda c: c.name.lower()):
            item = render.certificate_item(ctx.base, cert)
            if item is None and include_pending:
                item = {
                    "id": f"{ctx.base}/certificates/{cert.name}",
                    "attributes": render.pending_only_bundle(ctx.base, cert)["attributes"],
                }
            if item is not None:
                items.append(item)
        return pager.page(ctx, items)

    def create(ctx: Context) -> Answer:
        name, body = _name(ctx), _body(ctx)
        enabled = _enabled(body.get("attributes"), "attributes")
        cert = store.create(
            ctx.vault,
            name,
            body.get("policy"),
            tags=_tags(body.get("tags")),
            enabled=True if enabled is None else enabled,
        )
        assert cert.pending is not None
        location = (
            f"{ctx.base}/certificates/{cert.name}/pending?api-version={ctx.api_version}"
            f"&request_id={cert.pending.request_id}"
        )
        return (
            202,
            render.accepted_operation_body(ctx.base, cert),
            {"Location": location, "Retry-After": "10"},
        )

    def get_operation(ctx: Context) -> Answer:
        cert = store.certificate(ctx.vault, _name(ctx))
        if cert.pending is None:
            raise KeyVaultError(
                404, "PendingCertificateNotFound", f"Pending certificate not found: {cert.name}"
            )
        headers = {"Retry-After": "10"} if cert.pending.status == "inProgress" else {}
        return 200, render.operation_body(ctx.base, cert), headers

    def list_versions(ctx: Context) -> Answer:
        cert = store.certificate(ctx.vault, _name(ctx))
        return pager.page(ctx, [render.version_item(ctx.base, cert, v) for v in cert.versions])

    def get_policy(ctx: Context) -> Answer:
        cert = store.certificate(ctx.vault, _name(ctx))
        return 200, render.policy_body(ctx.base, cert), {}

    def update_policy(ctx: Context) -> Answer:
        name, body = _name(ctx), _body(ctx)
        cert = store.update_policy(ctx.vault, name, body)
        return 200, render.policy_body(ctx.base, cert), {}

    def get_certificate(ctx: Context) -> Answer:
        name, version = _name(ctx), ctx.params.get("version", "")
        cert = store.certificate(ctx.vault, name)
        if not version:
            return 200, render.current_bundle(ctx.base, cert), {}
        found = cert.find(version)
        if found is None:
            raise not_found(f"{name}/{version}")
        return 200, render.certificate_bundle(ctx.base, cert, found, with_policy=False), {}

    def update_certificate(ctx: Context) -> Answer:
        name, body = _name(ctx), _body(ctx)
        enabled = _enabled(body.get("attributes"), "attributes")
        tags = _tags(body.get("tags"))
        if body.get("policy") is not None:
            store.update_policy(ctx.vault, name, body["policy"])
        # Unconfirmed: nbf/exp in the update body are ignored (they are the X.509 validity).
        version = store.update_version(
            ctx.vault, name, ctx.params.get("version") or None, enabled=enabled, tags=tags
        )
        cert = store.certificate(ctx.vault, name)
        with_policy = version is cert.current
        return 200, render.certificate_bundle(ctx.base, cert, version, with_policy=with_policy), {}

    def delete(ctx: Context) -> Answer:
        cert = store.delete(ctx.vault, _name(ctx))
        return 200, render.deleted_bundle(ctx.base, cert), {}

    def get_secret(ctx: Context) -> Answer:
        name, version = _name(ctx), ctx.params.get("version", "")
        cert = store.vault(ctx.vault).certificates.get(name.lower())
        target = None if cert is None else (cert.find(version) if version else cert.current)
        if cert is None or target is None:
            raise not_found(f"{name}/{version}" if version else name, "secret")
        if not target.enabled:
            raise KeyVaultError(
                403,
                "Forbidden",
                "Operation get is not allowed on a disabled secret.",
                inner="SecretDisabled",
            )
        return 200, render.secret_bundle(ctx.base, cert, target), {}

    def list_deleted(ctx: Context) -> Answer:
        vault = store.vault(ctx.vault)
        items = [
            render.deleted_item(ctx.base, c)
            for c in sorted(vault.deleted.values(), key=lambda c: c.name.lower())
        ]
        return pager.page(ctx, items)

    def get_deleted(ctx: Context) -> Answer:
        return 200, render.deleted_bundle(ctx.base, store.deleted(ctx.vault, _name(ctx))), {}

    def purge(ctx: Context) -> Answer:
        store.purge(ctx.vault, _name(ctx))
        return 204, None, {}

    def recover(ctx: Context) -> Answer:
        cert = store.recover(ctx.vault, _name(ctx))
        return 200, render.current_bundle(ctx.base, cert), {}

    def not_simulated(ctx: Context) -> Answer:
        raise KeyVaultError(
            501,
            "NotImplemented",
            f"The simulator does not model {ctx.path}; only certificate create/"
            "get/versions/policy/update/delete and secret get are simulated.",
        )

    name, version = r"(?P<name>[^/]+)", r"(?P<version>[^/]*)"
    cert_kind = "certificates"

    def route(
        methods: str,
        pattern: str,
        operation: str,
        handler: Callable[[Context], Answer],
        permission: str | None = None,
        kind: str = cert_kind,
        secret_read: bool = False,
    ) -> Route:
        return Route(
            frozenset(methods.split()),
            re.compile(pattern, re.IGNORECASE),
            operation,
            handler,
            (kind, permission) if permission else None,
            secret_read,
        )

    every = "GET PUT POST PATCH DELETE"
    return [
        route("GET", r"/certificates/?", "GetCertificates", list_certificates, "list"),
        route(
            every, r"/certificates/(contacts|issuers(/.*)?|restore)", "NotSimulated", not_simulated
        ),
        route("POST", rf"/certificates/{name}/create", "CreateCertificate", create, "create"),
        route(
            "GET", rf"/certificates/{name}/pending", "GetCertificateOperation", get_operation, "get"
        ),
        route(
            every,
            rf"/certificates/{name}/(pending(/merge)?|import|backup)",
            "NotSimulated",
            not_simulated,
        ),
        route(
            "GET",
            rf"/certificates/{name}/versions",
            "GetCertificateVersions",
            list_versions,
            "list",
        ),
        route("GET", rf"/certificates/{name}/policy", "GetCertificatePolicy", get_policy, "get"),
        route(
            "PATCH",
            rf"/certificates/{name}/policy",
            "UpdateCertificatePolicy",
            update_policy,
            "update",
        ),
        route("DELETE", rf"/certificates/{name}", "DeleteCertificate", delete, "delete"),
        route(
            "GET", rf"/certificates/{name}(/{version})?", "GetCertificate", get_certificate, "get"
        ),
        route(
            "PATCH",
            rf"/certificates/{name}/{version}",
            "UpdateCertificate",
            update_certificate,
            "update",
        ),
        route(
            "GET",
            rf"/secrets/{name}(/{version})?",
            "GetSecret",
            get_secret,
            "get",
            kind="secrets",
            secret_read=True,
        ),
        route(every, r"/secrets(/.*)?", "NotSimulated", not_simulated),
        route("GET", r"/deletedcertificates/?", "GetDeletedCertificates", list_deleted, "list"),
        route("GET", rf"/deletedcertificates/{name}", "GetDeletedCertificate", get_deleted, "get"),
        route("DELETE", rf"/deletedcertificates/{name}", "PurgeDeletedCertificate", purge, "purge"),
        route(
            "POST",
            rf"/deletedcertificates/{name}/recover",
            "RecoverDeletedCertificate",
            recover,
            "recover",
        ),
    ]
