"""The dev cluster's TLS and signing material, generated in-process with ``cryptography``.

One throwaway CA per ``up`` signs the kube-apiserver serving certificate (for 127.0.0.1 and the
in-cluster ``kubernetes`` names) and client certificates; a separate key pair signs
ServiceAccount tokens. No openssl CLI is needed.

Invariants: building is pure (keys and certificates in memory, the clock passed in); only
``write_pki`` touches the disk, and it writes private keys readable by the owner only. ECDSA P-256
throughout: kube-apiserver accepts it for serving, client and token-signing keys, and it is
generated in milliseconds, which keeps ``up`` fast.
"""

from __future__ import annotations

import ipaddress
import os
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

# The names a client may use for the API server: loopback from the host, and the in-cluster
# service names (10.0.0.1 is the first address of --service-cluster-ip-range=10.0.0.0/24).
SERVING_DNS_NAMES = (
    "localhost",
    "kubernetes",
    "kubernetes.default",
    "kubernetes.default.svc",
    "kubernetes.default.svc.cluster.local",
)
SERVING_IPS = ("127.0.0.1", "10.0.0.1")

# Tolerate a little clock skew between this process and the server reading the certificates.
_BACKDATE = timedelta(minutes=5)


@dataclass(frozen=True)
class CertifiedKey:
    """A certificate and its private key, both PEM."""

    cert_pem: bytes
    key_pem: bytes

    def certificate(self) -> x509.Certificate:
        return x509.load_pem_x509_certificate(self.cert_pem)


@dataclass(frozen=True)
class ClusterPki:
    ca: CertifiedKey
    serving: CertifiedKey
    admin: CertifiedKey
    service_account_private_pem: bytes
    service_account_public_pem: bytes


@dataclass(frozen=True)
class PkiPaths:
    """Where ``write_pki`` put each file (the kube-apiserver flags point at these)."""

    ca_cert: Path
    serving_cert: Path
    serving_key: Path
    admin_cert: Path
    admin_key: Path
    service_account_private_key: Path
    service_account_public_key: Path

    @classmethod
    def in_directory(cls, directory: Path) -> PkiPaths:
        return cls(
            ca_cert=directory / "ca.crt",
            serving_cert=directory / "apiserver.crt",
            serving_key=directory / "apiserver.key",
            admin_cert=directory / "admin.crt",
            admin_key=directory / "admin.key",
            service_account_private_key=directory / "sa.key",
            service_account_public_key=directory / "sa.pub",
        )


def build_cluster_pki(now: datetime, validity: timedelta = timedelta(days=365)) -> ClusterPki:
    """A fresh CA, a serving certificate, an admin client certificate and a token-signing key."""
    ca_key = _new_key()
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "batchcert-dev-ca")])
    ca_cert = (
        _builder(ca_name, ca_name, ca_key.public_key(), now, validity)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                key_cert_sign=True,
                crl_sign=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), False)
        .sign(ca_key, hashes.SHA256())
    )
    ca = CertifiedKey(_cert_pem(ca_cert), _key_pem(ca_key))
    # RSA, as kubeadm and AKS sign service-account tokens (RS256): the algorithm Entra accepts
    # for federated assertions, and the only one the Azure simulator accepts from an issuer.
    sa_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    return ClusterPki(
        ca=ca,
        serving=issue_serving_certificate(ca, now, validity),
        admin=issue_client_certificate(ca, "admin", ("system:masters",), now, validity),
        service_account_private_pem=sa_key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        ),
        service_account_public_pem=sa_key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        ),
    )


def issue_serving_certificate(
    ca: CertifiedKey, now: datetime, validity: timedelta = timedelta(days=365)
) -> CertifiedKey:
    """The kube-apiserver's serving certificate, valid for loopback and the in-cluster names."""
    key = _new_key()
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "kube-apiserver")])
    names: list[x509.GeneralName] = [x509.DNSName(n) for n in SERVING_DNS_NAMES]
    names += [x509.IPAddress(ipaddress.ip_address(ip)) for ip in SERVING_IPS]
    cert = (
        _signed_by(ca, subject, key, now, validity, ExtendedKeyUsageOID.SERVER_AUTH)
        .add_extension(x509.SubjectAlternativeName(names), critical=False)
        .sign(_load_key(ca.key_pem), hashes.SHA256())
    )
    return CertifiedKey(_cert_pem(cert), _key_pem(key))


def issue_client_certificate(
    ca: CertifiedKey,
    common_name: str,
    organizations: tuple[str, ...],
    now: datetime,
    validity: timedelta = timedelta(days=365),
) -> CertifiedKey:
    """A client certificate: Kubernetes reads CN as the user name and each O as a group."""
    key = _new_key()
    attributes = [x509.NameAttribute(NameOID.ORGANIZATION_NAME, o) for o in organizations]
    attributes.append(x509.NameAttribute(NameOID.COMMON_NAME, common_name))
    cert = _signed_by(
        ca, x509.Name(attributes), key, now, validity, ExtendedKeyUsageOID.CLIENT_AUTH
    ).sign(_load_key(ca.key_pem), hashes.SHA256())
    return CertifiedKey(_cert_pem(cert), _key_pem(key))


def write_pki(pki: ClusterPki, directory: Path) -> PkiPaths:
    """Write every file of ``pki`` into ``directory``; private keys are mode 0600."""
    directory.mkdir(parents=True, exist_ok=True)
    paths = PkiPaths.in_directory(directory)
    _write(paths.ca_cert, pki.ca.cert_pem, 0o644)
    _write(directory / "ca.key", pki.ca.key_pem, 0o600)
    _write(paths.serving_cert, pki.serving.cert_pem, 0o644)
    _write(paths.serving_key, pki.serving.key_pem, 0o600)
    _write(paths.admin_cert, pki.admin.cert_pem, 0o644)
    _write(paths.admin_key, pki.admin.key_pem, 0o600)
    _write(paths.service_account_private_key, pki.service_account_private_pem, 0o600)
    _write(paths.service_account_public_key, pki.service_account_public_pem, 0o644)
    return paths


def _new_key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def _load_key(pem: bytes) -> ec.EllipticCurvePrivateKey:
    key = serialization.load_pem_private_key(pem, password=None)
    if not isinstance(key, ec.EllipticCurvePrivateKey):
        raise TypeError("the dev CA key is expected to be ECDSA")
    return key


def _builder(
    subject: x509.Name,
    issuer: x509.Name,
    public_key: ec.EllipticCurvePublicKey,
    now: datetime,
    validity: timedelta,
) -> x509.CertificateBuilder:
    return (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer)
        .public_key(public_key)
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - _BACKDATE)
        .not_valid_after(now + validity)
    )


def _signed_by(
    ca: CertifiedKey,
    subject: x509.Name,
    key: ec.EllipticCurvePrivateKey,
    now: datetime,
    validity: timedelta,
    usage: x509.ObjectIdentifier,
) -> x509.CertificateBuilder:
    ca_cert = ca.certificate()
    return (
        _builder(subject, ca_cert.subject, key.public_key(), now, validity)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                key_cert_sign=False,
                crl_sign=False,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(_load_key(ca.key_pem).public_key()),
            critical=False,
        )
    )


def _cert_pem(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.PEM)


def _key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def _write(path: Path, data: bytes, mode: int) -> None:
    # Create with the final mode so a private key is never briefly world-readable.
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    with os.fdopen(fd, "wb") as handle:
        handle.write(data)
    os.chmod(path, mode)
