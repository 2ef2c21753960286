"""Throttling and injected faults, as the real SDK retry policies meet them.

Covers: ``x-ms-ratelimit-remaining-subscription-reads/-writes/-deletes`` on ARM answers; an
exhausted read bucket answering 429 ``SubscriptionRequestsThrottled`` with ``Retry-After``,
which azure-mgmt-batch's retry policy honours (the call succeeds after waiting); buckets per
principal; the simulated-clock option; Key Vault's GET window; injected status codes, latency,
dropped connections (retried by the SDK), LRO failures surfacing from ``begin_delete``; fault
count and time windows; bad fault specs refused.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import datetime
from typing import Any

import pytest
from azure.core.exceptions import HttpResponseError

from batchsim.client import SimControlError


@pytest.fixture
def account_url(info: dict[str, Any], demo: dict[str, Any]) -> str:
    return (
        f"{info['resourceManager']}subscriptions/{demo['subscriptionId']}/resourceGroups/"
        f"{demo['resourceGroup']}/providers/Microsoft.Batch/batchAccounts/"
        f"{demo['batchAccount']}?api-version=2025-06-01"
    )


def test_rate_limit_headers_count_down(raw: Any, arm_token: str, account_url: str) -> None:
    first = raw("GET", account_url, token=arm_token)
    second = raw("GET", account_url, token=arm_token)
    assert int(first.headers["x-ms-ratelimit-remaining-subscription-reads"]) == 249
    assert int(second.headers["x-ms-ratelimit-remaining-subscription-reads"]) == 248
    deleted = raw("DELETE", account_url.replace("?", "/pools/none?"), token=arm_token)
    assert int(deleted.headers["x-ms-ratelimit-remaining-subscription-deletes"]) == 199


def test_exhausted_bucket_answers_429_and_the_sdk_waits(
    arm: Any, demo: dict[str, Any], control: Any, raw: Any, arm_token: str, account_url: str
) -> None:
    control.set_throttle(arm={"reads": {"burst": 2, "refillPerSecond": 1}})
    raw("GET", account_url, token=arm_token)
    raw("GET", account_url, token=arm_token)
    refused = raw("GET", account_url, token=arm_token)
    assert refused.status == 429
    assert refused.json()["error"]["code"] == "SubscriptionRequestsThrottled"
    assert int(refused.headers["Retry-After"]) >= 1
    control.clear_requests()
    started = time.monotonic()
    account = arm.batch_account.get(demo["resourceGroup"], demo["batchAccount"])
    assert account.name == demo["batchAccount"]
    statuses = [r["status"] for r in control.requests(service="arm")]
    assert statuses[0] == 429 and statuses[-1] == 200
    assert time.monotonic() - started >= 0.9  # Retry-After was honoured, not hammered


def test_buckets_are_per_principal(
    control: Any, raw: Any, arm_token: str, account_url: str, workload_credential: Any
) -> None:
    control.set_throttle(arm={"reads": {"burst": 1, "refillPerSecond": 0.01}})
    assert raw("GET", account_url, token=arm_token).status == 200
    assert raw("GET", account_url, token=arm_token).status == 429
    other = workload_credential.get_token("https://management.azure.com/.default").token
    assert raw("GET", account_url, token=other).status == 200


def test_buckets_can_run_on_the_simulated_clock(
    control: Any, raw: Any, arm_token: str, account_url: str
) -> None:
    control.set_throttle(arm={"reads": {"burst": 1, "refillPerSecond": 1}, "clock": "sim"})
    assert raw("GET", account_url, token=arm_token).status == 200
    assert raw("GET", account_url, token=arm_token).status == 429
    control.advance(1)
    assert raw("GET", account_url, token=arm_token).status == 200


def test_keyvault_get_window(
    control: Any, raw: Any, info: dict[str, Any], demo: dict[str, Any], operator_credential: Any
) -> None:
    control.set_throttle(keyvault={"limit": 2, "windowSeconds": 10, "clock": "sim"})
    token = operator_credential.get_token(f"{info['keyVaultAudience']}/.default").token
    url = f"{demo['vaultUrl']}/certificates/{demo['certificate']}?api-version=7.5"
    assert [raw("GET", url, token=token).status for _ in range(3)] == [200, 200, 429]
    control.advance(10)
    assert raw("GET", url, token=token).status == 200


def test_injected_503_is_retried_by_the_sdk(arm: Any, demo: dict[str, Any], control: Any) -> None:
    control.add_fault(
        match={"service": "arm", "method": "GET", "pathRegex": "/batchAccounts/"},
        status=503,
        count=2,
    )
    assert arm.batch_account.get(demo["resourceGroup"], demo["batchAccount"]).name
    ops = [(r["operation"], r["status"]) for r in control.requests(service="arm")]
    assert ops == [("InjectedFault", 503), ("InjectedFault", 503), ("BatchAccount_Get", 200)]


def test_injected_status_with_body_reaches_the_caller(
    arm: Any, demo: dict[str, Any], control: Any
) -> None:
    control.add_fault(
        match={"service": "arm", "pathRegex": "/pools/p$"},
        status=403,
        body={"error": {"code": "AuthorizationFailed", "message": "no"}},
    )
    with pytest.raises(HttpResponseError) as caught:
        arm.pool.get(demo["resourceGroup"], demo["batchAccount"], "p")
    assert caught.value.status_code == 403
    assert caught.value.error.code == "AuthorizationFailed"


def test_latency_is_added(arm: Any, demo: dict[str, Any], control: Any) -> None:
    control.add_fault(match={"service": "arm"}, latencySeconds=0.5, count=1)
    started = time.monotonic()
    arm.batch_account.get(demo["resourceGroup"], demo["batchAccount"])
    assert time.monotonic() - started >= 0.5
    # The log says when the request arrived and when it was answered (simulated time, which
    # this fixture's frozen clock keeps equal; test_sim_units covers a moving clock).
    entry = control.requests(service="arm")[-1]
    assert datetime.fromisoformat(entry["received"]) <= datetime.fromisoformat(entry["time"])


def test_dropped_connection_is_retried_by_the_sdk(batch: Any, control: Any) -> None:
    control.add_fault(match={"service": "batch"}, drop=True, count=1)
    with pytest.raises(HttpResponseError):
        list(batch.list_nodes("nope"))  # the retry reaches the service: 404, not a drop
    ops = [r["operation"] for r in control.requests(service="batch")]
    assert ops[0] == "InjectedDrop"
    assert ops[-1] == "ComputeNode_List"


def test_lro_failure_surfaces_from_begin_delete(
    arm: Any, demo: dict[str, Any], control: Any, pool_body: Callable[..., Any]
) -> None:
    arm.pool.create(demo["resourceGroup"], demo["batchAccount"], "p", pool_body(nodes=0))
    control.set_node_behaviour(lroRetryAfterSeconds=1, deleteDurationSeconds=0)
    control.add_fault(
        match={"service": "arm", "method": "DELETE"},
        lroFailure={"code": "PoolDeleteFailed", "message": "injected"},
        count=1,
    )
    poller = arm.pool.begin_delete(demo["resourceGroup"], demo["batchAccount"], "p")
    with pytest.raises(HttpResponseError) as caught:
        poller.result(timeout=30)
    assert "PoolDeleteFailed" in str(caught.value)
    assert (
        arm.pool.get(demo["resourceGroup"], demo["batchAccount"], "p").provisioning_state
        == "Succeeded"
    )


def test_fault_windows_expire(arm: Any, demo: dict[str, Any], control: Any) -> None:
    control.add_fault(match={"service": "arm"}, status=404, durationSeconds=0.3)
    with pytest.raises(HttpResponseError):
        arm.batch_account.get(demo["resourceGroup"], demo["batchAccount"])
    time.sleep(0.35)  # real-time window by design; bounded
    assert arm.batch_account.get(demo["resourceGroup"], demo["batchAccount"]).name


@pytest.mark.parametrize(
    "spec",
    [
        {"match": {"service": "dns"}, "status": 500},
        {"match": {"pathRegex": "("}, "status": 500},
        {"status": 99},
        {"match": {"service": "arm"}},
        {"status": 500, "count": 0},
    ],
)
def test_bad_fault_specs_are_refused(control: Any, spec: dict[str, Any]) -> None:
    with pytest.raises(SimControlError) as caught:
        control.add_fault(**spec)
    assert caught.value.status == 400
