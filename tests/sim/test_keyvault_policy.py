"""Unit tests for the simulated Key Vault's certificate policy rules (``keyvault_policy``).

Covers: the defaults the real service reports for a minimal policy, the documented ranges of
lifetime actions (with the 27 x validity_months bound), type errors as ``BadParameter``, the
update merge, and when an AutoRenew action is due (EmailContacts never renews).
"""

from __future__ import annotations

from typing import Any

import pytest

from batchsim.keyvault.policy import (
    KeyVaultError,
    normalize_policy,
    renewal_due_at,
    validate_lifetime_actions,
)

pytestmark = pytest.mark.unit  # pure, also run by `make unit` (sim comes from the folder)

DAY = 86_400


def _action(trigger: dict[str, Any], kind: str = "AutoRenew") -> dict[str, Any]:
    return {"trigger": trigger, "action": {"action_type": kind}}


def test_minimal_policy_gets_the_services_defaults() -> None:
    policy = normalize_policy({"x509_props": {"subject": "cn=MyCert"}, "issuer": {"name": "Self"}})
    assert policy["key_props"] == {
        "exportable": True,
        "kty": "RSA",
        "key_size": 2048,
        "reuse_key": False,
    }
    assert policy["secret_props"] == {"contentType": "application/x-pkcs12"}
    assert policy["x509_props"]["validity_months"] == 12
    assert policy["x509_props"]["ekus"] == ["1.3.6.1.5.5.7.3.1", "1.3.6.1.5.5.7.3.2"]
    assert policy["x509_props"]["key_usage"] == ["digitalSignature", "keyEncipherment"]
    assert policy["lifetime_actions"] == [_action({"lifetime_percentage": 80})]


@pytest.mark.parametrize(
    ("trigger", "months", "fragment"),
    [
        ({"lifetime_percentage": 0}, 12, "between 1 and 99"),
        ({"lifetime_percentage": 100}, 12, "between 1 and 99"),
        ({"lifetime_percentage": "80"}, 12, "between 1 and 99"),
        ({"days_before_expiry": 0}, 12, "between 1 and 324"),
        ({"days_before_expiry": 28}, 1, "between 1 and 27"),
        ({"days_before_expiry": True}, 12, "between 1 and 324"),
        ({}, 12, "exactly one"),
        ({"lifetime_percentage": 80, "days_before_expiry": 30}, 12, "exactly one"),
    ],
)
def test_lifetime_action_ranges_are_enforced(
    trigger: dict[str, Any], months: int, fragment: str
) -> None:
    with pytest.raises(KeyVaultError) as caught:
        validate_lifetime_actions([_action(trigger)], months)
    assert (caught.value.status, caught.value.code) == (400, "BadParameter")
    assert fragment in caught.value.message


def test_range_edges_are_accepted() -> None:
    actions = [
        _action({"lifetime_percentage": 1}),
        _action({"lifetime_percentage": 99}),
        _action({"days_before_expiry": 27}, "EmailContacts"),
    ]
    assert validate_lifetime_actions(actions, 1) == actions


@pytest.mark.parametrize(
    "body",
    [
        [],
        {"x509_props": "CN=x"},
        {"x509_props": {"subject": 5}},
        {"x509_props": {"subject": "CN=x", "validity_months": "12"}},
        {"x509_props": {"subject": "CN=x", "ekus": "serverAuth"}},
        {"x509_props": {"subject": "CN=x"}, "key_props": {"key_size": 1024}},
        {"x509_props": {"subject": "CN=x"}, "secret_props": {"contentType": "text/plain"}},
        {"x509_props": {"subject": "CN=x"}, "lifetime_actions": {"trigger": {}}},
        {"x509_props": {"subject": "CN=x"}, "issuer": {"name": "DigiCert"}},
        {"x509_props": {}},
    ],
)
def test_malformed_policies_are_bad_parameter(body: Any) -> None:
    with pytest.raises(KeyVaultError) as caught:
        normalize_policy(body)
    assert caught.value.body()["error"]["code"] == "BadParameter"


def test_update_merges_sections_and_replaces_lifetime_actions() -> None:
    stored = normalize_policy({"x509_props": {"subject": "CN=a", "validity_months": 24}})
    updated = normalize_policy(
        {
            "x509_props": {"subject": "CN=b"},
            "lifetime_actions": [_action({"days_before_expiry": 30})],
        },
        stored,
    )
    assert updated["x509_props"]["subject"] == "CN=b"
    assert updated["x509_props"]["validity_months"] == 24  # kept
    assert updated["lifetime_actions"] == [_action({"days_before_expiry": 30})]
    assert normalize_policy({}, updated)["lifetime_actions"] == updated["lifetime_actions"]


def test_renewal_due_points() -> None:
    nbf, exp = 1_000_000.0, 1_000_000.0 + 100 * DAY
    assert renewal_due_at([_action({"lifetime_percentage": 80})], nbf, exp) == nbf + 80 * DAY
    assert renewal_due_at([_action({"days_before_expiry": 30})], nbf, exp) == exp - 30 * DAY
    both = [_action({"lifetime_percentage": 90}), _action({"days_before_expiry": 30})]
    assert renewal_due_at(both, nbf, exp) == exp - 30 * DAY  # the earliest wins
    assert renewal_due_at([_action({"lifetime_percentage": 10}, "EmailContacts")], nbf, exp) is None
    assert renewal_due_at([], nbf, exp) is None
