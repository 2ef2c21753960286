"""ARM error bodies and api-version checks, shaped as Azure Resource Manager answers them.

Role: every ARM-side refusal in the simulator is an ``ArmError`` rendered by
``arm_error_response`` as ``{"error": {"code", "message", "target"?, "details"?}}``.

Invariants: handlers raise ``ArmError`` for anything the caller did wrong; the ARM middleware
turns it (and any unexpected exception, as ``InternalServerError`` without a stack trace) into
a JSON response, so no request ever sees an HTML error page or a traceback.
"""

from __future__ import annotations

import json
import re
from typing import Any

from aiohttp import web

# api-versions accepted per resource provider. Batch: what azure-mgmt-batch 19.0.0 sends plus
# the version that introduced updating pools at zero nodes. The others: what the current
# azure-mgmt-msi / azure-mgmt-keyvault send and the versions just before them.
API_VERSIONS: dict[str, tuple[str, ...]] = {
    "Microsoft.Batch": ("2024-07-01", "2025-06-01"),
    "Microsoft.ManagedIdentity": ("2023-01-31", "2024-11-30"),
    "Microsoft.KeyVault": ("2023-07-01", "2024-11-01", "2025-05-01", "2026-05-15"),
    "Microsoft.Authorization": ("2022-04-01",),
    "Microsoft.Resources": ("2022-09-01", "2024-03-01", "2024-07-01", "2024-11-01", "2025-04-01"),
}

_API_VERSION_FORMAT = re.compile(r"^\d{4}-\d{2}-\d{2}(-preview|-beta|-privatepreview|-alpha)?$")


class ArmError(Exception):
    def __init__(
        self,
        status: int,
        code: str,
        message: str,
        *,
        target: str | None = None,
        details: list[dict[str, Any]] | None = None,
        headers: dict[str, str] | None = None,
        from_batch_rp: bool = False,
    ) -> None:
        super().__init__(f"{status} {code}: {message}")
        # The Batch resource provider (unlike ARM's front door) appends "\nRequestId:..\nTime:.."
        # to its messages and names "BatchAccount" as the target; the dispatcher adds both.
        self.from_batch_rp = from_batch_rp
        self.status = status
        self.code = code
        self.message = message
        self.target = target
        self.details = details
        self.headers = headers or {}

    def body(self) -> dict[str, Any]:
        error: dict[str, Any] = {"code": self.code, "message": self.message}
        if self.target is not None:
            error["target"] = self.target
        if self.details is not None:
            error["details"] = self.details
        return {"error": error}


def arm_json(body: Any, status: int = 200, headers: dict[str, str] | None = None) -> web.Response:
    return web.Response(
        status=status,
        body=json.dumps(body).encode(),
        content_type="application/json",
        charset="utf-8",
        headers=headers,
    )


def arm_error_response(err: ArmError) -> web.Response:
    return arm_json(err.body(), status=err.status, headers=err.headers)


def check_api_version(
    provider: str, api_version: str | None, *, resource_type: str, location: str = "global"
) -> str:
    """The request's api-version if the provider supports it, else the ARM 400."""
    if api_version is None or api_version == "":
        raise ArmError(
            400,
            "MissingApiVersionParameter",
            "The api-version query parameter (?api-version=) is required for all requests.",
        )
    supported = API_VERSIONS[provider]
    listed = ",".join(supported)
    if not _API_VERSION_FORMAT.match(api_version):
        raise ArmError(
            400,
            "InvalidApiVersionParameter",
            f"The api-version '{api_version}' is invalid. The supported versions are '{listed}'.",
        )
    if api_version not in supported:
        # Unconfirmed: the exact wording; ARM answers an unknown but well-formed version with
        # NoRegisteredProviderFound naming the type, the versions and the locations.
        raise ArmError(
            400,
            "NoRegisteredProviderFound",
            f"No registered resource provider found for location '{location}' and API version "
            f"'{api_version}' for type '{resource_type}'. The supported api-versions are "
            f"'{listed}'. The supported locations are '{location}'.",
        )
    return api_version


def resource_not_found(resource_type: str, name: str, resource_group: str) -> ArmError:
    """ARM's 404 for a missing top-level (tracked) resource."""
    return ArmError(
        404,
        "ResourceNotFound",
        f"The Resource '{resource_type}/{name}' under resource group '{resource_group}' was not "
        "found. For more details please go to https://aka.ms/ARMResourceNotFoundFix",
    )


def resource_group_not_found(name: str) -> ArmError:
    return ArmError(404, "ResourceGroupNotFound", f"Resource group '{name}' could not be found.")


def subscription_not_found(subscription_id: str) -> ArmError:
    return ArmError(
        404, "SubscriptionNotFound", f"The subscription '{subscription_id}' could not be found."
    )


def invalid_request_body(reason: str, path: str | None = None) -> ArmError:
    # Seen from the service (Azure/AzureRMR#22): InvalidRequestBody, target BatchAccount,
    # details Reason ("Could not find member 'location' on object of type 'Pool'. Path
    # 'location', line 1, position 12.") and PropertyPath. Unconfirmed: other Reason wordings.
    details = [{"code": "Reason", "message": reason}]
    if path is not None:
        details.append({"code": "PropertyPath", "message": path})
    return ArmError(
        400,
        "InvalidRequestBody",
        "The specified Request Body is not syntactically valid.",
        details=details,
        from_batch_rp=True,
    )


def missing_required_property(name: str, path: str) -> ArmError:
    return ArmError(
        400,
        "MissingRequiredProperty",
        "A required property was not specified in the request body.",
        from_batch_rp=True,
        details=[
            {"code": "PropertyName", "message": name},
            {"code": "PropertyPath", "message": path},
        ],
    )


def invalid_property_value(name: str, path: str, value: Any, reason: str | None = None) -> ArmError:
    details = [
        {"code": "PropertyName", "message": name},
        {"code": "PropertyPath", "message": path},
        {
            "code": "PropertyValue",
            "message": json.dumps(value) if not isinstance(value, str) else value,
        },
    ]
    if reason:
        details.insert(0, {"code": "Reason", "message": reason})
    return ArmError(
        400,
        "InvalidPropertyValue",
        "The value provided for one of the properties in the request body is invalid.",
        details=details,
        from_batch_rp=True,
    )


def property_cannot_be_updated(name: str, path: str, reason: str | None = None) -> ArmError:
    # Seen from the service (Azure/azure-sdk-for-net#40325): message and the three details.
    return ArmError(
        400,
        "PropertyCannotBeUpdated",
        "A property that cannot be updated was specified as part of the request.",
        from_batch_rp=True,
        details=[
            {
                "code": "Reason",
                "message": reason
                or "A property that cannot be updated was specified as part of the request.",
            },
            {"code": "PropertyName", "message": name},
            {"code": "PropertyPath", "message": path},
        ],
    )
