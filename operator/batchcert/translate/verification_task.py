"""Node verification: the Batch job and task bodies, and the fixed command the task runs.

The task prints, for certificate ``i`` of the spec, a line ``batchcert <i> <what was found>`` and
finally ``batchcert done``:
* Linux: ``openssl x509 -noout -fingerprint -sha1`` on the file the Key Vault extension writes,
  ``<certificateStoreLocation>/<vault name>.<certificate name>``, giving
  ``batchcert 0 SHA1 Fingerprint=7C:2C:...`` (or ``batchcert 0 MISSING``);
* Windows: PowerShell lists the thumbprints in the named store, one line per certificate there
  (``batchcert 0 7C2C...``); the verdict looks for the versions' thumbprints among them.

Invariants: the command is built by the operator alone; no user input reaches a shell
unquoted — vault and certificate names and store paths are validated against what Key Vault and
the extension accept (a value outside that is refused, never escaped into shape) and then quoted
(``shlex.quote`` for sh, doubled single quotes for PowerShell). The task runs as an elevated
pool auto-user (the extension's files are root-only), with ``maxWallClockTime`` = taskTimeout and
no retries, pinned to its node by affinity id.
"""

from __future__ import annotations

import hashlib
import re
import shlex
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from batchcert.models.spec import (
    LINUX_CERT_STORE_LOCATION,
    WINDOWS_CERT_STORE_LOCATION,
    WINDOWS_CERT_STORE_NAME,
    BatchCertPoolSpec,
    OsType,
)

_VAULT_NAME = re.compile(r"^[A-Za-z0-9-]{3,24}$")  # Key Vault's own rule for vault names
_CERT_NAME = re.compile(r"^[0-9A-Za-z-]{1,127}$")  # Key Vault's rule for object names
_LINUX_PATH = re.compile(r"^/[A-Za-z0-9._/-]{1,255}$")
_WINDOWS_LOCATIONS = frozenset({"LocalMachine", "CurrentUser"})
_WINDOWS_STORE = re.compile(r"^[A-Za-z0-9_ -]{1,64}$")
TASK_ID_PREFIX = "bcv-"


class UnsafeCommandInputError(ValueError):
    """A name or path the verification command will not carry (see the module invariants)."""


@dataclass(frozen=True)
class CertificateTarget:
    """Where one spec certificate lives on a node."""

    index: int
    vault: str  # vault name (first DNS label of vaultUrl)
    name: str
    location: str  # Linux directory, or Windows store location
    store: str | None = None  # Windows store name


def build_job_id(spec: BatchCertPoolSpec, object_name: str) -> str:
    """``spec.verification.jobId`` or ``batchcert-verify-<poolName>`` (≤ 64 characters)."""
    if spec.verification.job_id:
        return spec.verification.job_id
    pool = spec.resolved_pool_name(object_name)
    job_id = f"batchcert-verify-{pool}"
    if len(job_id) <= 64:
        return job_id
    digest = hashlib.sha1(pool.encode(), usedforsecurity=False).hexdigest()[:8]
    return f"batchcert-verify-{pool[:38]}-{digest}"


def build_task_id(node_id: str, run: int) -> str:
    """Batch ids are ≤ 64 of ``[A-Za-z0-9_-]``; node ids are longer, so they are hashed."""
    digest = hashlib.sha1(node_id.encode(), usedforsecurity=False).hexdigest()[:20]
    return f"{TASK_ID_PREFIX}{digest}-{run}"


def build_targets(spec: BatchCertPoolSpec) -> list[CertificateTarget]:
    """Validated locations of every certificate (raises ``UnsafeCommandInputError``)."""
    os_type = spec.resolved_os_type
    targets = []
    for index, cert in enumerate(spec.certificates):
        vault = (urlsplit(cert.vault).hostname or "").split(".", 1)[0]
        if not _VAULT_NAME.match(vault):
            raise UnsafeCommandInputError(f"vault name {vault!r} is not a Key Vault name")
        if not _CERT_NAME.match(cert.cert_name):
            raise UnsafeCommandInputError(
                f"certificate name {cert.cert_name!r} is not a Key Vault name"
            )
        if os_type is OsType.LINUX:
            location = cert.certificate_store_location or LINUX_CERT_STORE_LOCATION
            if not _LINUX_PATH.match(location) or "/../" in f"{location}/":
                raise UnsafeCommandInputError(
                    f"certificateStoreLocation {location!r} is not a plain path"
                )
            targets.append(CertificateTarget(index, vault, cert.cert_name, location.rstrip("/")))
        else:
            location = cert.certificate_store_location or WINDOWS_CERT_STORE_LOCATION
            store = cert.certificate_store_name or WINDOWS_CERT_STORE_NAME
            if location not in _WINDOWS_LOCATIONS:
                raise UnsafeCommandInputError(
                    f"certificateStoreLocation {location!r} is not a store"
                )
            if not _WINDOWS_STORE.match(store):
                raise UnsafeCommandInputError(f"certificateStoreName {store!r} is not a store name")
            targets.append(CertificateTarget(index, vault, cert.cert_name, location, store))
    return targets


def build_command_line(os_type: OsType, targets: list[CertificateTarget]) -> str:
    if os_type is OsType.LINUX:
        steps = [
            f'echo "batchcert {t.index} $(openssl x509 -noout -fingerprint -sha1 -in '
            f'{shlex.quote(f"{t.location}/{t.vault}.{t.name}")} 2>/dev/null || echo MISSING)"'
            for t in targets
        ]
        return "/bin/sh -c " + shlex.quote("; ".join([*steps, "echo batchcert done"]))
    steps = []
    for t in targets:
        path = f"Cert:\\{t.location}\\{t.store}".replace("'", "''")
        steps.append(
            f"Get-ChildItem -Path '{path}' -ErrorAction SilentlyContinue | "
            f"ForEach-Object {{ 'batchcert {t.index} ' + $_.Thumbprint }}"
        )
    script = "; ".join([*steps, "'batchcert done'"])
    return f'powershell.exe -NoProfile -NonInteractive -Command "{script}"'


def build_job_body(job_id: str, pool_id: str) -> dict[str, Any]:
    return {
        "id": job_id,
        "displayName": "batchcert node verification",
        "poolInfo": {"poolId": pool_id},
        # The job outlives its tasks: the operator adds a task per node per run.
        "onAllTasksComplete": "noaction",
        "onTaskFailure": "noaction",
    }


def build_task_body(
    task_id: str, command_line: str, affinity_id: str, task_timeout: str
) -> dict[str, Any]:
    return {
        "id": task_id,
        "displayName": "batchcert: read installed certificate thumbprints",
        "commandLine": command_line,
        "affinityInfo": {"affinityId": affinity_id},
        "userIdentity": {"autoUser": {"scope": "pool", "elevationLevel": "admin"}},
        "constraints": {
            "maxWallClockTime": task_timeout,
            "maxTaskRetryCount": 0,
            "retentionTime": "PT1H",  # the operator deletes it sooner; this is the backstop
        },
        "requiredSlots": 1,
    }
