"""Pure parts of the simulator, without a server.

Covers: SimClock (scale, advance, continuity at scale changes, frozen time); token minting and
verification (audience normalisation incl. the Batch double slash, tampering, expiry); ARM
token buckets (burst, refill, Retry-After) and the Key Vault sliding window on injected time;
fault matching, counts and windows; the request log's filters, bound and counters (per user agent too); pool body
rules (defaults, update refusals by api-version, autoscale targets, ETag monotonicity, ARM
time format); Key Vault extension settings parsing (1.0/2.0 strings, 3.0 objects, defaults,
invalid settings).
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from batchsim.arm.errors import ArmError
from batchsim.arm.poolspec import (
    arm_time,
    check_update,
    next_etag,
    scale_targets,
    validate_pool_body,
)
from batchsim.batch.kvextension import is_kv_extension, parse_kv_extension
from batchsim.clock import SimClock
from batchsim.entra.tokens import TokenAuthority, TokenError, audience_from_scope
from batchsim.faults import FaultInjector
from batchsim.requestlog import CALLER_USER_AGENT, REQUEST_RECEIVED, RequestFilter, RequestLog
from batchsim.throttle import ArmThrottle, BucketSpec, KeyVaultThrottle

pytestmark = pytest.mark.unit  # pure, also run by `make unit` (sim comes from the folder)

START = datetime(2026, 1, 1, tzinfo=UTC)


class FakeTime:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_clock_scales_advances_and_never_jumps() -> None:
    real = FakeTime()
    clock = SimClock(START, scale=2.0, monotonic=real)
    real.now += 10
    assert clock.now() == START + timedelta(seconds=20)
    clock.set_scale(0)
    real.now += 100
    assert clock.now() == START + timedelta(seconds=20)  # frozen, and no jump at the change
    clock.advance(5)
    assert clock.now() == START + timedelta(seconds=25)
    with pytest.raises(ValueError, match="forward"):
        clock.advance(-1)
    assert clock.now().tzinfo is not None


def test_tokens_verify_per_audience_and_expire() -> None:
    now = FakeTime()
    authority = TokenAuthority(now, "tenant", "issuer")
    batch = authority.mint(
        audience=audience_from_scope("https://batch.core.windows.net//.default"),
        object_id="oid",
        app_id="app",
    )
    principal = authority.verify_token(f"Bearer {batch}", "https://batch.core.windows.net/")
    assert (principal.object_id, principal.app_id, principal.tenant_id) == ("oid", "app", "tenant")
    with pytest.raises(TokenError) as wrong:
        authority.verify_token(f"Bearer {batch}", "https://management.azure.com/")
    assert wrong.value.reason == "audience"
    tampered = batch[:-2] + ("AA" if not batch.endswith("AA") else "BB")
    with pytest.raises(TokenError) as forged:
        authority.verify_token(f"Bearer {tampered}", "https://batch.core.windows.net/")
    assert forged.value.reason == "invalid"
    with pytest.raises(TokenError) as missing:
        authority.verify_token(None, "https://batch.core.windows.net/")
    assert missing.value.reason == "missing"
    now.now += 3600
    with pytest.raises(TokenError) as expired:
        authority.verify_token(f"Bearer {batch}", "https://batch.core.windows.net/")
    assert expired.value.reason == "expired"


def test_arm_bucket_bursts_refills_and_says_when() -> None:
    real = FakeTime()
    throttle = ArmThrottle(SimClock(START), monotonic=real)
    throttle.configure(specs={"reads": BucketSpec(burst=3, refill_per_s=0.5)})
    verdicts = [throttle.take("sub", "me", "GET") for _ in range(4)]
    assert [v.allowed for v in verdicts] == [True, True, True, False]
    assert [v.remaining for v in verdicts[:3]] == [2, 1, 0]
    assert verdicts[3].retry_after_s == 2  # one token at 0.5/s
    assert throttle.take("sub", "someone-else", "GET").allowed
    assert throttle.take("sub", "me", "PUT").kind == "writes"
    real.now += 2
    assert throttle.take("sub", "me", "GET").allowed


def test_arm_default_limits_are_the_documented_ones() -> None:
    specs = ArmThrottle(SimClock(START)).specs
    assert (specs["reads"].burst, specs["reads"].refill_per_s) == (250, 25.0)
    assert (specs["writes"].burst, specs["writes"].refill_per_s) == (200, 10.0)
    assert (specs["deletes"].burst, specs["deletes"].refill_per_s) == (200, 10.0)


def test_keyvault_window_counts_gets_per_vault() -> None:
    real = FakeTime()
    kv = KeyVaultThrottle(SimClock(START), limit=2, window_s=10, monotonic=real)
    assert kv.take("v", "GET") is None
    assert kv.take("v", "GET") is None
    assert kv.take("v", "PUT") is None  # only GETs count
    assert kv.take("other", "GET") is None
    assert kv.take("v", "GET") == 10
    real.now += 10
    assert kv.take("v", "GET") is None
    assert KeyVaultThrottle(SimClock(START)).limit == 4000


def test_faults_match_count_and_expire() -> None:
    real = FakeTime()
    faults = FaultInjector(monotonic=real)
    faults.add_from_json(
        {
            "match": {"service": "arm", "method": "get", "pathRegex": "/pools/"},
            "status": 503,
            "count": 2,
        }
    )
    faults.add_from_json({"match": {"service": "batch"}, "drop": True, "durationSeconds": 5})
    assert faults.match("arm", "PUT", "/x/pools/p") is None
    assert faults.match("arm", "GET", "/x/pools/p") is not None
    assert faults.match("arm", "GET", "/x/pools/p") is not None
    assert faults.match("arm", "GET", "/x/pools/p") is None
    assert faults.match("batch", "GET", "/pools") is not None
    real.now += 5
    assert faults.match("batch", "GET", "/pools") is None
    assert faults.list() == []


def test_request_log_filters_bounds_and_counts() -> None:
    log = RequestLog(max_entries=2)
    for status in (200, 404, 200):
        log.record("arm", "Pool_Get", "GET", "/p", {}, "2025-06-01", status, "me")
    log.record("keyvault", "GetSecret", "GET", "/secrets/s", {}, "7.5", 200, "me", secret_read=True)
    assert len(log.query()) == 2  # bounded
    assert log.count("arm", "Pool_Get") == 3  # counters are not
    assert log.count(status=404) == 1
    assert log.secret_reads == 1
    assert [r.operation for r in log.query(RequestFilter(secret_read=True))] == ["GetSecret"]
    assert log.query(RequestFilter(since_seq=log.last_seq)) == []


def test_request_log_records_and_counts_the_callers_user_agent() -> None:
    log = RequestLog()
    token = CALLER_USER_AGENT.set("batchcert-operator/0.1.0 shard/1-of-2 azsdk-python-x")
    try:
        log.record("arm", "Pool_Get", "GET", "/p", {}, None, 200, "me")
    finally:
        CALLER_USER_AGENT.reset(token)
    log.record("arm", "Pool_Get", "GET", "/p", {}, None, 200, "me")  # no agent sent
    log.record("arm", "Pool_Get", "GET", "/p", {}, None, 200, "me", user_agent="other")
    assert [r.user_agent for r in log.query()] == [
        "batchcert-operator/0.1.0 shard/1-of-2 azsdk-python-x",
        None,
        "other",
    ]
    assert len(log.query(RequestFilter(user_agent_regex=r"shard/1-of-2"))) == 1
    by_agent = {row["userAgent"]: row["count"] for row in log.counters_by_user_agent()}
    assert by_agent == {
        "batchcert-operator/0.1.0 shard/1-of-2 azsdk-python-x": 1,
        "": 1,
        "other": 1,
    }
    assert log.count("arm", "Pool_Get") == 3  # the per-operation counters are unchanged


def test_request_log_says_when_a_request_arrived_and_was_answered() -> None:
    clock = SimClock(datetime(2026, 1, 1, tzinfo=UTC), scale=0)
    log = RequestLog(clock=clock)
    token = REQUEST_RECEIVED.set(clock.now())
    try:
        clock.advance(0.25)  # the injected latency, say
        log.record("batch", "ComputeNode_List", "GET", "/pools/p/nodes", {}, None, 200, "me")
    finally:
        REQUEST_RECEIVED.reset(token)
    log.record("batch", "ComputeNode_List", "GET", "/pools/p/nodes", {}, None, 200, "me")
    first, second = log.query()
    assert (first.received, first.time) == ("2026-01-01T00:00:00Z", "2026-01-01T00:00:00.250000Z")
    assert second.received == ""  # recorded outside a request (the control plane, say)


def _pool(**props: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "properties": {
            "vmSize": "x",
            "deploymentConfiguration": {
                "virtualMachineConfiguration": {
                    "imageReference": {"publisher": "p", "offer": "o", "sku": "s"},
                    "nodeAgentSkuId": "n",
                }
            },
        }
    }
    body["properties"].update(props)
    return body


def test_pool_defaults_and_enum_casing() -> None:
    spec = validate_pool_body(
        _pool(taskSchedulingPolicy={"nodeFillType": "pack"}, provisioningState="ignored"),
        partial=False,
    )
    props = spec["properties"]
    assert props["taskSchedulingPolicy"] == {"nodeFillType": "Pack"}
    assert props["taskSlotsPerNode"] == 1
    assert props["interNodeCommunication"] == "Disabled"
    assert "provisioningState" not in props


@pytest.mark.parametrize(
    ("api_version", "steady_and_empty", "refused"),
    [
        ("2025-06-01", False, True),
        ("2025-06-01", True, False),
        ("2024-07-01", True, False),
        ("2024-02-01", True, True),  # before 2024-07-01 these never changed
    ],
)
def test_update_rules_follow_the_api_version(
    api_version: str, steady_and_empty: bool, refused: bool
) -> None:
    old = validate_pool_body(_pool(), partial=False)
    new = validate_pool_body(_pool(vmSize="y"), partial=False)
    if refused:
        with pytest.raises(ArmError) as caught:
            check_update(old, new, api_version=api_version, steady_and_empty=steady_and_empty)
        assert caught.value.code == "PropertyCannotBeUpdated"
    else:
        check_update(old, new, api_version=api_version, steady_and_empty=steady_and_empty)
    scaled = validate_pool_body(
        _pool(scaleSettings={"fixedScale": {"targetDedicatedNodes": 4}}), partial=False
    )
    check_update(old, scaled, api_version=api_version, steady_and_empty=False)


def test_scale_targets() -> None:
    assert scale_targets(
        {
            "properties": {
                "scaleSettings": {
                    "fixedScale": {"targetDedicatedNodes": 2, "targetLowPriorityNodes": 1}
                }
            }
        }
    ) == (2, 1)
    assert scale_targets(
        {"properties": {"scaleSettings": {"autoScale": {"formula": "$TargetDedicatedNodes=3;"}}}}
    ) == (3, 0)
    assert scale_targets(
        {
            "properties": {
                "scaleSettings": {
                    "autoScale": {"formula": "$TargetDedicatedNodes = min(10, $PendingTasks)"}
                }
            }
        }
    ) == (0, 0)
    assert scale_targets({"properties": {}}) == (0, 0)


def test_etags_and_times_look_like_azure() -> None:
    first = next_etag(None, START.timestamp())
    assert first.startswith('W/"0x8D') and first.endswith('"')
    assert int(next_etag(first, START.timestamp())[5:-1], 16) == int(first[5:-1], 16) + 1
    assert arm_time(START.timestamp() + 0.5) == "2026-01-01T00:00:00.5000000Z"


def _kv(settings: Any, **ext: Any) -> dict[str, Any]:
    return {
        "name": "kv",
        "publisher": "Microsoft.Azure.KeyVault",
        "type": "KeyVaultForLinux",
        "typeHandlerVersion": "2.0",
        "settings": settings,
        **ext,
    }


def test_kv_settings_v2_strings_and_v3_objects() -> None:
    v2 = parse_kv_extension(
        _kv(
            {
                "secretsManagementSettings": {
                    "pollingIntervalInS": "600",
                    "requireInitialSync": True,
                    "observedCertificates": ["https://a.vault.sim.test/secrets/c"],
                },
                "authenticationSettings": {"msiClientId": "cid"},
            }
        )
    )
    assert (v2.polling_s, v2.require_initial_sync, v2.msi_client_id, v2.problem) == (
        600.0,
        True,
        "cid",
        None,
    )
    assert v2.urls == ("https://a.vault.sim.test/secrets/c",)
    v3 = parse_kv_extension(
        _kv(
            {
                "secretsManagementSettings": {
                    "observedCertificates": [
                        {
                            "url": "https://a.vault.sim.test/secrets/c",
                            "certificateStoreName": "MY",
                            "certificateStoreLocation": "LocalMachine",
                        }
                    ]
                }
            },
            type="KeyVaultForWindows",
            typeHandlerVersion="3.0",
        )
    )
    assert (v3.os_type, v3.urls, v3.polling_s, v3.require_initial_sync) == (
        "Windows",
        ("https://a.vault.sim.test/secrets/c",),
        3600.0,
        False,
    )


def test_kv_settings_problems_are_reported_not_raised() -> None:
    assert parse_kv_extension(_kv({})).problem is not None
    assert "pollingIntervalInS" in (
        parse_kv_extension(
            _kv(
                {
                    "secretsManagementSettings": {
                        "pollingIntervalInS": "often",
                        "observedCertificates": ["u"],
                    }
                }
            )
        ).problem
        or ""
    )
    assert not is_kv_extension({"publisher": "Microsoft.Azure.Monitor", "type": "AzureMonitor"})
