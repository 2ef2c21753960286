"""The Key Vault VM extension, run logically on each simulated node.

Role: parse the extension's settings (1.0/2.0 string URLs and 3.0 objects; Linux and Windows),
decide whether a fetch of the observed certificates succeeds on a node, keep the per-node
runtime (attempts, fetched versions, polling), and render the Batch data plane's extension
entry (``provisioningState``, ``vmExtension``, ``instanceView``).

A fetch succeeds only if: the node has a user-assigned identity; ``msiClientId`` equals the
clientId of one of them (not the principalId, not the resource id); that identity's principal
may ``get`` secrets on the vault (ARM access policies); and every URL is a ``/secrets/`` URL of
an existing, enabled certificate (``KeyVaultService.resolve_secret``). A versionless URL gets
the current version at each poll; a versioned URL always resolves to that version, so a node
configured with one never rotates.

What the data plane shows is **never kinder than Azure** by default (``NodeBehaviour.
talkative_extension`` False). Evidence, in ``../shared/azure-recordings/`` (file [entry]) unless
named otherwise; the README's table lists every behaviour with its status:
* while the extension is being provisioned: ``provisioningState`` "Creating" and
  ``instanceView: {}`` — batch-dataplane-nodes-extensions.json [2], [3];
* provisioned: ``level`` the integer ``0``, code ``ProvisioningState/succeeded``, display
  "Provisioning succeeded", message "Plugin enabled" (KeyVaultForLinux), no ``time``, no
  ``subStatuses`` — [5], [6]. KeyVaultForWindows: "Successfully started Key Vault extension
  service. <time>" (the Batch docs' example, quoted in azure-behaviour.md; no recording);
* a failing fetch: the generic "Failed to download one or more certificates, retrying..." while
  Transitioning, no cause, no per-certificate version (azure-behaviour.md, from the extension's
  docs and MicrosoftDocs issues; the cause is in the VM's local log only);
* failed retries back off (increasing intervals: ``extension_retry_interval_s`` doubling, capped
  at one hour) — the docs say "retrying up to 25 times" then Error; the curve itself has **no
  evidence** (we chose one that makes failure slow to surface, not quick);
* the final Error after ``extension_max_attempts``: "Failed" with level 2 and the same generic
  text without "retrying" — **no evidence** for the exact text;
* without ``requireInitialSync`` a failing fetch is invisible (provisioning succeeds, "Plugin
  enabled") and a failure after a first success is invisible too — **no evidence either way**:
  we model the less helpful answer;
* ``vmExtension.settings`` is rendered as a JSON *string* (azure-behaviour.md; no recording has
  settings, so **no evidence** beyond the docs); ``protectedSettings`` never; and
  ``enableAutomaticUpgrade: false`` is added as in the 2025 recording [2].

Talkative mode (tests that need to see inside a node) keeps the old invented model: per-cause
messages, a subStatus ``ComponentStatus/observedCertificates/succeeded`` whose message is JSON
``{"observedCertificates": [{"url", "version", "fetchedAt"}]}``, a Warning subStatus after a
failure that follows a success, string levels and a fixed retry interval.

Whatever the view admits, the runtime keeps per node the version last fetched per observed URL
(``ExtensionRuntime.versions``): what the node really holds.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Protocol
from urllib.parse import urlsplit

from batchsim.world import ExtensionRuntime, JsonDict, Node, NodeBehaviour, Vault

KV_PUBLISHER = "microsoft.azure.keyvault"
KV_TYPES = {"keyvaultforlinux": "Linux", "keyvaultforwindows": "Windows"}
DEFAULT_POLLING_S = 3600.0
RETRY_CAP_S = 3600.0  # the longest pause between initial-sync retries (no evidence: our choice)
GENERIC_RETRYING = "Failed to download one or more certificates, retrying..."
GENERIC_FAILED = "Failed to download one or more certificates."
LEVEL_INFO, LEVEL_ERROR = 0, 2  # integers, as recorded ([5], [6]); the spec example writes "Info"
VAULT_HOST_SUFFIX = ".vault.sim.test"


class SecretResolutionLike(Protocol):
    """What ``KeyVaultService.resolve_secret`` answers (read-only view)."""

    @property
    def ok(self) -> bool: ...
    @property
    def version(self) -> str | None: ...
    @property
    def code(self) -> str | None: ...
    @property
    def message(self) -> str | None: ...


Resolver = Callable[[str], SecretResolutionLike]
VaultLookup = Callable[[str], Vault | None]
# (vault, principal object id, kind, permission) → allowed: access policies, or role
# assignments on an RBAC vault (``World.vault_allows``); default: the vault's access policies.
Authorize = Callable[[Vault, str, str, str], bool]


@dataclass(frozen=True)
class KvSettings:
    name: str
    os_type: str
    type_handler_version: str
    polling_s: float
    require_initial_sync: bool
    urls: tuple[str, ...]
    msi_client_id: str | None
    problem: str | None = None  # settings the extension cannot use


@dataclass(frozen=True)
class FetchOutcome:
    ok: bool
    versions: dict[str, str]
    code: str | None = None
    message: str | None = None


def is_kv_extension(ext: JsonDict) -> bool:
    return (
        str(ext.get("publisher", "")).lower() == KV_PUBLISHER
        and str(ext.get("type", "")).lower() in KV_TYPES
    )


def parse_kv_extension(ext: JsonDict) -> KvSettings:
    """Settings of a Key Vault extension entry (``is_kv_extension`` must hold)."""
    settings: Any = ext.get("settings") or {}
    problem: str | None = None
    if isinstance(settings, str):  # some clients send settings as a JSON string
        try:
            settings = json.loads(settings)
        except ValueError:
            settings, problem = {}, "settings is not valid JSON"
    sms = settings.get("secretsManagementSettings") if isinstance(settings, dict) else None
    auth = settings.get("authenticationSettings") if isinstance(settings, dict) else None
    sms = sms if isinstance(sms, dict) else {}
    auth = auth if isinstance(auth, dict) else {}
    if not sms and problem is None:
        problem = "settings.secretsManagementSettings is missing"
    raw_poll = sms.get("pollingIntervalInS", str(int(DEFAULT_POLLING_S)))
    try:
        # The documented type is a string; the extension also copes with a number.
        polling = float(raw_poll)
        if polling <= 0 or math.isnan(polling):
            raise ValueError
    except (TypeError, ValueError):
        polling, problem = (
            DEFAULT_POLLING_S,
            problem or f"pollingIntervalInS {raw_poll!r} is invalid",
        )
    urls: list[str] = []
    for item in sms.get("observedCertificates") or []:
        if isinstance(item, str):
            urls.append(item)
        elif isinstance(item, dict) and isinstance(item.get("url"), str):
            urls.append(item["url"])
        else:
            problem = problem or "an observedCertificates entry has no url"
    if not urls and problem is None:
        problem = "settings.secretsManagementSettings.observedCertificates is empty"
    require = sms.get("requireInitialSync", False)
    client_id = auth.get("msiClientId")
    return KvSettings(
        name=str(ext.get("name", "")),
        os_type=KV_TYPES[str(ext.get("type", "")).lower()],
        type_handler_version=str(ext.get("typeHandlerVersion", "")),
        polling_s=polling,
        require_initial_sync=require is True or str(require).lower() == "true",
        urls=tuple(urls),
        msi_client_id=str(client_id) if client_id else None,
        problem=problem,
    )


def fetch(
    settings: KvSettings,
    node: Node,
    vault_lookup: VaultLookup,
    resolve: Resolver,
    tenant_id: str = "",
    authorize: Authorize | None = None,
) -> FetchOutcome:
    """One download attempt of every observed certificate, as the extension on ``node``."""
    if node.fetch_blocked:  # control API: the node cannot reach Key Vault (network, DNS, ...)
        return FetchOutcome(
            False,
            {},
            "VaultUnreachable",
            "Failed to download one or more certificates, retrying: the vault could not be "
            "reached from this node.",
        )
    if settings.problem:
        return FetchOutcome(
            False, {}, "InvalidSettings", f"Invalid extension settings: {settings.problem}."
        )
    if not node.identities:
        return FetchOutcome(
            False,
            {},
            "NoManagedIdentity",
            "No managed identity is assigned to this VM: the Key Vault "
            "extension cannot obtain a token.",
        )
    identity = next(
        (
            ids
            for ids in node.identities.values()
            if settings.msi_client_id
            and ids.get("clientId", "").lower() == settings.msi_client_id.lower()
        ),
        None,
    )
    if identity is None:
        wanted = settings.msi_client_id or "(not set)"
        return FetchOutcome(
            False,
            {},
            "IdentityNotFound",
            f"Identity not found: authenticationSettings.msiClientId "
            f"'{wanted}' is not the clientId of a user-assigned identity "
            "of this VM.",
        )
    versions: dict[str, str] = {}
    for url in settings.urls:
        parts = urlsplit(url)
        host = (parts.hostname or "").lower()
        if parts.scheme != "https" or not host.endswith(VAULT_HOST_SUFFIX):
            return FetchOutcome(
                False,
                {},
                "HostNotFound",
                f"Failed to download {url}: the host could not be resolved.",
            )
        vault_name = host[: -len(VAULT_HOST_SUFFIX)]
        vault = vault_lookup(vault_name)
        if vault is None:
            return FetchOutcome(
                False,
                {},
                "VaultNotFound",
                f"Failed to download {url}: vault '{vault_name}' not found.",
            )
        # The docs ask for secrets get + list; fetching a known URL needs get. Unconfirmed
        # whether the extension also lists (a get-only grant succeeds here).
        allows = authorize or (lambda v, oid, kind, permission: v.allows(oid, kind, permission))
        if not allows(vault, identity.get("principalId", ""), "secrets", "get"):
            # The Key Vault 403 text names the caller and the vault like this.
            return FetchOutcome(
                False,
                {},
                "Forbidden",
                f"Failed to download {url}: Forbidden (403). The user, group "
                f"or application 'appid={identity.get('clientId')};oid="
                f"{identity.get('principalId')};iss=https://sts.windows.net/"
                f"{tenant_id}/' does not have secrets get "
                f"permission on key vault '{vault.name};location="
                f"{vault.location}'.",
            )
        result = resolve(url)
        if not result.ok or not result.version:
            return FetchOutcome(
                False,
                {},
                result.code or "SecretNotFound",
                f"Failed to download {url}: {result.code}: {result.message}",
            )
        versions[url] = result.version
    return FetchOutcome(True, versions)


def step(
    rt: ExtensionRuntime,
    settings: KvSettings,
    node: Node,
    now: float,
    behaviour: NodeBehaviour,
    do_fetch: Callable[[], FetchOutcome],
) -> None:
    """Advance one extension's runtime to ``now`` (simulated seconds)."""
    if now < node.ready_at or rt.provisioning_state == "Failed":
        return
    if not rt.succeeded_once:
        if rt.attempts == 0 and rt.next_attempt < node.ready_at:
            rt.next_attempt = node.ready_at
        if now < rt.next_attempt:
            return
        outcome = do_fetch()
        if outcome.ok:
            _record_success(rt, outcome, now, settings)
            return
        if behaviour.talkative_extension:
            interval = max(behaviour.extension_retry_interval_s, 1e-6)
            elapsed_attempts = int((now - rt.next_attempt) // interval) + 1
            rt.attempts += elapsed_attempts
            rt.next_attempt += elapsed_attempts * interval
        else:
            # Increasing backoff: attempt n waits base * 2**(n-1), capped. Catch up on every
            # attempt that fell due while nobody looked (the clock may jump).
            while True:
                rt.attempts += 1
                rt.next_attempt += retry_pause(behaviour, rt.attempts)
                if rt.next_attempt > now or rt.attempts >= behaviour.extension_max_attempts:
                    break
        rt.error_code, rt.error_message, rt.status_time = outcome.code, outcome.message, now
        if settings.require_initial_sync:
            if rt.attempts >= behaviour.extension_max_attempts:
                rt.attempts = behaviour.extension_max_attempts
                rt.provisioning_state = "Failed"
            else:
                rt.provisioning_state = "Creating"
        else:
            rt.provisioning_state = "Succeeded"
        return
    if now < rt.next_poll:
        return
    outcome = do_fetch()
    polls = int((now - rt.next_poll) // settings.polling_s) + 1
    rt.last_poll = now
    rt.next_poll += polls * settings.polling_s
    if outcome.ok:
        for url, version in outcome.versions.items():
            if rt.versions.get(url) != version:
                rt.versions[url] = version
                rt.version_times[url] = now
        rt.error_code = rt.error_message = None
    else:
        rt.error_code, rt.error_message = outcome.code, outcome.message


def retry_pause(behaviour: NodeBehaviour, attempts: int) -> float:
    """Pause after the ``attempts``-th failed initial sync (realistic mode)."""
    base = max(behaviour.extension_retry_interval_s, 1e-6)
    return float(min(RETRY_CAP_S, base * 2 ** min(attempts - 1, 30)))


def _record_success(
    rt: ExtensionRuntime, outcome: FetchOutcome, now: float, settings: KvSettings
) -> None:
    rt.succeeded_once = True
    rt.provisioning_state = "Succeeded"
    rt.attempts += 1
    rt.error_code = rt.error_message = None
    rt.status_time = now
    rt.last_poll = now
    rt.next_poll = now + settings.polling_s
    rt.versions = dict(outcome.versions)
    rt.version_times = dict.fromkeys(outcome.versions, now)


def _time(seconds: float) -> str:
    return datetime.fromtimestamp(seconds, UTC).isoformat().replace("+00:00", "Z")


def _status(code: str, display: str, level: str, message: str, at: float) -> JsonDict:
    return {
        "code": code,
        "displayStatus": display,
        "level": level,
        "message": message,
        "time": _time(at),
    }


def rendered_vm_extension(ext: JsonDict) -> JsonDict:
    """``vmExtension`` as the data plane returns it (realistic mode): no protectedSettings,
    ``settings`` as a JSON string, ``enableAutomaticUpgrade`` filled in."""
    out = {k: v for k, v in ext.items() if k not in ("protectedSettings", "settings")}
    out.setdefault("autoUpgradeMinorVersion", False)
    out.setdefault("enableAutomaticUpgrade", False)
    if ext.get("settings") is not None:
        settings = ext["settings"]
        out["settings"] = settings if isinstance(settings, str) else json.dumps(settings)
    return out


def _realistic_status(code: str, display: str, level: int, message: str) -> JsonDict:
    return {"code": code, "level": level, "displayStatus": display, "message": message}


def render_kv_extension_realistic(
    ext: JsonDict, rt: ExtensionRuntime, settings: KvSettings, now: float, node: Node
) -> JsonDict:
    """What a real node shows: see the module docstring for the evidence of each line."""
    name = ext.get("name")
    vm_extension = rendered_vm_extension(ext)
    if now < node.ready_at or (rt.attempts == 0 and not rt.succeeded_once):
        return {"provisioningState": "Creating", "instanceView": {}, "vmExtension": vm_extension}
    if rt.provisioning_state == "Failed":
        status = _realistic_status(
            "ProvisioningState/failed", "Provisioning failed", LEVEL_ERROR, GENERIC_FAILED
        )
        state = "Failed"
    elif not rt.succeeded_once and settings.require_initial_sync:
        status = _realistic_status(
            "ProvisioningState/transitioning", "Transitioning", LEVEL_INFO, GENERIC_RETRYING
        )
        state = "Creating"
    else:
        started = node.ready_at if not rt.succeeded_once else rt.status_time
        message = (
            f"Successfully started Key Vault extension service. {_time(started)}"
            if settings.os_type == "Windows"
            else "Plugin enabled"
        )
        status = _realistic_status(
            "ProvisioningState/succeeded", "Provisioning succeeded", LEVEL_INFO, message
        )
        state = "Succeeded"
    return {
        "provisioningState": state,
        "instanceView": {"name": name, "statuses": [status]},
        "vmExtension": vm_extension,
    }


BATCH_NODE_EXTENSION: JsonDict = {
    # Batch's own bootstrap extension, listed on every node ([2], [3], [5]).
    "name": "batchNodeExtension",
    "publisher": "Microsoft.Azure.Extensions",
    "type": "CustomScript",
    "typeHandlerVersion": "2.0",
    "autoUpgradeMinorVersion": True,
    "enableAutomaticUpgrade": False,
}


def render_plain_extension_realistic(ext: JsonDict, node: Node, now: float) -> JsonDict:
    """Any extension we do not simulate (Batch's own included): Creating ``{}``, then
    Succeeded with an integer level ([2], [5])."""
    vm_extension = rendered_vm_extension(ext)
    if now < node.ready_at:
        return {"provisioningState": "Creating", "instanceView": {}, "vmExtension": vm_extension}
    message = (
        f"Enable succeeded: \n[stdout]\n{_time(node.ready_at)} - bootstrap.sh end\n\n[stderr]\n"
        if ext.get("name") == BATCH_NODE_EXTENSION["name"]
        else "Enable succeeded"
    )
    return {
        "provisioningState": "Succeeded",
        "instanceView": {
            "name": ext.get("name"),
            "statuses": [
                _realistic_status(
                    "ProvisioningState/succeeded", "Provisioning succeeded", LEVEL_INFO, message
                )
            ],
        },
        "vmExtension": vm_extension,
    }


def render_kv_extension(
    ext: JsonDict,
    rt: ExtensionRuntime,
    settings: KvSettings,
    behaviour: NodeBehaviour,
    now: float,
    node: Node,
) -> JsonDict:
    """The data plane's ``NodeVMExtension`` for a Key Vault extension."""
    statuses: list[JsonDict]
    sub: list[JsonDict] = []
    at = rt.status_time or node.ready_at
    if now < node.ready_at or (rt.attempts == 0 and not rt.succeeded_once):
        state = "Creating"
        statuses = [
            _status(
                "ProvisioningState/transitioning",
                "Transitioning",
                "Info",
                "Enabling Key Vault extension.",
                min(now, node.ready_at),
            )
        ]
    elif rt.provisioning_state == "Failed":
        state = "Failed"
        statuses = [
            _status(
                "ProvisioningState/failed",
                "Provisioning failed",
                "Error",
                f"Key Vault extension failed after {rt.attempts} attempts: {rt.error_message}",
                at,
            )
        ]
    elif not rt.succeeded_once and settings.require_initial_sync:
        state = "Creating"
        statuses = [
            _status(
                "ProvisioningState/transitioning",
                "Transitioning",
                "Warning",
                f"Waiting for the initial sync of observed certificates (attempt "
                f"{rt.attempts} of {behaviour.extension_max_attempts}): "
                f"{rt.error_message}",
                at,
            )
        ]
    else:
        state = "Succeeded"
        started = node.ready_at if not rt.succeeded_once else rt.status_time
        statuses = [
            _status(
                "ProvisioningState/succeeded",
                "Provisioning succeeded",
                "Info",
                f"Successfully started Key Vault extension service. {_time(started)}",
                started,
            )
        ]
    if rt.versions:
        certs = [
            {"url": u, "version": v, "fetchedAt": _time(rt.version_times.get(u, at))}
            for u, v in rt.versions.items()
        ]
        sub.append(
            _status(
                "ComponentStatus/observedCertificates/succeeded",
                "Certificates downloaded",
                "Info",
                json.dumps({"observedCertificates": certs}),
                rt.last_poll or at,
            )
        )
    if rt.error_message and state != "Failed":
        level = "Warning" if rt.succeeded_once else "Error"
        sub.append(
            _status(
                f"ComponentStatus/{rt.error_code}/failed",
                "Certificate fetch failed",
                level,
                rt.error_message,
                rt.last_poll if rt.succeeded_once else at,
            )
        )
    return {
        "provisioningState": state,
        "vmExtension": ext,
        "instanceView": {"name": ext.get("name"), "statuses": statuses, "subStatuses": sub},
    }


def render_plain_extension(ext: JsonDict, node: Node, now: float) -> JsonDict:
    """Any other extension: provisioned once the node has booted (not simulated further)."""
    if now < node.ready_at:
        state, status = (
            "Creating",
            _status(
                "ProvisioningState/transitioning",
                "Transitioning",
                "Info",
                "Enabling extension.",
                now,
            ),
        )
    else:
        state, status = (
            "Succeeded",
            _status(
                "ProvisioningState/succeeded",
                "Provisioning succeeded",
                "Info",
                "Enable succeeded.",
                node.ready_at,
            ),
        )
    return {
        "provisioningState": state,
        "vmExtension": ext,
        "instanceView": {"name": ext.get("name"), "statuses": [status], "subStatuses": []},
    }
