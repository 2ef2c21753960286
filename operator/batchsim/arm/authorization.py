"""ARM: ``Microsoft.Authorization/roleAssignments`` at any scope, and the federated identity
credentials of user-assigned identities.

Role assignments (REST spec 2022-04-01, examples ``RoleAssignments_Create*``, ``_Get``,
``_Delete``, ``_ListForScope``): PUT answers 201 with ``{properties: {roleDefinitionId,
principalId, principalType, scope}, id, type, name}``; DELETE 200 with the body, 204 when absent;
list ``{value: [...]}`` with ``$filter=assignedTo('<oid>')`` or ``principalId eq '<oid>'``,
including assignments at parent scopes (``atScope()`` limits to the scope and above, as here).
A second assignment of the same principal, role and scope under another name is refused with 409
``RoleAssignmentExists`` (docs/azure-behaviour.md). Unconfirmed: the status of a re-PUT of the
same name and content (the spec lists 200 and 201; we answer 201 again, nothing changes) and the
wording of ``RoleAssignmentUpdateNotPermitted`` for a re-PUT with other content. A new assignment
takes ``World.role_assignment_delay_s`` (simulated) to reach the data planes: Key Vault keeps
answering 403 meanwhile (``World.vault_allows``). Never kinder: the name must be a GUID, the
role definition id must name a role, and an unknown principal is refused (400
``PrincipalNotFound``, as ARM does for a principal not in the tenant; unconfirmed wording).

Federated identity credentials (``Microsoft.ManagedIdentity`` 2023-01-31,
``FederatedIdentityCredentials_CreateOrUpdate``/``_Get``/``_List``/``_Delete``): each is
``{properties: {issuer, subject, audiences}}``; writing one makes the identity a principal Entra
accepts federated assertions for (issuer + subject + audience must match one, see
``entra/service.py``), with the identity's client id and principal id.
"""

from __future__ import annotations

import re
from typing import Any

from aiohttp import web

from batchsim.arm.errors import ArmError, arm_json
from batchsim.arm.pipeline import RG, ArmCall, ArmRoute, route
from batchsim.arm.poolspec import arm_time
from batchsim.arm.resources import IDENTITY, identity_of
from batchsim.entra.service import FederatedCredential
from batchsim.world import Identity, JsonDict, RoleAssignment

_SCOPE = r"(?P<scope>/subscriptions/(?P<subscriptionId>[^/]+)(?:/.+?)?)"
ROLE_ASSIGNMENT = _SCOPE + r"/providers/Microsoft\.Authorization/roleAssignments/(?P<name>[^/]+)"
ROLE_ASSIGNMENTS = _SCOPE + r"/providers/Microsoft\.Authorization/roleAssignments"
FIC = IDENTITY + r"/federatedIdentityCredentials/(?P<ficName>[^/]+)"
FICS = IDENTITY + r"/federatedIdentityCredentials"
_GUID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$", re.I)
_FILTER = re.compile(r"(?:assignedTo\('|principalId eq ')(?P<oid>[^']+)'", re.I)
del RG


def render_assignment(a: RoleAssignment) -> JsonDict:
    return {
        "properties": {
            "roleDefinitionId": a.role_definition_id,
            "principalId": a.principal_id,
            "principalType": a.principal_type,
            "scope": a.scope,
            "condition": None,
            "conditionVersion": None,
            "createdBy": a.created_by,
            "createdOn": arm_time(a.created_at),
            "updatedOn": arm_time(a.created_at),
        },
        "id": a.arm_id,
        "type": "Microsoft.Authorization/roleAssignments",
        "name": a.name,
    }


def _known_principal(call: ArmCall, object_id: str) -> bool:
    oid = object_id.lower()
    if any(app.object_id.lower() == oid for app in call.sim.directory.apps.values()):
        return True
    return any(i.principal_id.lower() == oid for i in call.sim.world.identities.values())


async def put_role_assignment(call: ArmCall) -> web.Response:
    scope, name = call.params["scope"].rstrip("/"), call.params["name"]
    if not _GUID.match(name):
        raise ArmError(
            400,
            "InvalidRoleAssignmentId",
            f"The role assignment ID '{name}' is not valid. The role assignment ID must be a GUID.",
        )
    body = call.json(batch_rp=False) or {}
    props = body.get("properties") if isinstance(body, dict) else None
    if not isinstance(props, dict):
        raise ArmError(400, "InvalidRequestContent", "The request content was invalid.")
    role = str(props.get("roleDefinitionId") or "")
    principal = str(props.get("principalId") or "")
    if "/providers/Microsoft.Authorization/roleDefinitions/" not in role or not _GUID.match(
        role.rstrip("/").rsplit("/", 1)[-1]
    ):
        raise ArmError(
            400, "InvalidRoleDefinitionId", f"The role definition ID '{role}' is not valid."
        )
    if not _known_principal(call, principal):
        raise ArmError(
            400,
            "PrincipalNotFound",
            f"Principal {principal.replace('-', '')} does not exist in the directory "
            f"{call.sim.tenant_id}.",
        )
    world = call.sim.world
    existing = world.role_assignments.get(name.lower())
    candidate = RoleAssignment(
        name=name,
        scope=scope,
        role_definition_id=role,
        principal_id=principal,
        principal_type=str(props.get("principalType") or "ServicePrincipal"),
        created_at=call.now,
        effective_at=call.now + world.role_assignment_delay_s,
        created_by=call.principal.object_id,
    )
    if existing is not None:
        same = (
            existing.scope.lower() == scope.lower()
            and existing.role_guid == candidate.role_guid
            and existing.principal_id.lower() == principal.lower()
        )
        if not same:
            raise ArmError(
                400,
                "RoleAssignmentUpdateNotPermitted",
                "Tenant ID, application ID, principal ID, and scope are not allowed to be updated.",
            )
        return arm_json(render_assignment(existing), status=201)
    for other in world.role_assignments.values():
        if (
            other.scope.lower() == scope.lower()
            and other.role_guid == candidate.role_guid
            and other.principal_id.lower() == principal.lower()
        ):
            raise ArmError(409, "RoleAssignmentExists", "The role assignment already exists.")
    world.role_assignments[name.lower()] = candidate
    return arm_json(render_assignment(candidate), status=201)


async def get_role_assignment(call: ArmCall) -> web.Response:
    found = call.sim.world.role_assignments.get(call.params["name"].lower())
    if found is None or found.scope.lower() != call.params["scope"].rstrip("/").lower():
        raise ArmError(
            404,
            "RoleAssignmentNotFound",
            "The role assignment '" + call.params["name"] + "' is not found.",
        )
    return arm_json(render_assignment(found))


async def delete_role_assignment(call: ArmCall) -> web.Response:
    world = call.sim.world
    found = world.role_assignments.get(call.params["name"].lower())
    if found is None or found.scope.lower() != call.params["scope"].rstrip("/").lower():
        return web.Response(status=204)
    del world.role_assignments[found.name.lower()]
    return arm_json(render_assignment(found))


async def list_role_assignments(call: ArmCall) -> web.Response:
    scope = call.params["scope"].rstrip("/")
    wanted = _FILTER.search(call.request.query.get("$filter", ""))
    items = [
        render_assignment(a)
        for a in call.sim.world.role_assignments.values()
        if a.covers(scope) and (wanted is None or a.principal_id.lower() == wanted["oid"].lower())
    ]
    return arm_json({"value": items})


def _render_fic(identity: Identity, name: str, fic: JsonDict) -> JsonDict:
    return {
        "id": f"{identity.arm_id}/federatedIdentityCredentials/{name}",
        "name": name,
        "type": "Microsoft.ManagedIdentity/userAssignedIdentities/federatedIdentityCredentials",
        "properties": dict(fic),
    }


def sync_directory(call_sim: Any, identity: Identity) -> None:
    """Make the directory's view of the identity (a service principal with its client id and
    principal id) accept exactly the identity's federated credentials."""
    directory = call_sim.directory
    app = directory.app(identity.client_id)
    if app is None:
        app = directory.register(
            identity.name, client_id=identity.client_id, object_id=identity.principal_id
        )
    app.federated = [
        FederatedCredential(str(f["issuer"]), str(f["subject"]), list(f["audiences"]))
        for f in identity.federated_credentials.values()
    ]


async def put_fic(call: ArmCall) -> web.Response:
    identity = identity_of(call)
    body = call.json(batch_rp=False) or {}
    props = body.get("properties") if isinstance(body, dict) else None
    if not isinstance(props, dict):
        raise ArmError(400, "BadRequest", "The request content was invalid.")
    issuer, subject = str(props.get("issuer") or ""), str(props.get("subject") or "")
    audiences = props.get("audiences") or ["api://AzureADTokenExchange"]
    if not issuer.startswith("https://") or not subject or not isinstance(audiences, list):
        # Unconfirmed wording; the identity RP refuses non-https issuers and empty subjects.
        raise ArmError(
            400,
            "BadRequest",
            "Issuer must be a valid https URL, subject must be non-empty and audiences a list.",
        )
    name = call.params["ficName"]
    created = name not in identity.federated_credentials
    identity.federated_credentials[name] = {
        "issuer": issuer,
        "subject": subject,
        "audiences": [str(a) for a in audiences],
    }
    sync_directory(call.sim, identity)
    rendered = _render_fic(identity, name, identity.federated_credentials[name])
    return arm_json(rendered, status=201 if created else 200)


async def get_fic(call: ArmCall) -> web.Response:
    identity = identity_of(call)
    fic = identity.federated_credentials.get(call.params["ficName"])
    if fic is None:
        raise ArmError(
            404,
            "NotFound",
            f"Federated identity credential '{call.params['ficName']}' was not found.",
        )
    return arm_json(_render_fic(identity, call.params["ficName"], fic))


async def list_fics(call: ArmCall) -> web.Response:
    identity = identity_of(call)
    return arm_json(
        {"value": [_render_fic(identity, n, f) for n, f in identity.federated_credentials.items()]}
    )


async def delete_fic(call: ArmCall) -> web.Response:
    identity = identity_of(call)
    if identity.federated_credentials.pop(call.params["ficName"], None) is None:
        return web.Response(status=204)
    sync_directory(call.sim, identity)
    return web.Response(status=200)


def routes() -> list[ArmRoute]:
    ra, ras = "roleAssignments", "Microsoft.Authorization"
    fic = "userAssignedIdentities/federatedIdentityCredentials"
    mi = "Microsoft.ManagedIdentity"
    return [
        route("PUT", ROLE_ASSIGNMENT, ras, ra, "RoleAssignments_Create", put_role_assignment),
        route("GET", ROLE_ASSIGNMENT, ras, ra, "RoleAssignments_Get", get_role_assignment),
        route("DELETE", ROLE_ASSIGNMENT, ras, ra, "RoleAssignments_Delete", delete_role_assignment),
        route(
            "GET", ROLE_ASSIGNMENTS, ras, ra, "RoleAssignments_ListForScope", list_role_assignments
        ),
        route("PUT", FIC, mi, fic, "FederatedIdentityCredentials_CreateOrUpdate", put_fic),
        route("GET", FIC, mi, fic, "FederatedIdentityCredentials_Get", get_fic),
        route("DELETE", FIC, mi, fic, "FederatedIdentityCredentials_Delete", delete_fic),
        route("GET", FICS, mi, fic, "FederatedIdentityCredentials_List", list_fics),
    ]
