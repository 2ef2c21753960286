"""The operator's names in the Kubernetes API and in Azure metadata, in one place.

Invariant: every module that names the resource, its finalizer, an annotation or a metadata key
imports it from here; the CRD (crds/batchcertpools.yaml) and api.md are the contract they match.
"""

from __future__ import annotations

GROUP = "batchcert.dev"
VERSION = "v1alpha1"
PLURAL = "batchcertpools"
KIND = "BatchCertPool"

FINALIZER = f"{GROUP}/finalizer"
PAUSED_ANNOTATION = f"{GROUP}/paused"

# Written into the Batch pool's metadata so a pool can be traced to, and adopted by, its owner.
OWNER_METADATA = f"{GROUP}/owner"
UID_METADATA = f"{GROUP}/uid"
