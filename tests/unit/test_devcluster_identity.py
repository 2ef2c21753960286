"""Kubeconfigs and the unprivileged identity's naming, as plain data.

Covers: an admin kubeconfig embeds CA, certificate and key and selects its context; a token
kubeconfig names the ServiceAccount user as Kubernetes authenticates it; ``NS/NAME`` parsing;
the CLI's token-duration syntax.
"""

from __future__ import annotations

import argparse
import base64

import pytest

from batchdev.devcluster.cli import parse_duration
from batchdev.devcluster.errors import DevClusterError
from batchdev.devcluster.identity import parse_serviceaccount_ref, serviceaccount_username
from batchdev.devcluster.kubeconfig import (
    build_client_certificate_kubeconfig,
    build_token_kubeconfig,
)


def test_the_admin_kubeconfig_embeds_every_credential() -> None:
    doc = build_client_certificate_kubeconfig(
        "https://127.0.0.1:42000", b"CA", "admin", b"CERT", b"KEY"
    )
    cluster = doc["clusters"][0]["cluster"]
    user = doc["users"][0]["user"]
    assert cluster["server"] == "https://127.0.0.1:42000"
    assert base64.b64decode(cluster["certificate-authority-data"]) == b"CA"
    assert base64.b64decode(user["client-certificate-data"]) == b"CERT"
    assert base64.b64decode(user["client-key-data"]) == b"KEY"
    assert doc["current-context"] == doc["contexts"][0]["name"]


def test_a_token_kubeconfig_is_named_after_the_service_account() -> None:
    user = serviceaccount_username("batchcert-system", "batchcert-operator")
    doc = build_token_kubeconfig("https://127.0.0.1:1", b"CA", user, "t0ken")
    assert user == "system:serviceaccount:batchcert-system:batchcert-operator"
    assert doc["users"] == [{"name": user, "user": {"token": "t0ken"}}]


def test_service_account_references() -> None:
    assert parse_serviceaccount_ref("ns/name") == ("ns", "name")
    for bad in ("name", "/name", "ns/", "a/b/c"):
        with pytest.raises(DevClusterError, match="NAMESPACE/NAME"):
            parse_serviceaccount_ref(bad)


def test_token_durations() -> None:
    assert parse_duration("3600") == 3600
    assert parse_duration("90s") == 90
    assert parse_duration("30m") == 1800
    assert parse_duration("24h") == 86400
    for bad in ("0", "1d", "-5", "h"):
        with pytest.raises(argparse.ArgumentTypeError):
            parse_duration(bad)
