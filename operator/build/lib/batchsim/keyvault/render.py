"""JSON bodies of the simulated Key Vault data plane, shaped like the real service's.

Role: pure renderers from ``keyvault_store`` state to REST bodies. ``base`` is the vault URL the
client used (``https://{vault}.vault.sim.test:PORT``), so every ``id``/``kid``/``sid``/``nextLink``
points back at the simulator. Field sets follow responses recorded against the real service by
the Azure SDK test suites (create → 202 operation, GET certificate, GET secret, DELETE).

Invariants: times are integer Unix seconds; ``x5t`` is base64url without padding; ``cer`` is
base64 DER; items in lists carry neither ``sid`` nor ``policy``; secret values are only ever
produced by ``secret_bundle``, which the HTTP layer logs as a secret read.
"""

from __future__ import annotations

import base64
from datetime import UTC, datetime
from typing import Any

from batchsim.keyvault.policy import render_policy
from batchsim.keyvault.store import (
    RECOVERABLE_DAYS,
    RECOVERY_LEVEL,
    Certificate,
    CertVersion,
)
from batchsim.keyvault.x509 import NOT_BEFORE_SKEW, add_months, export_pem, export_pkcs12

PENDING_DETAILS = (
    "Pending certificate created. Certificate request is in progress. This may take some time "
    "based on the issuer provider. Please check again later."
)


def attributes(version: CertVersion) -> dict[str, Any]:
    return {
        "enabled": version.enabled,
        "nbf": version.nbf,
        "exp": version.exp,
        "created": version.created,
        "updated": version.updated,
        "recoveryLevel": RECOVERY_LEVEL,
        "recoverableDays": RECOVERABLE_DAYS,
    }


def policy_body(base: str, cert: Certificate) -> dict[str, Any]:
    return render_policy(
        cert.policy,
        f"{base}/certificates/{cert.name}/policy",
        cert.policy_created,
        cert.policy_updated,
    )


def certificate_bundle(
    base: str, cert: Certificate, version: CertVersion, *, with_policy: bool
) -> dict[str, Any]:
    """GET /certificates/{name}/[version]; the versionless form adds the policy."""
    body: dict[str, Any] = {
        "id": f"{base}/certificates/{cert.name}/{version.version}",
        "kid": f"{base}/keys/{cert.name}/{version.version}",
        "sid": f"{base}/secrets/{cert.name}/{version.version}",
        "x5t": version.x5t,
        "cer": version.cer,
        "attributes": attributes(version),
    }
    if version.tags:
        body["tags"] = dict(version.tags)
    if with_policy:
        body["policy"] = policy_body(base, cert)
        if cert.pending is not None:
            body["pending"] = {"id": f"{base}/certificates/{cert.name}/pending"}
    return body


def pending_only_bundle(base: str, cert: Certificate) -> dict[str, Any]:
    """A certificate whose first version is still being issued.

    The real service shows it with a version id, ``enabled: false`` and no ``cer``/``x5t`` (a
    DELETE during creation in the SDK recordings returned that shape). Unconfirmed: the exact
    nbf/exp it reports before issuance; we report the expected validity window.
    """
    assert cert.pending is not None
    created = int(cert.pending.created)
    issued = datetime.fromtimestamp(created, UTC)
    expires = add_months(issued, cert.policy["x509_props"]["validity_months"])
    return {
        "id": f"{base}/certificates/{cert.name}/{cert.pending.version}",
        "attributes": {
            "enabled": False,
            "nbf": int((issued - NOT_BEFORE_SKEW).timestamp()),
            "exp": int(expires.timestamp()),
            "created": created,
            "updated": created,
            "recoveryLevel": RECOVERY_LEVEL,
            "recoverableDays": RECOVERABLE_DAYS,
        },
        "policy": policy_body(base, cert),
        "pending": {"id": f"{base}/certificates/{cert.name}/pending"},
    }


def current_bundle(base: str, cert: Certificate) -> dict[str, Any]:
    current = cert.current
    if current is None:
        return pending_only_bundle(base, cert)
    return certificate_bundle(base, cert, current, with_policy=True)


def operation_body(base: str, cert: Certificate) -> dict[str, Any]:
    """GET /certificates/{name}/pending (and the 202 body of a create)."""
    op = cert.pending
    assert op is not None
    body: dict[str, Any] = {
        "id": f"{base}/certificates/{cert.name}/pending",
        "issuer": {"name": cert.policy["issuer"]["name"]},
        "csr": op.csr,
        "cancellation_requested": False,
        "status": op.status,
    }
    if op.status == "inProgress":
        body["status_details"] = PENDING_DETAILS
    else:
        body["target"] = f"{base}/certificates/{cert.name}"
    body["request_id"] = op.request_id
    return body


def accepted_operation_body(base: str, cert: Certificate) -> dict[str, Any]:
    """The 202 body of a create: always ``inProgress``, as the real service answers.

    With a zero issue delay the operation has already completed internally, so the SDK poller's
    first GET of ``/pending`` sees ``completed`` without sleeping.
    """
    body = operation_body(base, cert)
    body.pop("target", None)
    body.update(status="inProgress", status_details=PENDING_DETAILS)
    return body


def certificate_item(base: str, cert: Certificate) -> dict[str, Any] | None:
    """An entry of GET /certificates (versionless id), or None while nothing is issued."""
    current = cert.current
    if current is None:
        return None
    item: dict[str, Any] = {
        "id": f"{base}/certificates/{cert.name}",
        "x5t": current.x5t,
        "attributes": attributes(current),
    }
    if current.tags:
        item["tags"] = dict(current.tags)
    return item


def version_item(base: str, cert: Certificate, version: CertVersion) -> dict[str, Any]:
    """An entry of GET /certificates/{name}/versions: no ``sid``, no ``policy``."""
    item: dict[str, Any] = {
        "id": f"{base}/certificates/{cert.name}/{version.version}",
        "x5t": version.x5t,
        "attributes": attributes(version),
    }
    if version.tags:
        item["tags"] = dict(version.tags)
    return item


def deleted_bundle(base: str, cert: Certificate) -> dict[str, Any]:
    body: dict[str, Any] = {
        "recoveryId": f"{base}/deletedcertificates/{cert.name}",
        "deletedDate": cert.deleted_date,
        "scheduledPurgeDate": cert.scheduled_purge_date,
    }
    body.update(current_bundle(base, cert))
    return body


def deleted_item(base: str, cert: Certificate) -> dict[str, Any]:
    item: dict[str, Any] = {
        "recoveryId": f"{base}/deletedcertificates/{cert.name}",
        "deletedDate": cert.deleted_date,
        "scheduledPurgeDate": cert.scheduled_purge_date,
        "id": f"{base}/certificates/{cert.name}",
    }
    if cert.current is not None:
        item["x5t"] = cert.current.x5t
        item["attributes"] = attributes(cert.current)
    return item


def secret_bundle(base: str, cert: Certificate, version: CertVersion) -> dict[str, Any]:
    """GET /secrets/{name}[/{version}] of a certificate-backed (``managed``) secret."""
    content_type = cert.policy["secret_props"]["contentType"]
    der = base64.b64decode(version.cer)
    if content_type == "application/x-pem-file":
        value = export_pem(version.key_pem, der)
    else:
        value = base64.b64encode(export_pkcs12(version.key_pem, der, cert.name)).decode("ascii")
    body: dict[str, Any] = {
        "value": value,
        "contentType": content_type,
        "id": f"{base}/secrets/{cert.name}/{version.version}",
        "managed": True,
        "attributes": attributes(version),
        "kid": f"{base}/keys/{cert.name}/{version.version}",
    }
    if version.tags:
        body["tags"] = dict(version.tags)
    return body
