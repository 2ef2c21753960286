"""The vault access-policy translator: what counts as granted, and the exact grant sent.

Covers: get+list (case-insensitive object id and permissions) or "all" counts as granted; get
alone, another principal, or no policies do not; the add body grants secrets get+list only.
"""

from __future__ import annotations

import pytest

from batchcert.translate.access_policy import build_secrets_read_policy, has_secrets_read

pytestmark = pytest.mark.unit
PRINCIPAL = "40000000-0000-0000-0000-0000000000A1"


def vault(*policies: dict) -> dict:  # type: ignore[type-arg]
    return {"properties": {"accessPolicies": list(policies)}}


def policy(object_id: str, secrets: list[str]) -> dict:  # type: ignore[type-arg]
    return {"tenantId": "t", "objectId": object_id, "permissions": {"secrets": secrets}}


@pytest.mark.parametrize(
    ("body", "granted"),
    [
        (vault(policy(PRINCIPAL.lower(), ["Get", "List"])), True),
        (vault(policy(PRINCIPAL, ["all"])), True),
        (vault(policy(PRINCIPAL, ["get", "list", "set"])), True),
        (vault(policy(PRINCIPAL, ["get"])), False),
        (vault(policy("someone-else", ["get", "list"])), False),
        (vault(), False),
        ({}, False),
    ],
)
def test_has_secrets_read(body: dict, granted: bool) -> None:  # type: ignore[type-arg]
    assert has_secrets_read(body, PRINCIPAL) is granted


def test_the_grant_is_secrets_get_and_list_only() -> None:
    assert build_secrets_read_policy("tenant", PRINCIPAL) == {
        "properties": {
            "accessPolicies": [
                {
                    "tenantId": "tenant",
                    "objectId": PRINCIPAL,
                    "permissions": {"secrets": ["get", "list"]},
                }
            ]
        }
    }
