"""Pure assessments of certificates and nodes, and the shared certificate cache.

Covers: first sighting is not a rotation, a new version is (count, time); every CertificateReady
reason (missing, forbidden, disabled, expired, expiring without AutoRenew, AutoRenew disabled,
stuck, ready); node verdicts named by cause from the extension's messages, including a fetch
that fails after a first success (a Warning subStatus, found by the fault suite); RotationPropagating;
bounded failures; the watcher reads each certificate once per interval however many ask, and
single-flights concurrent askers.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

import pytest

from batchcert.adapters.keyvault import failed_reading
from batchcert.assess.certificates import (
    CertificatePolicy,
    assess_reading,
    build_certificate_status,
    expected_renewal_time,
    is_cloud_vault,
)
from batchcert.assess.nodes import MAX_FAILURES, build_nodes_status, summarize_nodes
from batchcert.errors import AzureCallError
from batchcert.models.azure import (
    CertificateFacts,
    CertificateReading,
    ExtensionStatus,
    LifetimeAction,
    NodeExtensionReport,
    NodesReading,
)
from batchcert.models.spec import CertificateRef
from batchcert.reconcile.certwatch import CertificateWatcher

pytestmark = pytest.mark.unit
T0 = datetime(2026, 11, 28, 10, 0, tzinfo=UTC)
CERT = CertificateRef(vault_url="https://mykv.vault.azure.net", name="mycert")
AUTO80 = (LifetimeAction("AutoRenew", lifetime_percentage=80),)


def facts(
    version: str = "v1",
    *,
    enabled: bool = True,
    actions: tuple[LifetimeAction, ...] = AUTO80,
    nbf: datetime = T0 - timedelta(days=10),
    days: int = 365,
) -> CertificateFacts:
    return CertificateFacts(
        "https://mykv.vault.azure.net",
        "mycert",
        version,
        "AB" * 20,
        nbf,
        nbf + timedelta(days=days),
        enabled,
        actions,
    )


def reading(
    f: CertificateFacts | None = None, status: int | None = None, message: str = "x"
) -> CertificateReading:
    if status is None and f is None and message != "x":  # no HTTP answer at all
        error = AzureCallError(
            service="keyvault",
            operation="certificates.get",
            status=None,
            code=None,
            message=message,
        )
        return failed_reading(CERT.key, T0, error)
    if status is not None:  # read as the adapter reads it: with the classifier's verdict
        error = AzureCallError(
            service="keyvault",
            operation="certificates.get",
            status=status,
            code=None,
            message=message,
        )
        return failed_reading(CERT.key, T0, error)
    return CertificateReading(CERT.key, T0, facts=f)


def test_first_sighting_is_not_a_rotation_and_a_new_version_is() -> None:
    item, rotated = build_certificate_status(CERT, reading(facts("v1")), None, T0)
    assert rotated is None and item["rotations"] == 0 and "lastRotationTime" not in item
    assert item["secretId"] == "https://mykv.vault.azure.net/secrets/mycert"
    assert item["shortVersion"] == "v1" and item["thumbprint"] == "AB" * 20
    same, rotated = build_certificate_status(
        CERT, reading(facts("v1")), item, T0 + timedelta(hours=1)
    )
    assert rotated is None and same == item
    later = T0 + timedelta(days=300)
    item2, rotated = build_certificate_status(CERT, reading(facts("v2")), item, later)
    assert rotated is not None and rotated.version == "v2"
    assert (item2["rotations"], item2["lastRotationTime"], item2["version"]) == (
        1,
        "2027-09-24T10:00:00Z",
        "v2",
    )


def test_a_failed_read_keeps_what_status_knew() -> None:
    item, _ = build_certificate_status(CERT, reading(facts("v1")), None, T0)
    kept, rotated = build_certificate_status(CERT, reading(None, 503), item, T0)
    assert rotated is None and kept["version"] == "v1"


def test_expected_renewal_time() -> None:
    f = facts(nbf=T0, days=100)
    assert expected_renewal_time(f) == T0 + timedelta(days=80)
    days = facts(nbf=T0, days=100, actions=(LifetimeAction("AutoRenew", days_before_expiry=30),))
    assert expected_renewal_time(days) == T0 + timedelta(days=70)
    assert expected_renewal_time(facts(actions=(LifetimeAction("EmailContacts", 80),))) is None


@pytest.mark.parametrize(
    ("r", "now", "reason"),
    [
        (None, T0, "CertificatePending"),
        (reading(None, 404), T0, "CertificateNotFound"),
        (reading(None, 403), T0, "AuthorizationFailed"),
        (reading(None, 401), T0, "AuthenticationFailed"),
        (reading(None, 429), T0, "AzureThrottled"),
        (reading(None, 500), T0, "CertificateReadFailed"),
        (
            reading(None, None, "Cannot connect: Name or service not known"),
            T0,
            "VaultNotResolvable",
        ),
        (reading(facts(enabled=False)), T0, "CertificateDisabled"),
        (reading(facts()), T0 + timedelta(days=400), "CertificateExpired"),
        (reading(facts(actions=())), T0 + timedelta(days=340), "CertificateExpiringSoon"),
        (reading(facts(actions=())), T0, "AutoRenewDisabled"),
        (reading(facts()), T0 + timedelta(days=300), "AutoRenewStuck"),
        (reading(facts()), T0, "CertificatesReady"),
    ],
)
def test_certificate_reasons(r: CertificateReading | None, now: datetime, reason: str) -> None:
    verdict = assess_reading(CERT, r, now, CertificatePolicy())
    assert verdict.reason == reason
    assert verdict.ok is (reason == "CertificatesReady")


def node(
    node_id: str,
    *,
    state: str = "idle",
    prov: str = "Succeeded",
    level: str = "Info",
    message: str = "Successfully started Key Vault extension service.",
    found: bool = True,
) -> NodeExtensionReport:
    return NodeExtensionReport(
        node_id,
        state,
        found,
        prov,
        (ExtensionStatus(code="ProvisioningState/succeeded", level=level, message=message),),
    )


def test_nodes_summary_and_causes() -> None:
    nodes = NodesReading(
        T0,
        (
            node("n1"),
            node(
                "n2", prov="Failed", level="Error", message="Identity not found for msiClientId x"
            ),
            node(
                "n3",
                prov="Failed",
                level="Error",
                message="Forbidden: does not have secrets get permission",
            ),
            node("n4", state="starting"),
            node("n5", found=False),
        ),
    )
    status, verdicts = build_nodes_status(nodes)
    assert {k: status[k] for k in ("total", "ready", "transitioning", "failed", "summary")} == {
        "total": 5,
        "ready": 1,
        "transitioning": 1,
        "failed": 3,
        "summary": "1/5",
    }
    assert [f["code"] for f in status["failures"]] == [
        "IdentityNotFound",
        "VaultAccessDenied",
        "ExtensionMissing",
    ]
    condition = summarize_nodes(verdicts, target_nodes=5, rotation_pending_until=None)
    assert condition.status is False and "3/5 nodes failed" in condition.message


def test_wrong_client_id_names_the_cause() -> None:
    _, verdicts = build_nodes_status(
        NodesReading(T0, (node("n1", prov="Failed", level="Error", message="Identity not found"),))
    )
    condition = summarize_nodes(verdicts, target_nodes=1, rotation_pending_until=None)
    assert condition.reason == "IdentityNotFound"
    assert "spec.identity.clientId" in condition.message


def test_failures_are_bounded_and_keep_first_seen_time() -> None:
    many = NodesReading(T0, tuple(node(f"n{i}", prov="Failed", level="Error") for i in range(30)))
    status, _ = build_nodes_status(many)
    assert len(status["failures"]) == MAX_FAILURES and status["failed"] == 30
    later = NodesReading(T0 + timedelta(minutes=5), many.nodes)
    again, _ = build_nodes_status(later, status["failures"])
    assert again["failures"][0]["time"] == status["failures"][0]["time"]


def test_rotation_propagating_and_healthy() -> None:
    _, verdicts = build_nodes_status(NodesReading(T0, (node("n1"),)))
    pending = summarize_nodes(
        verdicts, target_nodes=1, rotation_pending_until=T0 + timedelta(minutes=5)
    )
    assert (pending.status, pending.reason) == (False, "RotationPropagating")
    done = summarize_nodes(verdicts, target_nodes=1, rotation_pending_until=None)
    assert (done.status, done.reason) == (True, "ExtensionSucceeded")
    allocating = summarize_nodes([], target_nodes=2, rotation_pending_until=None)
    assert allocating.reason == "NodesAllocating"


async def test_watcher_reads_once_per_interval_and_single_flights() -> None:
    clock = [0.0]
    calls: list[tuple[str, str]] = []

    async def read(
        key: tuple[str, str], vault: str, name: str, now: datetime
    ) -> CertificateReading:
        calls.append(key)
        await asyncio.sleep(0.01)
        return CertificateReading(key, now, facts=facts(f"v{len(calls)}"))

    watcher = CertificateWatcher(
        read, interval=300, retry_interval=15, now=lambda: T0, monotonic=lambda: clock[0]
    )
    results = await asyncio.gather(*(watcher.reading(CERT) for _ in range(100)))
    assert len(calls) == 1 and {r.facts.version for r in results if r.facts} == {"v1"}
    clock[0] = 299
    assert (await watcher.reading(CERT)).facts.version == "v1"  # type: ignore[union-attr]
    clock[0] = 301
    assert (await watcher.reading(CERT)).facts.version == "v2"  # type: ignore[union-attr]
    assert len(calls) == 2


async def test_watcher_retries_failures_sooner() -> None:
    clock = [0.0]
    outcomes = [404, None]

    async def read(
        key: tuple[str, str], vault: str, name: str, now: datetime
    ) -> CertificateReading:
        status = outcomes.pop(0)
        return CertificateReading(key, now, facts=None if status else facts(), error_status=status)

    watcher = CertificateWatcher(
        read, interval=300, retry_interval=15, now=lambda: T0, monotonic=lambda: clock[0]
    )
    assert (await watcher.reading(CERT)).error_status == 404
    clock[0] = 16
    assert (await watcher.reading(CERT)).facts is not None


def test_an_unusable_node_is_named_by_its_failing_extension() -> None:
    report = node(
        "n1", state="unusable", prov="Failed", level="Error", message="Identity not found"
    )
    _, verdicts = build_nodes_status(NodesReading(T0, (report,)))
    assert verdicts[0].cause == "IdentityNotFound"
    bare = NodeExtensionReport("n2", "unusable", False)
    _, verdicts = build_nodes_status(NodesReading(T0, (bare,)))
    assert verdicts[0].cause == "NodeUnusable"


@pytest.mark.parametrize(
    ("url", "suffix", "allowed"),
    [
        ("https://mykv.vault.azure.net", ".vault.azure.net", True),
        ("https://MyKV.Vault.Azure.Net/", "vault.azure.net", True),
        ("https://demokv.vault.sim.test:33605", ".vault.sim.test", True),
        ("https://vault.azure.net", ".vault.azure.net", False),
        ("https://evil.example/vault.azure.net", ".vault.azure.net", False),
        ("https://mykv.vault.azure.net.evil.example", ".vault.azure.net", False),
        ("https://mykv.vault.azure.cn", ".vault.azure.net", False),
    ],
)
def test_only_the_clouds_vaults_are_read(url: str, suffix: str, allowed: bool) -> None:
    assert is_cloud_vault(url, suffix) is allowed


@pytest.mark.parametrize(
    ("message", "cause"),
    [
        (
            "Forbidden (403). The user, group or application 'appid=x;oid=y' does not have "
            "secrets get permission on key vault 'demokv'",
            "VaultAccessDenied",
        ),
        ("SecretNotFound: secret decay-1 not found", "CertificateNotFound"),
        ("CertificateDisabled: certificate decay-1 is disabled", "CertificateDisabled"),
    ],
)
def test_a_fetch_failing_after_a_first_success_is_a_failure(message: str, cause: str) -> None:
    # The extension keeps its old versions and says so only with a Warning subStatus; the
    # healthy statuses around it (and the downloaded-certificates JSON) must not hide it.
    report = NodeExtensionReport(
        "n1",
        "idle",
        True,
        "Succeeded",
        (
            ExtensionStatus(
                code="ProvisioningState/succeeded",
                level="Info",
                message="Successfully started Key Vault extension service.",
            ),
        ),
        (
            ExtensionStatus(
                code="ComponentStatus/observedCertificates/succeeded",
                level="Info",
                message='{"observedCertificates": [{"url": "https://kv/secrets/c", "version": "v"}]}',
            ),
            ExtensionStatus(code="ComponentStatus/fetch/failed", level="Warning", message=message),
        ),
    )
    status, verdicts = build_nodes_status(NodesReading(T0, (report,)))
    assert status["failed"] == 1 and status["failures"][0]["code"] == cause
    condition = summarize_nodes(verdicts, target_nodes=1, rotation_pending_until=None)
    assert (condition.status, condition.reason) == (False, cause)


def test_a_warning_that_is_not_a_failed_component_stays_healthy() -> None:
    _, verdicts = build_nodes_status(NodesReading(T0, (node("n1", level="Warning"),)))
    condition = summarize_nodes(verdicts, target_nodes=1, rotation_pending_until=None)
    assert (condition.status, condition.reason) == (True, "ExtensionSucceeded")
