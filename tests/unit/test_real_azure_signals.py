"""The operator under the signals real Azure sends (recorded bodies as fixtures, pure code).

Covers: node-extension answers as Batch really sends them (``tests/data/azure/recorded.json``,
cut from ``../shared/azure-recordings`` with each entry's source): integer and string ``level``,
empty ``instanceView`` while Creating, Batch's own ``batchNodeExtension`` beside ours, "Plugin
enabled"; malformed shapes never raise; a Transitioning extension with the generic fetch-failure
text is failed (CertificateFetchFailing) whatever else it says; ``settings`` as object, JSON string
or absent; the control-plane diagnosis names each proven cause or says the cause is on the node;
the classifier on 409-while-resizing, a vault that does not resolve, Key Vault 429 without
Retry-After; the verdict picks the retry pacing.
"""

from __future__ import annotations

import json
import random
import socket
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from azure.core.exceptions import ServiceRequestError

from batchcert.adapters.batchnodes import build_node_report, parse_level
from batchcert.adapters.errors import to_call_error
from batchcert.assess.diagnosis import DiagnosisFacts, VaultAccessFact, diagnose_fetch_failure
from batchcert.assess.nodes import assess_node, build_nodes_status, summarize_nodes
from batchcert.errors import (
    THROTTLED_DEFAULT_DELAY,
    AzureCallError,
    Backoff,
    Verdict,
    classify,
)
from batchcert.models.azure import (
    CertificateFacts,
    CertificateReading,
    IdentityInfo,
    NodesReading,
)
from batchcert.translate.pool_diff import extension_client_id, settings_object

RECORDED = json.loads((Path(__file__).parents[1] / "data/azure/recorded.json").read_text())
NOW = datetime(2026, 11, 29, 12, 0, tzinfo=UTC)
NODE = {"id": "tvmps_x_d", "state": "idle"}


def _values(name: str) -> list[dict[str, Any]]:
    return list(RECORDED[name]["body"]["value"])


@pytest.mark.parametrize(
    ("raw", "level"),
    [
        (0, "Info"),
        (1, "Warning"),
        (2, "Error"),
        ("0", "Info"),
        ("Info", "Info"),
        ("error", "Error"),
        (None, None),
        (7, "7"),
        ("Odd", "Odd"),
        (True, "True"),
    ],
)
def test_levels_as_integers_and_strings(raw: Any, level: str | None) -> None:
    assert parse_level(raw) == level


def test_recorded_creating_answer_is_transitioning() -> None:
    # Recording: provisioningState Creating, instanceView {} and Batch's own extension beside ours.
    report = build_node_report(
        {"id": "n", "state": "creating"}, _values("extensions_creating"), "secretext"
    )
    assert report.extension_found and report.statuses == ()
    assert assess_node(report).state == "transitioning"
    idle = build_node_report(NODE, _values("extensions_creating"), "SECRETEXT")
    assert idle.extension_found  # names match case-insensitively
    assert assess_node(idle).state == "transitioning"  # Creating is not succeeded


def test_recorded_succeeded_answer_with_integer_level_is_ready() -> None:
    report = build_node_report(NODE, _values("extensions_succeeded"), "secretext")
    assert [s.level for s in report.statuses] == ["Info"]
    assert report.statuses[0].message == "Plugin enabled"
    assert assess_node(report).state == "ready"


def test_spec_example_with_string_level_is_read_too() -> None:
    # The spec example omits provisioningState: never ready without a succeeded state.
    report = build_node_report(NODE, _values("extensions_spec_example"), "customExtension")
    assert report.extension_found and report.statuses[0].level == "Info"
    assert assess_node(report).state == "transitioning"


@pytest.mark.parametrize(
    "extensions",
    [
        [None, 3, "x"],
        [{"vmExtension": "notadict", "instanceView": []}],
        [{"vmExtension": {"name": "kv"}, "instanceView": {"statuses": "nope"}}],
        [{"vmExtension": {"name": "kv"}, "instanceView": {"statuses": [1, None, {"level": 2}]}}],
        [{"vmExtension": {"name": "kv"}, "instanceView": None, "provisioningState": 5}],
        [
            {
                "vmExtension": {"name": "kv"},
                "instanceView": {"statuses": [{"time": "garbage", "level": [1]}]},
            }
        ],
    ],
)
def test_no_answer_shape_raises(extensions: list[Any]) -> None:
    report = build_node_report(NODE, extensions, "kv")
    verdict = assess_node(report)
    assert verdict.state in ("ready", "transitioning", "failed")
    status, verdicts = build_nodes_status(NodesReading(NOW, (report,)))
    summarize_nodes(verdicts, target_nodes=1, rotation_pending_until=None)
    assert status["total"] == 1


def _kv(state: str, code: str, level: Any, message: str) -> dict[str, Any]:
    return {
        "provisioningState": state,
        "vmExtension": {
            "name": "kv",
            "publisher": "Microsoft.Azure.KeyVault",
            "type": "KeyVaultForLinux",
        },
        "instanceView": {
            "name": "kv",
            "statuses": [{"code": code, "level": level, "displayStatus": "x", "message": message}],
        },
    }


def test_generic_fetch_failure_while_transitioning_is_failed_without_a_cause() -> None:
    ext = _kv(
        "Creating",
        "ProvisioningState/transitioning",
        0,
        "Failed to download one or more certificates, retrying...",
    )
    verdict = assess_node(build_node_report(NODE, [ext], "kv"))
    assert (verdict.state, verdict.cause) == ("failed", "CertificateFetchFailing")


@pytest.mark.parametrize("state", ["Succeeded", "Updating", "Unknown", None])
def test_generic_fetch_failure_under_any_provisioning_state_is_failing(state: Any) -> None:
    """The real text in an extension installed earlier (Succeeded) and failing now: no evidence
    rules that shape out, so it reads as failing, never as healthy (issue 21)."""
    ext = _kv(
        state,
        "ProvisioningState/succeeded",
        0,
        "Failed to download one or more certificates, retrying...",
    )
    verdict = assess_node(build_node_report(NODE, [ext], "kv"))
    assert (verdict.state, verdict.cause) == ("failed", "CertificateFetchFailing")


@pytest.mark.parametrize(
    "message", ["Plugin enabled", "Successfully started Key Vault extension service."]
)
def test_not_ready_unless_succeeded_whatever_the_message(message: str) -> None:
    for state in ("Creating", "Updating", "Unknown", None):
        ext = _kv(state, "ProvisioningState/transitioning", 0, message)  # type: ignore[arg-type]
        assert assess_node(build_node_report(NODE, [ext], "kv")).state != "ready"
    ok = _kv("Succeeded", "ProvisioningState/succeeded", 0, message)
    assert assess_node(build_node_report(NODE, [ok], "kv")).state == "ready"


def test_failed_with_integer_error_level() -> None:
    ext = _kv(
        "Failed", "ProvisioningState/failed", 2, "Failed to download one or more certificates"
    )
    verdict = assess_node(build_node_report(NODE, [ext], "kv"))
    assert (verdict.state, verdict.cause) == ("failed", "CertificateFetchFailing")


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ({"authenticationSettings": {"msiClientId": "c"}}, "c"),
        (json.dumps({"authenticationSettings": {"msiClientId": "c"}}), "c"),
        ("{not json", None),
        (None, None),
        (["a"], None),
    ],
)
def test_settings_as_object_string_or_absent(raw: Any, expected: str | None) -> None:
    body = {
        "properties": {
            "deploymentConfiguration": {
                "virtualMachineConfiguration": {
                    "extensions": [{"name": "KV", "settings": raw}, "junk"]
                }
            }
        }
    }
    assert extension_client_id(body, "kv") == expected
    assert isinstance(settings_object(raw), dict)


# --- diagnosis --------------------------------------------------------------------------------

ID = "/subscriptions/s/resourceGroups/rg/providers/Microsoft.ManagedIdentity/userAssignedIdentities/pool-id"
IDENTITY = IdentityInfo(ID, "client-1", "principal-1", "tenant")


def _cert(enabled: bool = True, expires: datetime | None = None) -> CertificateReading:
    facts = CertificateFacts(
        "https://kv.vault.azure.net",
        "c",
        "v1",
        "t",
        None,
        expires or NOW + timedelta(days=90),
        enabled,
    )
    return CertificateReading(("kv", "c"), NOW, facts)


def _facts(**overrides: Any) -> DiagnosisFacts:
    base: dict[str, Any] = {
        "identity_resource_id": ID,
        "identity": IDENTITY,
        "pool_identity_ids": (ID.lower(),),
        "extension_client_id": "client-1",
        "vaults": (VaultAccessFact("kv", True),),
        "certificates": (("certificate c in kv", _cert()),),
    }
    return DiagnosisFacts(**{**base, **overrides})


@pytest.mark.parametrize(
    ("overrides", "reason", "needle"),
    [
        ({"identity": None}, "IdentityNotFound", "does not exist"),
        ({"pool_identity_ids": ()}, "IdentityNotOnPool", "does not carry identity pool-id"),
        (
            {"extension_client_id": "principal-1"},
            "IdentityNotFound",
            "is not identity pool-id's clientId client-1",
        ),
        (
            {"vaults": (VaultAccessFact("kv", False),)},
            "VaultAccessDenied",
            "identity pool-id's principal principal-1 has no secrets get on vault kv",
        ),
        (
            {"vaults": (VaultAccessFact("kv", False, "role assignment"),)},
            "VaultAccessDenied",
            "role assignments",
        ),
        (
            {
                "certificates": (
                    (
                        "certificate c in kv",
                        CertificateReading(("kv", "c"), NOW, None, 404, "CertificateNotFound"),
                    ),
                )
            },
            "CertificateNotFound",
            "does not exist",
        ),
        (
            {"certificates": (("certificate c in kv", _cert(enabled=False)),)},
            "CertificateDisabled",
            "disabled",
        ),
        (
            {"certificates": (("certificate c in kv", _cert(expires=NOW - timedelta(days=1))),)},
            "CertificateExpired",
            "expired",
        ),
    ],
)
def test_diagnosis_names_the_proven_cause(
    overrides: dict[str, Any], reason: str, needle: str
) -> None:
    condition = diagnose_fetch_failure(_facts(**overrides), NOW)
    assert condition.status is False and condition.reason == reason
    assert needle in condition.message


def test_diagnosis_says_the_cause_is_on_the_node_and_where_the_log_is() -> None:
    condition = diagnose_fetch_failure(_facts(), NOW)
    assert condition.reason == "CertificateFetchFailing"
    assert "The cause is on the node" in condition.message
    assert "/var/log/azure/Microsoft.Azure.KeyVault.KeyVaultForLinux" in condition.message
    windows = diagnose_fetch_failure(_facts(os_type="Windows"), NOW)
    assert "KeyVaultForWindows" in windows.message


def test_diagnosis_never_calls_an_unread_check_passed() -> None:
    condition = diagnose_fetch_failure(
        _facts(vaults=(VaultAccessFact("kv", None, unverified_because="AuthorizationFailed"),)), NOW
    )
    assert condition.reason == "CertificateFetchFailing"
    assert "could not verify access to vault kv (AuthorizationFailed)" in condition.message


# --- the classifier and the pacing --------------------------------------------------------------


def _error(**kw: Any) -> AzureCallError:
    base: dict[str, Any] = {
        "service": "arm",
        "operation": "pools.update",
        "status": 409,
        "code": None,
        "message": "",
    }
    return AzureCallError(**{**base, **kw})


def test_conflict_while_resizing_is_retried_as_busy() -> None:
    verdict = classify(_error(code="PoolResizing", message="The pool is resizing"))
    assert (verdict.verdict, verdict.reason) == (Verdict.RETRY, "PoolBusy")
    assert classify(_error(code="Whatever")).reason == "AzureConflict"


def test_vault_that_does_not_resolve_needs_the_user() -> None:
    cause = socket.gaierror(-2, "Name or service not known")
    try:
        raise ServiceRequestError("Cannot connect to host x.vault.azure.net:443") from cause
    except ServiceRequestError as exc:
        error = to_call_error("keyvault", "certificates.get", exc)
    assert error.status is None and error.code == "NameResolutionError"
    verdict = classify(error)
    assert (verdict.verdict, verdict.reason) == (Verdict.USER_ACTION, "VaultNotResolvable")
    # A name that does not resolve elsewhere (ARM, a flaky resolver) is transient.
    assert (
        classify(to_call_error("arm", "pools.get", ServiceRequestError("x", error=cause))).verdict
        is Verdict.RETRY
    )


def test_keyvault_429_without_retry_after_is_throttled_with_a_delay() -> None:
    recorded = RECORDED["keyvault_throttled"]
    assert "Retry-After" not in recorded["headers"]
    error = _error(
        service="keyvault",
        status=429,
        code=recorded["body"]["error"]["code"],
        message=recorded["body"]["error"]["message"],
    )
    verdict = classify(error)
    assert verdict.verdict is Verdict.THROTTLED and verdict.retry_after == THROTTLED_DEFAULT_DELAY
    later = Backoff().after_failure(0.0, base=1.0, cap=300.0, failure=verdict, rng=random.Random(1))
    assert later.next_at >= THROTTLED_DEFAULT_DELAY  # never retried at once without Retry-After


def test_the_verdict_picks_the_pacing() -> None:
    rng = random.Random(7)
    transient = classify(_error(status=503))
    user = classify(_error(status=400, code="PropertyCannotBeUpdated"))
    assert user.verdict is Verdict.USER_ACTION and transient.verdict is Verdict.RETRY

    def delay(verdict: Any) -> float:
        return Backoff().after_failure(0.0, base=1.0, cap=300.0, failure=verdict, rng=rng).next_at

    assert delay(transient) <= 1.0
    assert delay(user) > 1.0  # a person must act: not retried like a 503
    assert delay(classify(_error(status=429, retry_after=42.0))) >= 42.0
