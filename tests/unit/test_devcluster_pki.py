"""The dev cluster's certificates say what Kubernetes reads from them.

Covers: the admin is CN=admin in O=system:masters with client-auth usage; the serving
certificate is valid for 127.0.0.1 and the in-cluster names; both chain to the throwaway CA;
the ServiceAccount signing key pair matches.
"""

from __future__ import annotations

import ipaddress
from datetime import UTC, datetime

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from batchdev.devcluster.pki import build_cluster_pki, issue_client_certificate

NOW = datetime(2026, 1, 1, tzinfo=UTC)
PKI = build_cluster_pki(NOW)


def names(cert: x509.Certificate, oid: x509.ObjectIdentifier) -> list[str]:
    return [str(a.value) for a in cert.subject.get_attributes_for_oid(oid)]


def test_the_admin_is_in_system_masters() -> None:
    admin = PKI.admin.certificate()
    assert names(admin, NameOID.COMMON_NAME) == ["admin"]
    assert names(admin, NameOID.ORGANIZATION_NAME) == ["system:masters"]
    usages = admin.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert ExtendedKeyUsageOID.CLIENT_AUTH in usages


def test_an_unprivileged_client_certificate_has_only_the_groups_asked_for() -> None:
    cert = issue_client_certificate(PKI.ca, "alice", ("team-a",), NOW).certificate()
    assert names(cert, NameOID.COMMON_NAME) == ["alice"]
    assert names(cert, NameOID.ORGANIZATION_NAME) == ["team-a"]


def test_the_serving_certificate_covers_loopback_and_in_cluster_names() -> None:
    serving = PKI.serving.certificate()
    san = serving.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert ipaddress.ip_address("127.0.0.1") in san.get_values_for_type(x509.IPAddress)
    assert "kubernetes.default.svc" in san.get_values_for_type(x509.DNSName)
    assert "localhost" in san.get_values_for_type(x509.DNSName)


def test_certificates_chain_to_the_ca_and_are_valid_now() -> None:
    ca = PKI.ca.certificate()
    for leaf in (PKI.admin.certificate(), PKI.serving.certificate()):
        leaf.verify_directly_issued_by(ca)
        assert leaf.not_valid_before_utc <= NOW < leaf.not_valid_after_utc
    assert ca.extensions.get_extension_for_class(x509.BasicConstraints).value.ca


def test_the_service_account_key_pair_matches() -> None:
    private = serialization.load_pem_private_key(PKI.service_account_private_pem, None)
    public = serialization.load_pem_public_key(PKI.service_account_public_pem)
    assert private.public_key().public_numbers() == public.public_numbers()  # type: ignore[union-attr]
