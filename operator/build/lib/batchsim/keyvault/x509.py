"""Real X.509 material for the simulated Key Vault: keys, self-signed certificates, exports.

Role: everything cryptographic the Key Vault simulator needs, as pure functions over
``cryptography`` objects, so thumbprints, serials, notBefore/notAfter and the secret value a node
downloads are real and verifiable by any X.509 tool. Nothing here knows about HTTP, vaults or the
simulated clock: callers pass the instants.

Shapes copied from certificates the real service issues for a ``Self`` issuer (see the Azure
SDK for JS recordings of ``recording_can_get_a_certificates_secret_in_pkcs_12_format``):
16-byte random serial, subject == issuer, KeyUsage (critical) digitalSignature+keyEncipherment,
BasicConstraints ca=false (not critical), the policy's EKUs, subject and authority key ids,
SHA-256 signature, notBefore ten minutes before issuance.

Invariants:
* ``x5t`` is the base64url (no padding) SHA-1 of the DER certificate, as Key Vault reports it.
* ``KeyPool`` is the only place keys are made; RSA-2048 generation costs ~50 ms, so the pool
  generates up to ``size`` keys lazily and then hands them out round-robin. Distinct certificates
  may therefore share a key pair (their serials, dates and thumbprints still differ). This is a
  deliberate simulator shortcut for benchmark speed; ``KeyPool(size=0)`` makes every key fresh.
* Exports never encrypt: Key Vault returns PKCS#12 secret values without a password.
"""

from __future__ import annotations

import base64
import calendar
import hashlib
import ipaddress
import secrets
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.serialization import pkcs12
from cryptography.x509.oid import NameOID, ObjectIdentifier

PrivateKey = rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey

# Attribute names Key Vault accepts in a policy subject (Windows/.NET X.500 spelling).
_SUBJECT_ATTRIBUTES: dict[str, ObjectIdentifier] = {
    "CN": NameOID.COMMON_NAME,
    "O": NameOID.ORGANIZATION_NAME,
    "OU": NameOID.ORGANIZATIONAL_UNIT_NAME,
    "L": NameOID.LOCALITY_NAME,
    "S": NameOID.STATE_OR_PROVINCE_NAME,
    "ST": NameOID.STATE_OR_PROVINCE_NAME,
    "C": NameOID.COUNTRY_NAME,
    "E": NameOID.EMAIL_ADDRESS,
    "EMAIL": NameOID.EMAIL_ADDRESS,
    "DC": NameOID.DOMAIN_COMPONENT,
    "STREET": NameOID.STREET_ADDRESS,
    "SERIALNUMBER": NameOID.SERIAL_NUMBER,
    "T": NameOID.TITLE,
    "TITLE": NameOID.TITLE,
    "G": NameOID.GIVEN_NAME,
    "GIVENNAME": NameOID.GIVEN_NAME,
    "SN": NameOID.SURNAME,
}

KEY_USAGES = (
    "digitalSignature",
    "nonRepudiation",
    "keyEncipherment",
    "dataEncipherment",
    "keyAgreement",
    "keyCertSign",
    "cRLSign",
    "encipherOnly",
    "decipherOnly",
)
_CURVES: dict[str, type[ec.EllipticCurve]] = {
    "P-256": ec.SECP256R1,
    "P-384": ec.SECP384R1,
    "P-521": ec.SECP521R1,
    "P-256K": ec.SECP256K1,
}
NOT_BEFORE_SKEW = timedelta(minutes=10)  # Key Vault back-dates notBefore by ten minutes


def parse_subject(subject: str) -> x509.Name:
    """``"CN=web, O=Contoso"`` → an X.509 Name; ValueError when it is not a usable DN.

    Windows-style DNs list the most specific RDN first; the encoded Name is in the reverse
    (most general first) order, as .NET's ``X500DistinguishedName`` encodes it.
    """
    parts = [p.strip() for p in _split_unescaped(subject, ",")] if subject.strip() else []
    attributes: list[x509.NameAttribute] = []
    for part in parts:
        key, sep, value = part.partition("=")
        value = value.strip().strip('"')
        oid = _SUBJECT_ATTRIBUTES.get(key.strip().upper())
        if not sep or oid is None or not value:
            raise ValueError(f"invalid subject component {part!r}")
        try:
            attributes.append(x509.NameAttribute(oid, value))
        except ValueError as exc:  # e.g. a country name that is not two letters
            raise ValueError(f"invalid subject component {part!r}: {exc}") from exc
    if not attributes:
        raise ValueError("the subject has no attributes")
    return x509.Name(list(reversed(attributes)))


def _split_unescaped(text: str, sep: str) -> list[str]:
    parts, current, escaped, quoted = [], [], False, False
    for char in text:
        if escaped:
            current.append(char)
            escaped = False
        elif char == "\\":
            escaped = True
        elif char == '"':
            quoted = not quoted
            current.append(char)
        elif char == sep and not quoted:
            parts.append("".join(current))
            current = []
        else:
            current.append(char)
    parts.append("".join(current))
    return parts


def add_months(moment: datetime, months: int) -> datetime:
    """Calendar-month addition, clamping the day (Jan 31 + 1 month = Feb 28/29).

    Key Vault's ``validity_months`` behaves as calendar months: a real 12-month certificate
    created 2022-11-14 17:57:40 expires 2023-11-14 17:57:40 (same SDK recording as above).
    """
    index = moment.month - 1 + months
    year, month = moment.year + index // 12, index % 12 + 1
    day = min(moment.day, calendar.monthrange(year, month)[1])
    return moment.replace(year=year, month=month, day=day)


class KeyPool:
    """Hands out private keys cheaply; see the module invariants for the sharing trade-off."""

    def __init__(self, size: int = 16) -> None:
        self.size = size
        self._keys: dict[tuple[str, int | str], list[PrivateKey]] = {}
        self._next: dict[tuple[str, int | str], int] = {}
        self._lock = threading.Lock()

    def take(self, kty: str = "RSA", key_size: int = 2048, curve: str = "P-256") -> PrivateKey:
        family = "EC" if kty.upper().startswith("EC") else "RSA"
        spec: tuple[str, int | str] = (family, curve if family == "EC" else key_size)
        with self._lock:
            keys = self._keys.setdefault(spec, [])
            if len(keys) >= self.size > 0:
                index = self._next.get(spec, 0)
                self._next[spec] = (index + 1) % len(keys)
                return keys[index]
        key = generate_key(family, key_size, curve)  # outside the lock: this is the slow part
        if self.size > 0:
            with self._lock:
                if len(self._keys[spec]) < self.size:
                    self._keys[spec].append(key)
        return key


def generate_key(kty: str, key_size: int = 2048, curve: str = "P-256") -> PrivateKey:
    if kty.upper().startswith("EC"):
        return ec.generate_private_key(_CURVES[curve]())
    return rsa.generate_private_key(public_exponent=65537, key_size=key_size)


DEFAULT_KEY_POOL = KeyPool()


@dataclass(frozen=True)
class SubjectAlternativeNames:
    dns_names: Sequence[str] = ()
    emails: Sequence[str] = ()
    upns: Sequence[str] = ()
    uris: Sequence[str] = ()
    ip_addresses: Sequence[str] = ()

    def general_names(self) -> list[x509.GeneralName]:
        names: list[x509.GeneralName] = [x509.DNSName(n) for n in self.dns_names]
        names += [x509.RFC822Name(e) for e in self.emails]
        names += [x509.UniformResourceIdentifier(u) for u in self.uris]
        names += [x509.IPAddress(ipaddress.ip_address(i)) for i in self.ip_addresses]
        # UPNs are an otherName (Microsoft UPN OID) holding a UTF8String.
        upn_oid = ObjectIdentifier("1.3.6.1.4.1.311.20.2.3")
        names += [x509.OtherName(upn_oid, _der_utf8(u)) for u in self.upns]
        return names


def _der_utf8(text: str) -> bytes:
    data = text.encode("utf-8")
    if len(data) < 0x80:
        return bytes([0x0C, len(data)]) + data
    length = len(data).to_bytes((len(data).bit_length() + 7) // 8, "big")
    return bytes([0x0C, 0x80 | len(length)]) + length + data


def issue_self_signed(
    key: PrivateKey,
    *,
    subject: x509.Name,
    not_before: datetime,
    not_after: datetime,
    sans: SubjectAlternativeNames | None = None,
    ekus: Sequence[str] = ("1.3.6.1.5.5.7.3.1", "1.3.6.1.5.5.7.3.2"),
    key_usage: Sequence[str] = ("digitalSignature", "keyEncipherment"),
) -> bytes:
    """A self-signed certificate (DER) shaped like Key Vault's ``Self`` issuer output."""
    public = key.public_key()
    usage = set(key_usage)
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(public)
        # Key Vault serials are 16 random bytes; clear the top bit so the INTEGER stays positive.
        .serial_number(int.from_bytes(secrets.token_bytes(16), "big") >> 1)
        .not_valid_before(not_before.astimezone(UTC))
        .not_valid_after(not_after.astimezone(UTC))
        .add_extension(
            x509.KeyUsage(
                digital_signature="digitalSignature" in usage,
                content_commitment="nonRepudiation" in usage,
                key_encipherment="keyEncipherment" in usage,
                data_encipherment="dataEncipherment" in usage,
                key_agreement="keyAgreement" in usage,
                key_cert_sign="keyCertSign" in usage,
                crl_sign="cRLSign" in usage,
                encipher_only="encipherOnly" in usage and "keyAgreement" in usage,
                decipher_only="decipherOnly" in usage and "keyAgreement" in usage,
            ),
            critical=True,
        )
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(public), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(public), critical=False)
    )
    if ekus:
        builder = builder.add_extension(
            x509.ExtendedKeyUsage([ObjectIdentifier(oid) for oid in ekus]), critical=False
        )
    alt_names = sans.general_names() if sans is not None else []
    if alt_names:
        builder = builder.add_extension(x509.SubjectAlternativeName(alt_names), critical=False)
    certificate = builder.sign(key, hashes.SHA256())
    return certificate.public_bytes(serialization.Encoding.DER)


def build_csr(key: PrivateKey, subject: x509.Name) -> bytes:
    """The DER CSR a pending certificate operation shows in its ``csr`` field."""
    csr = x509.CertificateSigningRequestBuilder().subject_name(subject).sign(key, hashes.SHA256())
    return csr.public_bytes(serialization.Encoding.DER)


def x5t(der: bytes) -> str:
    """Key Vault's ``x5t``: SHA-1 of the DER certificate, base64url without padding."""
    digest = hashlib.sha1(der, usedforsecurity=False).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode("ascii")


def thumbprint_hex(der: bytes) -> str:
    """The upper-case hex SHA-1 thumbprint Windows and the Batch/KV extension statuses show."""
    return hashlib.sha1(der, usedforsecurity=False).hexdigest().upper()


def key_to_pem(key: PrivateKey) -> str:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode("ascii")


def key_from_pem(pem: str) -> PrivateKey:
    key = serialization.load_pem_private_key(pem.encode("ascii"), password=None)
    if not isinstance(key, rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey):
        raise ValueError("unsupported key type")
    return key


def export_pkcs12(key_pem: str, der: bytes, friendly_name: str) -> bytes:
    """PKCS#12 (no password) holding the key and certificate, as a secret value carries it."""
    return pkcs12.serialize_key_and_certificates(
        friendly_name.encode("utf-8"),
        key_from_pem(key_pem),
        x509.load_der_x509_certificate(der),
        None,
        serialization.NoEncryption(),
    )


def export_pem(key_pem: str, der: bytes) -> str:
    """PEM key followed by the PEM certificate, the ``application/x-pem-file`` secret value."""
    cert_pem = x509.load_der_x509_certificate(der).public_bytes(serialization.Encoding.PEM)
    return key_pem + cert_pem.decode("ascii")


def certificate_dates(der: bytes) -> tuple[datetime, datetime]:
    certificate = x509.load_der_x509_certificate(der)
    return certificate.not_valid_before_utc, certificate.not_valid_after_utc
