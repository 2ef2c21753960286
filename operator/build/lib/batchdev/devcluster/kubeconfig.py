"""Kubeconfig documents for the dev cluster: built as plain data (pure), written owner-only.

Every credential is embedded (``*-data`` fields), so a kubeconfig keeps working when copied or
when the state dir's ``pki/`` is read by nobody else; one cluster entry, one user, one context,
all named after the identity so several kubeconfigs can be merged with ``KUBECONFIG=a:b``.
"""

from __future__ import annotations

import base64
import os
from pathlib import Path
from typing import Any

import yaml

CLUSTER_NAME = "batchcert-dev"


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def build_kubeconfig(
    server: str, ca_pem: bytes, user_name: str, user: dict[str, str]
) -> dict[str, Any]:
    context = f"{user_name}@{CLUSTER_NAME}"
    return {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [
            {
                "name": CLUSTER_NAME,
                "cluster": {"server": server, "certificate-authority-data": _b64(ca_pem)},
            }
        ],
        "users": [{"name": user_name, "user": user}],
        "contexts": [{"name": context, "context": {"cluster": CLUSTER_NAME, "user": user_name}}],
        "current-context": context,
        "preferences": {},
    }


def build_client_certificate_kubeconfig(
    server: str, ca_pem: bytes, user_name: str, cert_pem: bytes, key_pem: bytes
) -> dict[str, Any]:
    """A kubeconfig authenticating with a client certificate (the admin's)."""
    user = {"client-certificate-data": _b64(cert_pem), "client-key-data": _b64(key_pem)}
    return build_kubeconfig(server, ca_pem, user_name, user)


def build_token_kubeconfig(
    server: str, ca_pem: bytes, user_name: str, token: str
) -> dict[str, Any]:
    """A kubeconfig authenticating with a bearer token (a ServiceAccount's)."""
    return build_kubeconfig(server, ca_pem, user_name, {"token": token})


def write_kubeconfig(document: dict[str, Any], path: Path) -> Path:
    """Write ``document`` to ``path`` with mode 0600 (it holds a private key or a token)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        yaml.safe_dump(document, handle, sort_keys=False)
    os.replace(tmp, path)
    return path
