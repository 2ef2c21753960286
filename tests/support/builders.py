"""Small builders of BatchCertPool specs and manifests shared by the test tiers."""

from __future__ import annotations

from typing import Any

from batchcert.translate.pool_body import Owner

IDENTITY = (
    "/subscriptions/00000000-0000-0000-0000-000000000000/resourceGroups/ACR/providers/"
    "Microsoft.ManagedIdentity/userAssignedIdentities/testumaforpools"
)
CLIENT_ID = "b9f6dd56-d2d6-4967-99d7-8062d56fd84c"
OWNER = Owner("team-a", "render-pool", "6f1c1a0e-0000-4000-8000-000000000001")


def base_spec(**overrides: Any) -> dict[str, Any]:
    spec: dict[str, Any] = {
        "account": {
            "subscriptionId": "00000000-0000-0000-0000-000000000000",
            "resourceGroup": "ACR",
            "name": "mybatchaccount",
        },
        "vmSize": "STANDARD_DS2_V2",
        "image": {
            "publisher": "canonical",
            "offer": "ubuntuserver",
            "sku": "20.04-lts",
            "version": "latest",
        },
        "nodeAgentSkuId": "batch.node.ubuntu 20.04",
        "taskSchedulingPolicy": {"nodeFillType": "Pack"},
        "scale": {"fixed": {"targetDedicatedNodes": 1, "targetLowPriorityNodes": 0}},
        "identity": {"resourceId": IDENTITY, "clientId": CLIENT_ID},
        "certificates": [{"vaultUrl": "https://mykv.vault.azure.net", "name": "mycert"}],
    }
    spec.update(overrides)
    return spec
