"""spec (+ looked-up facts) → the ARM ``Microsoft.Batch/batchAccounts/pools`` request body.

Invariants (each relied on by users, see ``shared/docs/azure-behaviour.md``):

* ``identity`` is a sibling of ``properties``, keyed by the identity's full ARM resource id.
* The Key Vault extension observes **versionless** ``/secrets/`` URIs only, authenticates with the
  identity's **clientId** (never the principal id or resource id), and renders
  ``pollingIntervalInS`` as a string.
* Extension 1.0/2.0 renders ``observedCertificates`` as URL strings with one store for all;
  3.0 renders one object per certificate with its own store.
* The owner metadata marks the pool as ours, so a crash between "PUT sent" and "status written"
  is recovered by adoption rather than by creating or clobbering a pool.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from batchcert.models.names import OWNER_METADATA, UID_METADATA
from batchcert.models.spec import (
    LINUX_CERT_STORE_LOCATION,
    WINDOWS_CERT_STORE_LOCATION,
    WINDOWS_CERT_STORE_NAME,
    BatchCertPoolSpec,
    CertificateRef,
    OsType,
)

KEYVAULT_EXTENSION_PUBLISHER = "Microsoft.Azure.KeyVault"

_MSI_ENDPOINT = {
    OsType.LINUX: "http://169.254.169.254/metadata/identity",
    OsType.WINDOWS: "http://169.254.169.254/metadata/identity/oauth2/token",
}
_EXTENSION_TYPE = {OsType.LINUX: "KeyVaultForLinux", OsType.WINDOWS: "KeyVaultForWindows"}


@dataclass(frozen=True)
class Owner:
    """The Kubernetes object a pool belongs to."""

    namespace: str
    name: str
    uid: str

    @property
    def reference(self) -> str:
        return f"{self.namespace}/{self.name}"


def build_owner_metadata(owner: Owner) -> list[dict[str, str]]:
    return [
        {"name": OWNER_METADATA, "value": owner.reference},
        {"name": UID_METADATA, "value": owner.uid},
    ]


def owner_uid_of(pool_properties: dict[str, Any]) -> str | None:
    """The uid the pool's metadata says owns it, or None for a pool we did not create."""
    for item in pool_properties.get("metadata") or []:
        if item.get("name") == UID_METADATA:
            value = item.get("value")
            return str(value) if value is not None else None
    return None


def _store_location(cert: CertificateRef, os_type: OsType) -> str:
    if cert.certificate_store_location:
        return cert.certificate_store_location
    return LINUX_CERT_STORE_LOCATION if os_type is OsType.LINUX else WINDOWS_CERT_STORE_LOCATION


def _store_name(cert: CertificateRef) -> str:
    return cert.certificate_store_name or WINDOWS_CERT_STORE_NAME


def build_secrets_management_settings(spec: BatchCertPoolSpec) -> dict[str, Any]:
    os_type = spec.resolved_os_type
    ext = spec.key_vault_extension
    settings: dict[str, Any] = {
        "pollingIntervalInS": str(ext.polling_interval_seconds),
        "requireInitialSync": ext.require_initial_sync,
    }
    certs = spec.certificates
    if ext.major_version >= 3:
        observed: list[dict[str, Any]] = []
        for cert in certs:
            item: dict[str, Any] = {"url": cert.versionless_secret_uri}
            if os_type is OsType.WINDOWS:
                item["certificateStoreName"] = _store_name(cert)
            item["certificateStoreLocation"] = _store_location(cert, os_type)
            observed.append(item)
        settings["observedCertificates"] = observed
        return settings
    # 1.0/2.0 have one store for every certificate: admission guarantees they agree.
    settings["certificateStoreLocation"] = _store_location(certs[0], os_type)
    if os_type is OsType.WINDOWS:
        settings["certificateStoreName"] = _store_name(certs[0])
        settings["linkOnRenewal"] = False
    settings["observedCertificates"] = [cert.versionless_secret_uri for cert in certs]
    return settings


def build_keyvault_extension(spec: BatchCertPoolSpec, identity_client_id: str) -> dict[str, Any]:
    os_type = spec.resolved_os_type
    ext = spec.key_vault_extension
    return {
        "name": ext.name,
        "publisher": KEYVAULT_EXTENSION_PUBLISHER,
        "type": _EXTENSION_TYPE[os_type],
        "typeHandlerVersion": ext.type_handler_version,
        "autoUpgradeMinorVersion": ext.auto_upgrade_minor_version,
        "settings": {
            "secretsManagementSettings": build_secrets_management_settings(spec),
            "authenticationSettings": {
                "msiEndpoint": _MSI_ENDPOINT[os_type],
                "msiClientId": identity_client_id,
            },
        },
    }


def build_scale_settings(spec: BatchCertPoolSpec) -> dict[str, Any]:
    if spec.scale.auto is not None:
        return {
            "autoScale": {
                "formula": spec.scale.auto.formula,
                "evaluationInterval": spec.scale.auto.evaluation_interval,
            }
        }
    fixed = spec.scale.fixed
    assert fixed is not None  # the model guarantees exactly one
    body: dict[str, Any] = {
        "targetDedicatedNodes": fixed.target_dedicated_nodes,
        "targetLowPriorityNodes": fixed.target_low_priority_nodes,
        "resizeTimeout": fixed.resize_timeout,
    }
    if fixed.node_deallocation_option:
        body["nodeDeallocationOption"] = fixed.node_deallocation_option
    return {"fixedScale": body}


def build_zero_scale_settings() -> dict[str, Any]:
    """Scale to no nodes: the state Azure needs before it accepts a disruptive change."""
    return {"fixedScale": {"targetDedicatedNodes": 0, "targetLowPriorityNodes": 0}}


def build_deployment_configuration(
    spec: BatchCertPoolSpec, identity_client_id: str
) -> dict[str, Any]:
    image = spec.image
    return {
        "virtualMachineConfiguration": {
            "imageReference": {
                "publisher": image.publisher,
                "offer": image.offer,
                "sku": image.sku,
                "version": image.version,
            },
            "nodeAgentSkuId": spec.node_agent_sku_id,
            "extensions": [build_keyvault_extension(spec, identity_client_id)],
        }
    }


def build_identity(spec: BatchCertPoolSpec) -> dict[str, Any]:
    return {"type": "UserAssigned", "userAssignedIdentities": {spec.identity.resource_id: {}}}


def build_pool_body(
    spec: BatchCertPoolSpec, *, identity_client_id: str, owner: Owner
) -> dict[str, Any]:
    """The full PUT body for the pool (a PUT replaces: everything we own is in it)."""
    return {
        "identity": build_identity(spec),
        "properties": {
            "vmSize": spec.vm_size,
            "taskSchedulingPolicy": {"nodeFillType": spec.task_scheduling_policy.node_fill_type},
            "deploymentConfiguration": build_deployment_configuration(spec, identity_client_id),
            "scaleSettings": build_scale_settings(spec),
            "metadata": build_owner_metadata(owner),
        },
    }
