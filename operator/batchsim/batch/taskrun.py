"""What a verification task prints on its simulated node: the node "runs" the operator's command.

The command line the operator builds — ``/bin/sh -c`` with one ``openssl x509 -noout
-fingerprint -sha1 -in <file>`` per certificate (Linux), or one PowerShell line per certificate
joining the thumbprints in ``Cert:\\<location>\\<store>`` (Windows) — is matched against
the files the node's Key Vault extension actually wrote: for each certificate the extension
fetched, ``<certificateStoreLocation>/<VaultName>.<CertificateName>`` (Linux, keeping the URL's
case, as Microsoft's KeyVaultForLinux doc shows: ``exampleVault.myCertificate``) or the named
store (Windows) holds the version *that node* fetched last, so a node whose fetches fail keeps
the old thumbprint. Any other command line prints nothing.

Elevation is enforced: the Linux extension's folder is 0700 root (azure-behaviour notes), so a
task that is not ``elevationLevel: admin`` cannot read it and openssl's failure prints
``MISSING``; a Windows ``LocalMachine`` store is listable without admin.

Unconfirmed: Windows stores keeping only the last fetched version (version 4.0 installs the two
newest; here the less helpful single one).
"""

from __future__ import annotations

import base64
import json
import re
import shlex
from collections.abc import Callable
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from batchsim.world import Node

if TYPE_CHECKING:
    from batchsim.core import Simulation

ThumbprintOf = Callable[[str, str], "str | None"]  # (versionless secret URL, version) -> hex


def _cert_files(
    node: Node, thumbprint_of: ThumbprintOf
) -> tuple[dict[str, str], dict[str, list[str]]]:
    """Linux files ``path → hex thumbprint`` and Windows stores ``Location\\Name → [hex]``."""
    files: dict[str, str] = {}
    stores: dict[str, list[str]] = {}
    for ext in node.extensions:
        kind = str(ext.get("type", "")).lower()
        if kind not in ("keyvaultforlinux", "keyvaultforwindows"):
            continue
        runtime = node.extension_runtime.get(str(ext.get("name", "")))
        if runtime is None:
            continue
        settings: Any = ext.get("settings") or {}
        if isinstance(settings, str):
            try:
                settings = json.loads(settings)
            except ValueError:
                continue
        sms = settings.get("secretsManagementSettings") or {}
        where: dict[str, tuple[str, str]] = {}
        for item in sms.get("observedCertificates") or []:
            url = item if isinstance(item, str) else item.get("url")
            location = (
                item.get("certificateStoreLocation") if isinstance(item, dict) else None
            ) or sms.get("certificateStoreLocation", "")
            store = (
                item.get("certificateStoreName") if isinstance(item, dict) else None
            ) or sms.get("certificateStoreName", "MY")
            if isinstance(url, str):
                where[url] = (str(location), str(store))
        for url, version in runtime.versions.items():
            thumb = thumbprint_of(url, version)
            location, store = where.get(url, ("", "MY"))
            if thumb is None:
                continue
            if kind == "keyvaultforlinux":
                parts = urlsplit(url)
                # KeyVaultForLinux writes <VaultName>.<CertificateName> keeping the URL's case
                # (Microsoft's KeyVaultForLinux doc: "exampleVault.myCertificate"); never
                # ``hostname``, which lower-cases.
                host = parts.netloc.rsplit("@", 1)[-1].split(":", 1)[0]
                vault = host.split(".", 1)[0]
                name = [p for p in parts.path.split("/") if p][1]
                files[f"{location.rstrip('/')}/{vault}.{name}"] = thumb
            else:
                stores.setdefault(f"{location}\\{store}".lower(), []).append(thumb)
    return files, stores


_OPENSSL = re.compile(
    r"""echo "batchcert (?P<index>\d+) \$\(openssl x509 -noout -fingerprint -sha1 -in """
    r"""(?P<path>'(?:[^']|'"'"')*'|[^\s)]+) 2>/dev/null \|\| echo MISSING\)\""""
)
_POWERSHELL = re.compile(
    r"'batchcert (?P<index>\d+) ' \+ \(\(Get-ChildItem -Path '(?P<path>(?:[^']|'')*)' "
    r"-ErrorAction SilentlyContinue \| ForEach-Object \{ \$_\.Thumbprint \}\) -join ','\)"
)


def run_command(
    command_line: str, node: Node, thumbprint_of: ThumbprintOf, *, admin: bool = True
) -> str:
    """stdout of the operator's verification command on ``node`` (empty for anything else)."""
    files, stores = _cert_files(node, thumbprint_of)
    if not admin:
        files = {}  # the extension's 0700 root folder: unreadable, openssl fails
    lines: list[str] = []
    try:
        argv = shlex.split(command_line)
    except ValueError:
        return ""
    if len(argv) == 3 and argv[0] == "/bin/sh" and argv[1] == "-c":
        for found in _OPENSSL.finditer(argv[2]):
            path = shlex.split(found["path"])[0]
            thumb = files.get(path)
            fingerprint = (
                "SHA1 Fingerprint=" + ":".join(thumb[i : i + 2] for i in range(0, len(thumb), 2))
                if thumb
                else "MISSING"
            )
            lines.append(f"batchcert {found['index']} {fingerprint}")
        if "echo batchcert done" in argv[2]:
            lines.append("batchcert done")
        return "".join(f"{line}\n" for line in lines)
    if argv and argv[0].lower().startswith("powershell"):
        script = argv[-1]
        for found in _POWERSHELL.finditer(script):
            store = found["path"].replace("''", "'")
            key = store.split(":", 1)[-1].strip("\\").lower()
            lines.append(f"batchcert {found['index']} {','.join(stores.get(key, []))}")
        if "'batchcert done'" in script:
            lines.append("batchcert done")
        return "".join(f"{line}\r\n" for line in lines)
    return ""


def thumbprints(sim: Simulation) -> ThumbprintOf:
    def thumbprint_of(url: str, version: str) -> str | None:
        result = sim.kv.resolve_secret(f"{url.rstrip('/')}/{version}")
        x5t = getattr(result, "x5t", None)
        if not x5t:
            return None
        return base64.urlsafe_b64decode(x5t + "=" * (-len(x5t) % 4)).hex().upper()

    return thumbprint_of
