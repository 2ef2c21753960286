"""The GitOps table of docs/gitops.md, rendered from what kstatus, Argo CD and Flux returned.

``tests/consumers`` runs the tools' own libraries over every case; each row here names the case
that stands for a state (the registry cases of the same action all share its verdicts, which
``go test`` asserts), so the docs can never claim a verdict the libraries do not give.
"""

from __future__ import annotations

STATES: list[tuple[str, str]] = [
    ("just created (the CRD's status default; nothing written yet)", "lifecycle/just-created"),
    ("first reconcile (`Reconciling` on every component)", "lifecycle/converging"),
    (
        "converging: any transient reason (`PoolCreated`, `NodesAllocating`, `RotationPropagating`, "
        "`CertificateCreating`, `AzureThrottled`, ...)",
        "reason/PoolReady/PoolCreated",
    ),
    (
        "needs a person: any user-action reason (`CertificateNotFound`, `VaultAccessDenied`, "
        "`AuthorizationFailed`, ...)",
        "reason/CertificateReady/CertificateNotFound",
    ),
    (
        "pool still creating *and* a certificate missing",
        "lifecycle/creating-with-missing-certificate",
    ),
    ("ready for the current generation", "lifecycle/ready"),
    ("spec edited, not yet observed", "lifecycle/stale-generation"),
    (
        "spec refused after an edit (`VaultNotAllowed`, `InvalidSpec`)",
        "lifecycle/refused-after-edit",
    ),
    ('paused (`batchcert.dev/paused: "true"`)', "lifecycle/paused"),
    ("being deleted", "lifecycle/deleting"),
]

HEADER = (
    "| state | kstatus (`kubectl`/Flux `wait`, kpt, cli-utils) | Argo CD (with `argocd-cm.yaml`) "
    "| Flux (`healthCheckExprs`) |\n|---|---|---|---|\n"
)


def render_table(verdicts: dict[str, dict[str, dict[str, str]]]) -> str:
    rows = []
    for label, case in STATES:
        got = verdicts[case]
        rows.append(
            f"| {label} | {got['kstatus']['status']} | {got['argocd']['status']} "
            f"| {got['flux']['status']} |"
        )
    return HEADER + "\n".join(rows) + "\n"
