"""The Batch data plane and the Key Vault extension in the simulator's TALKATIVE mode.

Every test here switches ``talkativeExtension`` on (see ``test_sim_nodes_realistic.py`` for the
default, recorded-Azure shapes): the per-cause messages and per-version subStatus asserted
below are the simulator's inventions, kept for tests that need to see inside a node.

Covers: list nodes / get node / list and get node extensions with ``provisioningState``,
``vmExtension`` and ``instanceView`` (statuses and subStatuses) as azure-batch 15.1.0 reads
them; ``odata.nextLink`` paging, with ``$select`` kept across pages; Batch error bodies (PoolNotFound, NodeNotFound). Node logic:
success with the right identity and access; "Identity not found" naming a wrong msiClientId;
a 403-style failure without vault access, Transitioning then Failed after 25 attempts with
``requireInitialSync`` (node unusable); failure visible but provisioned without it;
``/certificates/`` URLs refused; rotation picked up within one polling interval of simulated
time and not before; a versioned URL never rotates; 3.0 object settings and Windows; a node
taken down; identity changes reaching only nodes created afterwards; time passing (no write)
advances only the pools with an instant due, a write every pool.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import pytest
from azure.core.exceptions import ResourceNotFoundError

Body = Callable[..., dict[str, Any]]
Ext = Callable[..., dict[str, Any]]


@pytest.fixture(autouse=True)
def talkative(control: Any) -> None:
    control.set_node_behaviour(talkativeExtension=True)


@pytest.fixture
def make_pool(arm: Any, demo: dict[str, Any], pool_body: Body, control: Any) -> Callable[..., str]:
    """Create a pool, let its nodes arrive and boot, return its name."""

    def make(
        name: str = "p",
        *,
        nodes: int = 1,
        extensions: list[dict[str, Any]],
        settle: float = 60.0,
        **kw: Any,
    ) -> str:
        arm.pool.create(
            demo["resourceGroup"],
            demo["batchAccount"],
            name,
            pool_body(nodes=nodes, extensions=extensions, **kw),
        )
        control.advance(settle)
        return name

    return make


def _ext(batch: Any, pool: str, node_id: str | None = None) -> Any:
    node_id = node_id or next(iter(batch.list_nodes(pool))).id
    [found] = list(batch.list_node_extensions(pool, node_id))
    return found


def _versions(ext: Any) -> dict[str, str]:
    for status in ext.instance_view.sub_statuses or []:
        if status.code.startswith("ComponentStatus/observedCertificates"):
            return {
                c["url"]: c["version"] for c in json.loads(status.message)["observedCertificates"]
            }
    return {}


def test_healthy_node_reports_success_and_the_fetched_version(
    batch: Any, make_pool: Callable[..., str], kv_extension: Ext, control: Any, demo: dict[str, Any]
) -> None:
    pool = make_pool(extensions=[kv_extension()], nodes=2)
    nodes = list(batch.list_nodes(pool))
    assert len(nodes) == 2
    assert {n.state for n in nodes} == {"idle"}
    assert all(n.id.startswith("tvmps_") and n.id.endswith("_d") for n in nodes)
    ext = _ext(batch, pool, nodes[0].id)
    assert ext.provisioning_state == "Succeeded"
    assert ext.vm_extension.name == "KVExtensions"
    assert ext.vm_extension.publisher == "Microsoft.Azure.KeyVault"
    status = ext.instance_view.statuses[0]
    assert status.code == "ProvisioningState/succeeded"
    assert status.level == "Info"
    assert status.message.startswith("Successfully started Key Vault extension service.")
    assert status.time is not None
    current = control.certificate(demo["vault"], demo["certificate"])["current"]["version"]
    assert _versions(ext) == {demo["secretId"]: current}
    same = batch.get_node_extension(pool, nodes[0].id, "KVExtensions")
    assert same.provisioning_state == "Succeeded"


def test_extension_settings_come_back_as_sent(
    batch: Any,
    make_pool: Callable[..., str],
    kv_extension: Ext,
    raw: Any,
    demo: dict[str, Any],
    operator_credential: Any,
) -> None:
    ext = kv_extension()
    pool = make_pool(extensions=[ext])
    node = next(iter(batch.list_nodes(pool))).id
    token = operator_credential.get_token("https://batch.core.windows.net//.default").token
    answer = raw(
        "GET",
        f"https://{demo['accountEndpoint']}/pools/{pool}/nodes/{node}/extensions"
        "?api-version=2025-06-01",
        token=token,
    )
    [entry] = answer.json()["value"]
    assert entry["vmExtension"] == ext
    assert set(entry["instanceView"]) == {"name", "statuses", "subStatuses"}


def test_paging_follows_odata_next_link(
    batch: Any, make_pool: Callable[..., str], kv_extension: Ext, control: Any
) -> None:
    pool = make_pool(extensions=[kv_extension()], nodes=3)
    control.clear_requests()
    assert len(list(batch.list_nodes(pool, max_results=1))) == 3
    pages = control.requests(service="batch", operation="ComputeNode_List")
    assert len(pages) == 3
    assert "$skiptoken" in pages[-1]["query"]


def test_select_keeps_only_the_named_properties_on_every_page(
    batch: Any, make_pool: Callable[..., str], kv_extension: Ext, control: Any
) -> None:
    pool = make_pool(extensions=[kv_extension()], nodes=3)
    control.clear_requests()
    nodes = list(batch.list_nodes(pool, max_results=2, select=["id", "state"]))
    assert [set(n.as_dict()) for n in nodes] == [{"id", "state"}] * 3
    pages = control.requests(service="batch", operation="ComputeNode_List")
    assert len(pages) == 2
    assert all(p["query"].get("$select") == "id,state" for p in pages)
    ext = batch.get_node_extension(pool, nodes[0].id, "KVExtensions", select=["provisioningState"])
    assert set(ext.as_dict()) == {"provisioningState"}


def test_batch_error_bodies(batch: Any, make_pool: Callable[..., str], kv_extension: Ext) -> None:
    with pytest.raises(ResourceNotFoundError) as pool:
        list(batch.list_nodes("nope"))
    assert pool.value.error.code == "PoolNotFound"
    body = pool.value.response.json()
    assert body["message"]["lang"] == "en-US"
    assert body["message"]["value"].startswith("The specified pool does not exist.\nRequestId:")
    name = make_pool(extensions=[kv_extension()])
    with pytest.raises(ResourceNotFoundError) as node:
        list(batch.list_node_extensions(name, "tvmps_nope_d"))
    assert node.value.error.code == "NodeNotFound"


def test_wrong_client_id_fails_naming_it(
    batch: Any, make_pool: Callable[..., str], kv_extension: Ext, control: Any
) -> None:
    wrong = "99999999-9999-9999-9999-999999999999"
    pool = make_pool(extensions=[kv_extension(client_id=wrong)])
    ext = _ext(batch, pool)
    assert ext.provisioning_state == "Creating"
    status = ext.instance_view.statuses[0]
    assert status.code == "ProvisioningState/transitioning"
    assert "Identity not found" in status.message
    assert wrong in status.message
    assert next(iter(batch.list_nodes(pool))).state == "starting"
    control.advance(10 * 25)  # the 25 attempts of requireInitialSync run out
    failed = _ext(batch, pool)
    assert failed.provisioning_state == "Failed"
    assert failed.instance_view.statuses[0].level == "Error"
    assert "Identity not found" in failed.instance_view.statuses[0].message
    assert next(iter(batch.list_nodes(pool))).state == "unusable"


def test_principal_id_instead_of_client_id_is_not_found(
    batch: Any, make_pool: Callable[..., str], kv_extension: Ext, demo: dict[str, Any]
) -> None:
    pool = make_pool(extensions=[kv_extension(client_id=demo["identity"]["principalId"])])
    assert "Identity not found" in _ext(batch, pool).instance_view.statuses[0].message


def test_missing_client_id_fails(
    batch: Any, make_pool: Callable[..., str], kv_extension: Ext
) -> None:
    pool = make_pool(extensions=[kv_extension(client_id=None)])
    assert "Identity not found" in _ext(batch, pool).instance_view.statuses[0].message


def test_pool_without_identity_fails(
    batch: Any, make_pool: Callable[..., str], kv_extension: Ext
) -> None:
    pool = make_pool(extensions=[kv_extension()], identity=False)
    assert "No managed identity" in _ext(batch, pool).instance_view.statuses[0].message


def test_no_vault_access_fails_with_a_forbidden_message(
    batch: Any, make_pool: Callable[..., str], kv_extension: Ext, control: Any, demo: dict[str, Any]
) -> None:
    control.grant(
        demo["vault"],
        demo["identity"]["principalId"],
        {"secrets": ["get", "list"]},
        operation="remove",
    )
    pool = make_pool(extensions=[kv_extension()])
    message = _ext(batch, pool).instance_view.statuses[0].message
    assert "Forbidden" in message
    assert "does not have secrets get permission" in message
    assert demo["identity"]["principalId"] in message
    # Granting access while still within the retries lets the next attempt succeed.
    control.grant(demo["vault"], demo["identity"]["principalId"], {"secrets": ["get"]})
    control.advance(10)
    assert _ext(batch, pool).provisioning_state == "Succeeded"


def test_without_initial_sync_the_failure_shows_in_substatuses(
    batch: Any, make_pool: Callable[..., str], kv_extension: Ext
) -> None:
    pool = make_pool(extensions=[kv_extension(client_id="nobody", require_initial_sync=False)])
    ext = _ext(batch, pool)
    assert ext.provisioning_state == "Succeeded"
    errors = [s for s in ext.instance_view.sub_statuses if s.level == "Error"]
    assert errors
    assert "Identity not found" in errors[0].message
    assert next(iter(batch.list_nodes(pool))).state == "idle"


def test_certificates_url_is_refused(
    batch: Any, make_pool: Callable[..., str], kv_extension: Ext, demo: dict[str, Any]
) -> None:
    url = demo["secretId"].replace("/secrets/", "/certificates/")
    pool = make_pool(extensions=[kv_extension(urls=[url])])
    assert "NotASecretsUrl" in _ext(batch, pool).instance_view.statuses[0].message


def test_disabled_certificate_is_refused(
    batch: Any, make_pool: Callable[..., str], kv_extension: Ext, control: Any, demo: dict[str, Any]
) -> None:
    control.set_certificate_enabled(demo["vault"], demo["certificate"], False)
    pool = make_pool(extensions=[kv_extension()])
    assert "Disabled" in _ext(batch, pool).instance_view.statuses[0].message


def test_rotation_is_picked_up_within_one_polling_interval(
    batch: Any, make_pool: Callable[..., str], kv_extension: Ext, control: Any, demo: dict[str, Any]
) -> None:
    pool = make_pool(extensions=[kv_extension(polling="300")])
    before = _versions(_ext(batch, pool))[demo["secretId"]]
    renewed = control.renew_certificate(demo["vault"], demo["certificate"])
    assert renewed != before
    control.advance(299)  # the node last fetched at most 0 s ago: not yet polled again
    assert _versions(_ext(batch, pool))[demo["secretId"]] == before
    control.advance(1)
    assert _versions(_ext(batch, pool))[demo["secretId"]] == renewed


def test_auto_renewal_reaches_nodes_through_the_clock(
    batch: Any, make_pool: Callable[..., str], kv_extension: Ext, control: Any, demo: dict[str, Any]
) -> None:
    pool = make_pool(extensions=[kv_extension(polling="3600")])
    first = _versions(_ext(batch, pool))[demo["secretId"]]
    control.advance(300 * 86_400)  # past 80% of a 12-month lifetime: AutoRenew fired
    current = control.certificate(demo["vault"], demo["certificate"])["current"]["version"]
    assert current != first
    assert _versions(_ext(batch, pool))[demo["secretId"]] == current


def test_versioned_url_never_rotates(
    batch: Any, make_pool: Callable[..., str], kv_extension: Ext, control: Any, demo: dict[str, Any]
) -> None:
    pinned = control.certificate(demo["vault"], demo["certificate"])["current"]["version"]
    url = f"{demo['secretId']}/{pinned}"
    pool = make_pool(extensions=[kv_extension(urls=[url], polling="60")])
    assert _versions(_ext(batch, pool)) == {url: pinned}
    control.renew_certificate(demo["vault"], demo["certificate"])
    control.advance(3600)
    control.advance(400 * 86_400)
    assert _versions(_ext(batch, pool)) == {url: pinned}


def test_v3_object_settings_on_windows(
    batch: Any, make_pool: Callable[..., str], kv_extension: Ext, demo: dict[str, Any]
) -> None:
    ext = kv_extension(version="3.0", os_type="Windows")
    ext["settings"]["secretsManagementSettings"]["observedCertificates"] = [
        {
            "url": demo["secretId"],
            "certificateStoreName": "MY",
            "certificateStoreLocation": "LocalMachine",
        }
    ]
    pool = make_pool(extensions=[ext])
    found = _ext(batch, pool)
    assert found.provisioning_state == "Succeeded"
    assert found.vm_extension.type == "KeyVaultForWindows"
    assert demo["secretId"] in _versions(found)


def test_a_node_taken_down_reports_its_state(
    batch: Any, make_pool: Callable[..., str], kv_extension: Ext, control: Any, demo: dict[str, Any]
) -> None:
    pool = make_pool(extensions=[kv_extension()], nodes=2)
    node = next(iter(batch.list_nodes(pool))).id
    ids = (demo["subscriptionId"], demo["resourceGroup"], demo["batchAccount"], pool)
    control.set_node_state(*ids, node_id=node, state="unusable")
    states = {n.id: n.state for n in batch.list_nodes(pool)}
    assert states[node] == "unusable"
    assert sorted(states.values()) == ["idle", "unusable"]
    control.set_node_state(*ids, node_id=node, state=None)
    assert {n.state for n in batch.list_nodes(pool)} == {"idle"}


def test_identity_changes_reach_only_new_nodes(
    arm: Any,
    batch: Any,
    demo: dict[str, Any],
    make_pool: Callable[..., str],
    kv_extension: Ext,
    control: Any,
) -> None:
    pool = make_pool(extensions=[kv_extension()])
    # Shrink to zero, swap the identity for one without vault access, grow again.
    other = control.add_identity(
        demo["subscriptionId"],
        demo["resourceGroup"],
        "other-identity",
        client_id=demo["identity"]["clientId"].replace("4", "5"),
    )
    arm.pool.update(
        demo["resourceGroup"],
        demo["batchAccount"],
        pool,
        {"properties": {"scaleSettings": {"fixedScale": {"targetDedicatedNodes": 0}}}},
    )
    control.advance(3600)
    arm.pool.update(
        demo["resourceGroup"],
        demo["batchAccount"],
        pool,
        {
            "identity": {"type": "UserAssigned", "userAssignedIdentities": {other["id"]: {}}},
            "properties": {"scaleSettings": {"fixedScale": {"targetDedicatedNodes": 1}}},
        },
    )
    control.advance(60)
    # The extension still names the demo identity's clientId: the new node cannot find it.
    assert "Identity not found" in _ext(batch, pool).instance_view.statuses[0].message


def test_time_passing_advances_only_the_pools_with_something_due(
    sim: Any, make_pool: Callable[..., str], kv_extension: Ext, monkeypatch: pytest.MonkeyPatch
) -> None:
    from batchsim import core

    make_pool("early", extensions=[kv_extension()], settle=120.0)
    make_pool("late", extensions=[kv_extension()], settle=120.0)
    world = sim.sim
    world.tick()  # the control call's write is walked: nothing dirty from here on
    pools = {p.name: p for p in world.world.all_pools()}
    due = {name: world._pool_due[id(pool)] for name, pool in pools.items()}
    assert due["early"] < due["late"]  # their extensions first fetched 120 s apart
    advanced: list[str] = []
    real = core.nodes.advance_pool

    def counting(pool: Any, *args: Any) -> None:
        advanced.append(pool.name)
        real(pool, *args)

    monkeypatch.setattr(core.nodes, "advance_pool", counting)
    world.clock.advance(due["early"] - world.clock.timestamp())  # time alone: no write
    world.tick()
    assert advanced == ["early"]
    assert world._pool_due[id(pools["early"])] > due["early"]  # its next poll, not the last
    world.tick()
    assert advanced == ["early"]  # nothing more due: a tick is free
    world.mark_dirty()
    world.tick()
    assert sorted(advanced) == ["early", "early", "late"]  # a write walks every pool
