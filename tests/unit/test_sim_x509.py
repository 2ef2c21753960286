"""Unit tests for the simulator's X.509 material (``batchsim.keyvault.x509``).

Covers: subject parsing (Windows DN order, case, bad input), calendar-month validity, the
certificate shape a Key Vault ``Self`` issuer produces, ``x5t`` as Key Vault computes it, the
PKCS#12 and PEM secret values, and the key pool's sharing contract.
"""

from __future__ import annotations

import base64
import hashlib
from datetime import UTC, datetime, timedelta

import pytest
from cryptography import x509 as cx509
from cryptography.hazmat.primitives.serialization import pkcs12
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from batchsim.keyvault import x509

ISSUED = datetime(2026, 1, 31, 12, 0, tzinfo=UTC)


def test_parse_subject_accepts_windows_style_dns_in_any_case() -> None:
    name = x509.parse_subject("cn=web, O=Contoso,  c=US")
    assert name.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == "web"
    # Most specific first in the string, most general first in the encoding (as .NET does).
    assert [a.oid for a in name] == [
        NameOID.COUNTRY_NAME,
        NameOID.ORGANIZATION_NAME,
        NameOID.COMMON_NAME,
    ]


@pytest.mark.parametrize("subject", ["", "web", "CN=", "XX=web", "CN=web, C=USA"])
def test_parse_subject_rejects_what_is_not_a_dn(subject: str) -> None:
    with pytest.raises(ValueError, match=r"subject"):
        x509.parse_subject(subject)


@pytest.mark.parametrize(
    ("start", "months", "expected"),
    [
        (
            datetime(2022, 11, 14, 17, 57, 40, tzinfo=UTC),
            12,
            datetime(2023, 11, 14, 17, 57, 40, tzinfo=UTC),
        ),  # the real service's own example
        (datetime(2026, 1, 31, tzinfo=UTC), 1, datetime(2026, 2, 28, tzinfo=UTC)),
        (datetime(2027, 12, 31, tzinfo=UTC), 2, datetime(2028, 2, 29, tzinfo=UTC)),
        (datetime(2026, 5, 15, tzinfo=UTC), 36, datetime(2029, 5, 15, tzinfo=UTC)),
    ],
)
def test_add_months_is_calendar_months_with_clamped_days(
    start: datetime, months: int, expected: datetime
) -> None:
    assert x509.add_months(start, months) == expected


def _issue(**kwargs: object) -> tuple[x509.PrivateKey, bytes]:
    key = x509.DEFAULT_KEY_POOL.take()
    der = x509.issue_self_signed(
        key,
        subject=x509.parse_subject("CN=web"),
        not_before=ISSUED - x509.NOT_BEFORE_SKEW,
        not_after=x509.add_months(ISSUED, 12),
        **kwargs,  # type: ignore[arg-type]
    )
    return key, der


def test_self_signed_certificate_has_the_key_vault_shape() -> None:
    _, der = _issue(
        sans=x509.SubjectAlternativeNames(dns_names=["web.example"], upns=["svc@example"])
    )
    cert = cx509.load_der_x509_certificate(der)
    assert cert.subject == cert.issuer
    assert cert.not_valid_before_utc == ISSUED - timedelta(minutes=10)
    assert cert.not_valid_after_utc == datetime(2027, 1, 31, 12, 0, tzinfo=UTC)
    assert 0 < cert.serial_number < 2**127
    usage = cert.extensions.get_extension_for_class(cx509.KeyUsage)
    assert usage.critical and usage.value.digital_signature and usage.value.key_encipherment
    assert not cert.extensions.get_extension_for_class(cx509.BasicConstraints).value.ca
    ekus = cert.extensions.get_extension_for_class(cx509.ExtendedKeyUsage).value
    assert list(ekus) == [ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]
    sans = cert.extensions.get_extension_for_class(cx509.SubjectAlternativeName).value
    assert sans.get_values_for_type(cx509.DNSName) == ["web.example"]


def test_x5t_is_unpadded_base64url_sha1_of_the_der() -> None:
    _, der = _issue()
    expected = base64.urlsafe_b64encode(hashlib.sha1(der).digest()).rstrip(b"=").decode()
    assert x509.x5t(der) == expected
    assert "=" not in x509.x5t(der) and len(x509.x5t(der)) == 27
    assert x509.thumbprint_hex(der) == hashlib.sha1(der).hexdigest().upper()


def test_each_issue_is_a_distinct_certificate_even_with_a_shared_key() -> None:
    key = x509.DEFAULT_KEY_POOL.take()
    first, second = (
        x509.issue_self_signed(
            key,
            subject=x509.parse_subject("CN=web"),
            not_before=ISSUED,
            not_after=ISSUED + timedelta(days=30),
        )
        for _ in range(2)
    )
    assert x509.x5t(first) != x509.x5t(second)


def test_pkcs12_secret_value_holds_key_and_certificate_without_password() -> None:
    key, der = _issue()
    blob = x509.export_pkcs12(x509.key_to_pem(key), der, "web")
    loaded = pkcs12.load_pkcs12(blob, None)
    assert loaded.cert is not None and loaded.key is not None
    assert loaded.cert.certificate == cx509.load_der_x509_certificate(der)
    assert loaded.key.public_key() == key.public_key()


def test_pem_secret_value_is_key_then_certificate() -> None:
    key, der = _issue()
    pem = x509.export_pem(x509.key_to_pem(key), der)
    assert pem.startswith("-----BEGIN PRIVATE KEY-----")
    assert cx509.load_pem_x509_certificate(pem.encode()) == cx509.load_der_x509_certificate(der)


def test_key_pool_reuses_after_size_and_size_zero_is_always_fresh() -> None:
    pool = x509.KeyPool(size=2)
    keys = [pool.take() for _ in range(4)]
    assert keys[0] is not keys[1]
    assert {id(k) for k in keys[2:]} == {id(keys[0]), id(keys[1])}
    fresh = x509.KeyPool(size=0)
    assert fresh.take() is not fresh.take()
    ec_key = fresh.take("EC", curve="P-384")
    assert isinstance(ec_key, x509.ec.EllipticCurvePrivateKey)
    assert isinstance(ec_key.curve, x509.ec.SECP384R1)
