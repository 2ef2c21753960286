"""Node verification: the Batch job and task bodies, and the fixed command the task runs.

The task prints, for certificate ``i`` of the spec, a line ``batchcert <i> <what was found>`` and
finally ``batchcert done``:
* Linux: ``openssl x509 -noout -fingerprint -sha1`` on the file the Key Vault extension writes,
  ``<certificateStoreLocation>/<vault name>.<certificate name>``, giving
  ``batchcert 0 SHA1 Fingerprint=7C:2C:...`` (or ``batchcert 0 MISSING``);
* Windows: PowerShell lists the thumbprints in the named store on one line, comma-separated
  (``batchcert 0 7C2C...,9A1B...``); the verdict looks for the versions' thumbprints among them.
Exactly one line per certificate, in order, then ``batchcert done``: anything else is no proof.

Invariants: the command is built by the operator alone; no user input reaches a shell
unquoted — vault and certificate names and store paths are validated against what Key Vault and
the extension accept (a value outside that is refused, never escaped into shape) and then quoted
(``shlex.quote`` for sh, doubled single quotes for PowerShell). The task runs as a task-scoped
auto-user with the least privilege that can read the certificate (Linux: admin, the extension's
folder is 0700 root; Windows: non-admin, a ``LocalMachine`` store is readable by users), with
``maxWallClockTime`` = taskTimeout and no retries, pinned to its node by affinity id.
"""

from __future__ import annotations

import hashlib
import re
import shlex
from dataclasses import dataclass
from datetime import datetime
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
JOB_ID_PREFIX = "bcv-"
OWNER_UID_KEY = "batchcert.dev/owner-uid"
POOL_KEY = "batchcert.dev/pool"
JOB_PRIORITY = 1000  # Batch's highest: our tasks go first when a slot frees


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


def build_job_id(uid: str, started: datetime) -> str:
    """One job per run, named by the operator alone: ``bcv-<object uid>-<run start, hex ms>``.

    Never from the spec (a spec could name another namespace's job). A Kubernetes uid is 36
    characters of ``[0-9a-f-]``, so the id stays within Batch's 64 of ``[A-Za-z0-9_-]``; a new
    name per run never meets the previous run's job while Batch is still deleting it
    (``409 JobBeingDeleted``).
    """
    return f"{build_job_prefix(uid)}{int(started.timestamp() * 1000):x}"


def build_job_prefix(uid: str) -> str:
    """What every job of this object's runs starts with (listing them after a restart)."""
    return f"{JOB_ID_PREFIX}{uid}-"


def is_own_job(job: dict[str, Any], uid: str, pool_id: str) -> bool:
    """A job this object created for this pool: its metadata names both, and it runs there.

    A ``409 JobExists`` proves nothing: a job is ours only when this holds.
    """
    metadata = job.get("metadata")
    items = metadata if isinstance(metadata, list) else []
    marks = {str(i.get("name")): str(i.get("value")) for i in items if isinstance(i, dict)}
    pool_info = job.get("poolInfo")
    running_on = pool_info.get("poolId") if isinstance(pool_info, dict) else None
    return (
        marks.get(OWNER_UID_KEY) == uid
        and str(marks.get(POOL_KEY, "")).lower() == pool_id.lower()
        and isinstance(running_on, str)
        and running_on.lower() == pool_id.lower()  # Batch pool ids ignore case
    )


def build_task_id(node_id: str, run: int) -> str:
    """Batch ids are ≤ 64 of ``[A-Za-z0-9_-]``; node ids are longer, so they are hashed."""
    digest = hashlib.sha1(node_id.encode(), usedforsecurity=False).hexdigest()[:20]
    return f"{TASK_ID_PREFIX}{digest}-{run}"


def build_targets(spec: BatchCertPoolSpec) -> list[CertificateTarget]:
    """Validated locations of every certificate (raises ``UnsafeCommandInputError``)."""
    os_type = spec.resolved_os_type
    targets = []
    for index, cert in enumerate(spec.certificates):
        # The extension names the file after the vault as written in the URL, keeping its case
        # (KeyVaultForLinux doc: ``exampleVault.myCertificate``); ``hostname`` would lower it.
        host = urlsplit(cert.vault).netloc.rsplit("@", 1)[-1].split(":", 1)[0]
        vault = host.split(".", 1)[0]
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
            if location == "CurrentUser":
                # The extension (LocalSystem) installs into its own CurrentUser store, which a
                # task's auto-user cannot list (admission refuses this too).
                raise UnsafeCommandInputError(
                    "a CurrentUser certificate cannot be proven by a Batch task"
                )
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
        # One line per certificate, however many the store holds: the reading is strict.
        steps.append(
            f"'batchcert {t.index} ' + ((Get-ChildItem -Path '{path}' -ErrorAction "
            "SilentlyContinue | ForEach-Object { $_.Thumbprint }) -join ',')"
        )
    script = "; ".join([*steps, "'batchcert done'"])
    return f'powershell.exe -NoProfile -NonInteractive -Command "{script}"'


def build_job_body(job_id: str, pool_id: str, uid: str, run_limit: str) -> dict[str, Any]:
    """One run's job: marked as this object's, first in line, and ending by itself.

    The operator deletes it as soon as the run's results are in (a verified pool holds no active
    job between runs: active jobs count against the account's quota). ``maxWallClockTime`` is
    the backstop when the operator is not there to delete it (restart, crash): Batch then
    terminates the job, and a terminated job no longer counts against the quota.
    """
    return {
        "id": job_id,
        "displayName": "batchcert node verification",
        "poolInfo": {"poolId": pool_id},
        "priority": JOB_PRIORITY,
        "metadata": [
            {"name": OWNER_UID_KEY, "value": uid},
            {"name": POOL_KEY, "value": pool_id},
        ],
        "constraints": {"maxWallClockTime": run_limit, "maxTaskRetryCount": 0},
        "onAllTasksComplete": "noaction",
        "onTaskFailure": "noaction",
    }


def build_task_body(
    task_id: str, command_line: str, affinity_id: str, task_timeout: str, os_type: OsType
) -> dict[str, Any]:
    """Least privilege at task scope: Linux needs root for the extension's 0700 folder; listing a
    Windows ``LocalMachine`` store needs no administrator."""
    elevation = "admin" if os_type is OsType.LINUX else "nonadmin"
    return {
        "id": task_id,
        "displayName": "batchcert: read installed certificate thumbprints",
        "commandLine": command_line,
        "affinityInfo": {"affinityId": affinity_id},
        "userIdentity": {"autoUser": {"scope": "task", "elevationLevel": elevation}},
        "constraints": {
            "maxWallClockTime": task_timeout,
            "maxTaskRetryCount": 0,
            "retentionTime": "PT1H",  # the operator deletes it sooner; this is the backstop
        },
        "requiredSlots": 1,
    }
