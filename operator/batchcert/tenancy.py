"""The install-time tenancy policy: who may act with the operator's own Azure identity, and
which Azure resources each namespace may name (pure; no I/O).

A platform team writes the policy once per install (``BATCHCERT_TENANCY_FILE``, a mounted JSON
file; see docs/operating.md "Tenancy: per-team setup"):

.. code-block:: json

    {
      "operatorIdentityNamespaces": ["platform"],
      "namespaces": {
        "team-a": {
          "subscriptions": ["<sub guid>"],
          "resourceGroups": ["/subscriptions/<sub>/resourceGroups/team-a"],
          "batchAccounts": ["/subscriptions/<sub>/resourceGroups/team-a/providers/Microsoft.Batch/batchAccounts/teama"],
          "identities": ["/subscriptions/.../userAssignedIdentities/team-a-nodes"],
          "vaults": ["team-a-kv"]
        },
        "*": {"subscriptions": []}
      }
    }

* ``operatorIdentityNamespaces``: the namespaces whose objects may fall back to the operator's own
  identity when they have no ServiceAccount of their own. Absent means ``["*"]``: every
  namespace, i.e. the whole cluster is ONE trust domain (what every install before tenancy was).
* ``namespaces``: allow-lists per namespace (``"*"`` applies to namespaces not listed). Within an
  entry, a kind that is absent is not restricted; an empty list allows nothing of that kind.
  Subscriptions and resource groups restrict every resource named (account, identity, vaults to
  grant on); ``vaults`` are vault *names* (the first label of ``vaultUrl``, the last segment of a
  ``grantSecretsAccess`` id).

Invariants: the verdict is a pure function of (policy, namespace, spec); comparisons ignore case
(ARM ids and vault names are case-insensitive); a refusal names the rule that refused.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from batchcert.models.spec import BatchCertPoolSpec

ANY_NAMESPACE = "*"
_KINDS = ("subscriptions", "resourceGroups", "batchAccounts", "identities", "vaults")


@dataclass(frozen=True)
class AllowList:
    """One namespace's allow-list; ``None`` for a kind means unrestricted."""

    subscriptions: frozenset[str] | None = None
    resource_groups: frozenset[str] | None = None
    batch_accounts: frozenset[str] | None = None
    identities: frozenset[str] | None = None
    vaults: frozenset[str] | None = None


@dataclass(frozen=True)
class TenancyPolicy:
    operator_identity_namespaces: frozenset[str] = frozenset({ANY_NAMESPACE})
    allow_lists: Mapping[str, AllowList] = field(default_factory=dict)

    def may_use_operator_identity(self, namespace: str) -> bool:
        allowed = self.operator_identity_namespaces
        return ANY_NAMESPACE in allowed or namespace in allowed

    def allow_list(self, namespace: str) -> AllowList | None:
        return self.allow_lists.get(namespace) or self.allow_lists.get(ANY_NAMESPACE)


NOT_ALLOWED = "NotAllowedForNamespace"
CREDENTIALS_UNAVAILABLE = "ServiceAccountUnavailable"


@dataclass(frozen=True)
class Refusal:
    rule: str  # e.g. "namespaces.team-b.identities"
    message: str
    reason: str = NOT_ALLOWED  # the Ready reason it is written with


def _lowered(values: Iterable[Any]) -> frozenset[str]:
    return frozenset(str(v).strip().rstrip("/").lower() for v in values)


def parse_policy(data: Mapping[str, Any]) -> TenancyPolicy:
    """The policy from its JSON form; ValueError names what is wrong."""
    fallback = data.get("operatorIdentityNamespaces", [ANY_NAMESPACE])
    if not isinstance(fallback, list) or not all(isinstance(n, str) for n in fallback):
        raise ValueError("operatorIdentityNamespaces must be a list of namespace names")
    entries = data.get("namespaces", {})
    if not isinstance(entries, dict):
        raise ValueError("namespaces must map a namespace name to its allow-list")
    allow_lists: dict[str, AllowList] = {}
    for namespace, entry in entries.items():
        if not isinstance(entry, dict):
            raise ValueError(f"namespaces.{namespace} must be an object")
        unknown = sorted(set(entry) - set(_KINDS))
        if unknown:
            raise ValueError(
                f"namespaces.{namespace}: unknown keys {unknown} (known: {', '.join(_KINDS)})"
            )
        lists: dict[str, frozenset[str] | None] = {}
        for kind in _KINDS:
            values = entry.get(kind)
            if values is not None and not isinstance(values, list):
                raise ValueError(f"namespaces.{namespace}.{kind} must be a list")
            lists[kind] = None if values is None else _lowered(values)
        allow_lists[namespace] = AllowList(
            subscriptions=lists["subscriptions"],
            resource_groups=lists["resourceGroups"],
            batch_accounts=lists["batchAccounts"],
            identities=lists["identities"],
            vaults=lists["vaults"],
        )
    return TenancyPolicy(frozenset(fallback), allow_lists)


def load_policy(path: str | Path | None) -> TenancyPolicy:
    """The policy in ``path``; without one, the one-trust-domain default."""
    if not path:
        return TenancyPolicy()
    try:
        return parse_policy(json.loads(Path(path).read_text()))
    except (OSError, ValueError) as exc:
        raise ValueError(f"tenancy policy {path}: {exc}") from exc


def _scope_parts(resource_id: str) -> tuple[str, str]:
    """(subscription id, /subscriptions/S/resourceGroups/R) of an ARM id, lower-cased."""
    parts = resource_id.strip("/").split("/")
    if len(parts) < 4 or parts[0].lower() != "subscriptions":
        return "", ""
    return parts[1].lower(), f"/subscriptions/{parts[1]}/resourcegroups/{parts[3]}".lower()


def _vault_name_of_url(url: str) -> str:
    return (urlsplit(url).hostname or "").split(".", 1)[0].lower()


def check_allowed(policy: TenancyPolicy, namespace: str, spec: BatchCertPoolSpec) -> Refusal | None:
    """The first rule the spec breaks, or None when the namespace may name all it names."""
    allow = policy.allow_list(namespace)
    if allow is None:
        return None
    entry = namespace if namespace in policy.allow_lists else ANY_NAMESPACE
    grants = spec.identity.grant_secrets_access
    scoped = [
        ("Batch account", spec.account.resource_id),
        ("identity", spec.identity.resource_id),
        *(("vault", v) for v in (grants.vaults if grants else [])),
    ]
    checks: list[tuple[str, frozenset[str] | None, list[tuple[str, str]]]] = [
        ("subscriptions", allow.subscriptions, [(k, _scope_parts(i)[0]) for k, i in scoped]),
        ("resourceGroups", allow.resource_groups, [(k, _scope_parts(i)[1]) for k, i in scoped]),
        ("batchAccounts", allow.batch_accounts, [("Batch account", spec.account.resource_id)]),
        ("identities", allow.identities, [("identity", spec.identity.resource_id)]),
        (
            "vaults",
            allow.vaults,
            [("vault", _vault_name_of_url(c.vault)) for c in spec.certificates]
            + [
                ("vault", v.rstrip("/").rsplit("/", 1)[-1])
                for v in (grants.vaults if grants else [])
            ],
        ),
    ]
    for kind, allowed, named in checks:
        if allowed is None:
            continue
        for what, value in named:
            if value.rstrip("/").lower() not in allowed:
                return Refusal(
                    f"namespaces.{entry}.{kind}",
                    f"namespace {namespace} may not use {what} {value}: it is not in the "
                    f"operator's tenancy policy (rule namespaces.{entry}.{kind})",
                )
    return None
