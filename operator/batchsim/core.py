"""The simulation: every simulated service's state, wired together, on one clock.

Role: own the clock, the request log, the token authority, the directory (Entra), the ARM
world, the Key Vault service, throttles and faults; advance them together (``tick``); answer
the cross-service questions (may this principal read that vault? what is that account's
endpoint?); and persist/restore all of it for state dirs.

Invariants:
* ``tick`` is the only place simulated time takes effect: Key Vault renewals first, then pool
  deletions, resizes and node extensions, so a node polling at the same instant as a renewal
  sees the new version. It runs before every request, after every write, and from a ticker;
  it walks the world only when something is due, so per-request ticks stay cheap.
* all mutation happens on the server's event-loop thread (handlers and the ticker), so the
  state needs no locks beyond the ones the log, throttles and Key Vault store keep anyway.
* the addresses clients see always carry the real port (``...sim.test:PORT``).
"""

from __future__ import annotations

import json
import math
import os
import secrets
import time
from pathlib import Path
from typing import Any, Protocol

from batchsim import rbac
from batchsim.batch import nodes
from batchsim.batch.kvextension import Resolver, SecretResolutionLike
from batchsim.clock import SimClock
from batchsim.entra.service import CLUSTER_ISSUER, Directory, FederatedCredential
from batchsim.entra.tokens import Principal, TokenAuthority
from batchsim.faults import FaultInjector
from batchsim.requestlog import RequestLog
from batchsim.throttle import ArmThrottle, KeyVaultThrottle
from batchsim.world import BatchAccount, NodeBehaviour, Pool, Vault, World, region_label

DEFAULT_TENANT_ID = "10000000-0000-0000-0000-000000000001"
OPERATOR_CLIENT_ID = "20000000-0000-0000-0000-000000000001"
OPERATOR_OBJECT_ID = "20000000-0000-0000-0000-0000000000a1"
WORKLOAD_CLIENT_ID = "30000000-0000-0000-0000-000000000001"
WORKLOAD_OBJECT_ID = "30000000-0000-0000-0000-0000000000a1"
WORKLOAD_SUBJECT = "system:serviceaccount:batchcert-system:batchcert-operator"

HOST_SUFFIX = "sim.test"
LOGIN_HOST = f"login.{HOST_SUFFIX}"
MANAGEMENT_HOST = f"management.{HOST_SUFFIX}"
VAULT_SUFFIX = f"vault.{HOST_SUFFIX}"
BATCH_SUFFIX = f"batch.{HOST_SUFFIX}"


class KeyVaultPort(Protocol):
    """The part of ``keyvault.KeyVaultService`` the rest of the simulator uses."""

    def ensure_vault(
        self, name: str, *, tenant_id: str | None = ..., location: str = ...
    ) -> None: ...
    def remove_vault(self, name: str) -> None: ...
    def create_certificate(
        self,
        vault: str,
        name: str,
        *,
        subject: str,
        validity_months: int = ...,
        lifetime_action: dict[str, Any] | None = ...,
        enabled: bool = ...,
    ) -> str: ...
    def renew_certificate(self, vault: str, name: str) -> str: ...
    def set_certificate_enabled(self, vault: str, name: str, enabled: bool) -> None: ...
    def delete_certificate(self, vault: str, name: str) -> None: ...
    def set_policy_lifetime_actions(
        self, vault: str, name: str, actions: list[dict[str, Any]]
    ) -> None: ...
    def certificate_info(self, vault: str, name: str) -> dict[str, Any]: ...
    def audience(self, port: int | None = None) -> str: ...
    def tick(self) -> int: ...
    def resolve_secret(self, url: str) -> SecretResolutionLike: ...
    def snapshot(self) -> dict[str, Any]: ...
    def restore(self, data: dict[str, Any]) -> None: ...


class Simulation:
    def __init__(
        self,
        *,
        port: int,
        clock: SimClock | None = None,
        tenant_id: str = DEFAULT_TENANT_ID,
        state_dir: Path | None = None,
    ) -> None:
        self.port = port
        self.clock = clock or SimClock()
        self.tenant_id = tenant_id
        self.state_dir = state_dir
        self._published_hosts: list[str] | None = None
        self.log = RequestLog(clock=self.clock)
        # Tokens run on real time (see tokens.py for why); everything else on the SimClock.
        self.tokens = TokenAuthority(time.time, tenant_id, f"https://sts.windows.net/{tenant_id}/")
        self.directory = Directory(tenant_id)
        self.world = World(tenant_id)
        self.arm_throttle = ArmThrottle(self.clock)
        self.kv_throttle = KeyVaultThrottle(self.clock)
        self.faults = FaultInjector()
        self.kv: KeyVaultPort = self._make_keyvault()
        self.directory.resources.add(self.kv.audience(port).rstrip("/").lower())
        self.directory.resources.add(self.kv.audience(None).rstrip("/").lower())
        self.operator_secret = secrets.token_urlsafe(24)
        self.register_default_principals()
        self._dirty = True
        self._next_due = 0.0
        self._pool_due: dict[int, float] = {}  # id(pool) → its earliest pending instant

    # --- wiring ----------------------------------------------------------------------------

    def _make_keyvault(self) -> KeyVaultPort:
        from batchsim.keyvault.service import KeyVaultService

        service = KeyVaultService(
            self.clock,
            self.tokens.verify_token,
            self.authorize,
            self.log,
            tenant_id=self.tenant_id,
            dns_suffix=VAULT_SUFFIX,
            login_host=LOGIN_HOST,
            throttle=self.kv_throttle,
        )
        return service

    def register_default_principals(self) -> None:
        self.directory.register(
            "batchcert-operator",
            client_id=OPERATOR_CLIENT_ID,
            object_id=OPERATOR_OBJECT_ID,
            client_secret=self.operator_secret,
        )
        self.directory.register(
            "batchcert-operator-workload",
            client_id=WORKLOAD_CLIENT_ID,
            object_id=WORKLOAD_OBJECT_ID,
            federated=[FederatedCredential(issuer=CLUSTER_ISSUER, subject=WORKLOAD_SUBJECT)],
        )
        # The operator's own identity holds broad rights, as an install's usually does; every
        # other principal only what it is assigned (rbac.py).
        for object_id in (OPERATOR_OBJECT_ID, WORKLOAD_OBJECT_ID):
            rbac.seed_owner(self.world, object_id, self.clock.timestamp())

    # --- addresses -------------------------------------------------------------------------

    @property
    def authority_host(self) -> str:
        return f"https://{LOGIN_HOST}:{self.port}"

    @property
    def management_url(self) -> str:
        return f"https://{MANAGEMENT_HOST}:{self.port}"

    def account_endpoint(self, account: BatchAccount) -> str:
        """The Batch ``accountEndpoint`` (no scheme, as ARM returns it; with the port)."""
        return f"{account.name.lower()}.{region_label(account.location)}.{BATCH_SUFFIX}:{self.port}"

    def vault_uri(self, name: str) -> str:
        return f"https://{name.lower()}.{VAULT_SUFFIX}:{self.port}/"

    # --- cross-service questions ------------------------------------------------------------

    def authorize(self, vault: str, object_id: str, kind: str, permission: str) -> bool:
        """Key Vault data-plane authorization from the vault's ARM access policies."""
        found = self.world.vault(vault)
        return found is not None and self.world.vault_allows(
            found, object_id, kind, permission, self.clock.timestamp()
        )

    def verify_token(self, authorization: str | None, audience: str | list[str]) -> Principal:
        return self.tokens.verify_token(authorization, audience)

    def resolver(self) -> Resolver:
        return self.kv.resolve_secret

    # --- time ------------------------------------------------------------------------------

    def mark_dirty(self) -> None:
        """Something changed outside simulated time (a write): re-evaluate on the next tick."""
        self._dirty = True

    def tick(self, *, force: bool = False) -> None:
        """Bring the world up to the clock's now.

        Cheap when nothing is due. The full walk over pools and nodes runs only when forced,
        after a write, or after a renewal (anything may have changed); otherwise only the pools
        whose own earliest pending instant has passed are advanced. Every node's extension
        polls on its own schedule, so with thousands of nodes some instant passes on nearly
        every request: walking everything then cost the simulator a core at 2000 nodes and
        stretched its answers from 0.1 s to 0.16 s (benchmarks/results/issue15).
        """
        renewed = self.kv.tick()
        now = self.clock.timestamp()
        full = force or self._dirty or renewed
        if not (full or now >= self._next_due):
            return
        self._dirty = False
        self._finish_deletions(now)
        if full:
            self._pool_due = {}
            due_pools = self.world.all_pools()
        else:
            due_pools = [p for p in self.world.all_pools() if self._pool_due.get(id(p), 0.0) <= now]
        for pool in due_pools:
            nodes.advance_pool(
                pool,
                now,
                self.world.behaviour_for(pool),
                self.world.identity,
                self.world.vault,
                self.kv.resolve_secret,
                self.tenant_id,
                lambda vault, oid, kind, permission: self.world.vault_allows(
                    vault, oid, kind, permission, now
                ),
            )
            self._pool_due[id(pool)] = self._pool_pending(pool, now, self.world.behaviour_for(pool))
        operations = [op.due for op in self.world.operations.values() if op.status == "InProgress"]
        self._next_due = min(
            min(operations, default=math.inf), min(self._pool_due.values(), default=math.inf)
        )

    @staticmethod
    def _pool_pending(pool: Pool, now: float, behaviour: NodeBehaviour) -> float:
        """The pool's earliest instant at which something changes by itself (inf: none)."""
        pending: list[float] = [] if pool.resize_due is None else [pool.resize_due]
        for node in pool.nodes.values():
            starting = node.ready_at - behaviour.boot_s / 2  # creating → starting (nodes.py)
            pending.extend(t for t in (starting, node.ready_at) if t > now)
            for rt in node.extension_runtime.values():
                if rt.provisioning_state == "Failed":
                    continue
                pending.append(rt.next_poll if rt.succeeded_once else rt.next_attempt)
        return min(pending, default=math.inf)

    def _finish_deletions(self, now: float) -> None:
        for op in self.world.operations.values():
            if op.status != "InProgress" or now < op.due:
                continue
            pool = self._pool_by_id(op.pool_arm_id)
            if op.error is not None:
                op.status = "Failed"
                if pool is not None:
                    # Unconfirmed: after a failed delete the pool stays, provisioned again.
                    pool.provisioning_state = "Succeeded"
                    pool.provisioning_state_transition_time = now
                    pool.delete_operation = None
                continue
            op.status = "Succeeded"
            if pool is not None:
                account = self.world.account(
                    pool.subscription_id, pool.resource_group, pool.account
                )
                if account is not None:
                    account.pools.pop(pool.name.lower(), None)
                self._pool_due.pop(id(pool), None)

    def _pool_by_id(self, arm_id: str) -> Pool | None:
        return next((p for p in self.world.all_pools() if p.arm_id.lower() == arm_id.lower()), None)

    # --- seeding helpers shared by the control API and the demo seed -------------------------

    def add_vault(
        self, subscription_id: str, resource_group: str, name: str, location: str
    ) -> Vault:
        self.world.add_resource_group(subscription_id, resource_group, location)
        vault = self.world.add_vault(
            Vault(subscription_id, resource_group, name, location, self.tenant_id)
        )
        self.kv.ensure_vault(name, tenant_id=self.tenant_id, location=location)
        return vault

    def cluster_token(self) -> str:
        """A fresh service-account token for the workload principal's federated credential."""
        return self.directory.issue_cluster_token(WORKLOAD_SUBJECT, time.time())

    def write_federated_token(self) -> Path | None:
        if self.state_dir is None:
            return None
        path = self.state_dir / "federated-token"
        tmp = path.with_suffix(".tmp")
        tmp.write_text(self.cluster_token())
        os.replace(tmp, path)
        return path

    # --- what clients need to know ----------------------------------------------------------

    def info(self, ca_bundle: str | None) -> dict[str, Any]:
        info: dict[str, Any] = {
            "port": self.port,
            "caBundle": ca_bundle,
            "tenantId": self.tenant_id,
            "authorityHost": self.authority_host,
            "resourceManager": self.management_url + "/",
            "keyVaultDnsSuffix": f".{VAULT_SUFFIX}",
            "keyVaultAudience": self.kv.audience(self.port),
            "batchDnsSuffix": f".{BATCH_SUFFIX}",
            "hostAliases": self.host_aliases(),
            "control": f"{self.management_url}/_sim",
            "principals": {
                "operator": {
                    "clientId": OPERATOR_CLIENT_ID,
                    "clientSecret": self.operator_secret,
                    "objectId": OPERATOR_OBJECT_ID,
                },
                "workload": {
                    "clientId": WORKLOAD_CLIENT_ID,
                    "objectId": WORKLOAD_OBJECT_ID,
                    "federatedIssuer": CLUSTER_ISSUER,
                    "federatedSubject": WORKLOAD_SUBJECT,
                },
            },
        }
        if self.state_dir is not None:
            info["federatedTokenFile"] = str(self.state_dir / "federated-token")
            info["hostsFile"] = str(self.state_dir / "hosts")
        return info

    # --- name resolution: only what exists resolves, as DNS does -----------------------------

    def host_aliases(self) -> dict[str, str]:
        """The fixed names (Entra, ARM, every Batch account endpoint) as patterns. A vault's
        name resolves only while the vault exists: real ``<vault>.vault.azure.net`` names are
        NXDOMAIN for a vault that does not exist (the Key Vault docs' troubleshooting of "No such
        host is known"), so a misspelt vault fails name resolution rather than answering 404.
        Those names are published in the hosts file (``publish_hosts``); without a state dir
        there is no file, and every vault-style name is aliased (kinder: documented)."""
        if self.state_dir is None:
            return {f"*.{HOST_SUFFIX}": "127.0.0.1"}
        return {
            LOGIN_HOST: "127.0.0.1",
            MANAGEMENT_HOST: "127.0.0.1",
            f"*.{BATCH_SUFFIX}": "127.0.0.1",
        }

    def publish_hosts(self) -> None:
        """Keep ``<state dir>/hosts`` (hosts(5) format) equal to the vaults that exist.

        Rewritten atomically, and only when the set changed; readers (the operator's resolver,
        ``hostaliases``) re-read it when its modification time moves."""
        if self.state_dir is None:
            return
        names = sorted({f"{name}.{VAULT_SUFFIX}" for name in self.world.vaults})
        if names == self._published_hosts:
            return
        path = self.state_dir / "hosts"
        tmp = path.with_suffix(".tmp")
        tmp.write_text(
            "# the simulator's vaults that exist (rewritten as they come and go)\n"
            + "".join(f"127.0.0.1 {name}\n" for name in names)
        )
        os.replace(tmp, path)
        self._published_hosts = names

    # --- persistence -------------------------------------------------------------------------

    def snapshot(self) -> dict[str, Any]:
        return {
            "version": 1,
            "port": self.port,
            "clock": self.clock.now().isoformat(),
            "tokenKey": self.tokens.key.hex(),
            "clusterKey": self.directory.cluster_key.hex(),
            "operatorSecret": self.operator_secret,
            "apps": [
                {
                    "name": a.name,
                    "clientId": a.client_id,
                    "objectId": a.object_id,
                    "secrets": a.secrets,
                    "federated": [
                        {"issuer": f.issuer, "subject": f.subject, "audiences": f.audiences}
                        for f in a.federated
                    ],
                }
                for a in self.directory.apps.values()
            ],
            "world": self.world.snapshot(),
            "keyvault": self.kv.snapshot(),
        }

    def restore(self, data: dict[str, Any]) -> None:
        from datetime import datetime

        self.clock.set_time(datetime.fromisoformat(data["clock"]))
        self.tokens.key = bytes.fromhex(data["tokenKey"])
        self.directory.cluster_key = bytes.fromhex(data["clusterKey"])
        self.operator_secret = data["operatorSecret"]
        self.directory.apps.clear()
        for app in data["apps"]:
            reg = self.directory.register(
                app["name"],
                client_id=app["clientId"],
                object_id=app["objectId"],
                federated=[
                    FederatedCredential(f["issuer"], f["subject"], list(f["audiences"]))
                    for f in app["federated"]
                ],
            )
            reg.secrets = list(app["secrets"])
        self.world = World.restore(data["world"])
        for object_id in (OPERATOR_OBJECT_ID, WORKLOAD_OBJECT_ID):  # state saved before RBAC
            rbac.seed_owner(self.world, object_id, self.clock.timestamp())
        self.kv.restore(data["keyvault"])
        self.mark_dirty()

    def save_state(self) -> None:
        if self.state_dir is None:
            return
        path = self.state_dir / "state.json"
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(self.snapshot()))
        os.replace(tmp, path)

    def load_state(self) -> bool:
        if self.state_dir is None or not (self.state_dir / "state.json").exists():
            return False
        self.restore(json.loads((self.state_dir / "state.json").read_text()))
        return True
