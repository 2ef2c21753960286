"""Name resolution as DNS gives it: only vaults that exist resolve.

Covers: ``sim.json`` aliases Entra, ARM and the Batch endpoints by pattern but no vault name; its
``hostsFile`` lists exactly the vaults that exist, and follows a vault added through the control
API (before the call returns) and the world being reset; the operator's resolver, given that
``sim.json`` as its cloud file, resolves an existing vault and not a misspelt one.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from batchcert.adapters.resolver import AliasResolver, read_hosts_file
from batchcert.config import load_cloud_file
from batchsim.server import RunningSimulator


def listed(info: dict[str, Any]) -> set[str]:
    return set(read_hosts_file(info["hostsFile"]))


async def test_only_existing_vaults_resolve(sim: RunningSimulator, demo: dict[str, Any]) -> None:
    info = sim.info
    assert not any("vault" in pattern for pattern in info["hostAliases"])
    assert Path(info["hostsFile"]).parent == sim.sim_json.parent
    assert listed(info) == {f"{demo['vault']}.vault.sim.test"}

    sim.control.add_vault(demo["subscriptionId"], demo["resourceGroup"], "TeamBVault")
    assert listed(info) == {f"{demo['vault']}.vault.sim.test", "teambvault.vault.sim.test"}

    cloud = load_cloud_file(sim.sim_json)
    resolver = AliasResolver(cloud.host_aliases, hosts_file=cloud.hosts_file)
    assert resolver.alias_of(f"{demo['vault']}.vault.sim.test") == "127.0.0.1"
    assert resolver.alias_of("TeamBVault.vault.sim.test") == "127.0.0.1"
    assert resolver.alias_of("teambvualt.vault.sim.test") is None  # misspelt
    assert resolver.alias_of("management.sim.test") == "127.0.0.1"
    assert resolver.alias_of(f"{demo['batchAccount']}.westeurope.batch.sim.test") == "127.0.0.1"

    sim.control.reset("none")
    assert listed(info) == set()
