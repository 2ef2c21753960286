"""spec → the Key Vault ``POST /certificates/{name}/create`` body for ``createIfMissing``.

Invariants: self-signed (issuer ``Self``), an exportable RSA 2048 key in a PKCS#12 secret (what
the Key Vault VM extension installs), and exactly one lifetime action: AutoRenew at the given
share of the lifetime, so Key Vault renews it from then on.
"""

from __future__ import annotations

from typing import Any

from batchcert.models.spec import CreateIfMissing


def build_create_certificate_body(create: CreateIfMissing) -> dict[str, Any]:
    return {
        "policy": {
            "key_props": {"exportable": True, "kty": "RSA", "key_size": 2048, "reuse_key": False},
            "secret_props": {"contentType": "application/x-pkcs12"},
            "x509_props": {
                "subject": create.subject,
                "validity_months": create.validity_in_months,
            },
            "issuer": {"name": "Self"},
            "lifetime_actions": [
                {
                    "trigger": {"lifetime_percentage": create.renew_at_lifetime_percentage},
                    "action": {"action_type": "AutoRenew"},
                }
            ],
        },
        "attributes": {"enabled": True},
    }
