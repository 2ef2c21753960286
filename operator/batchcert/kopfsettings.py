"""kopf's settings for this operator: finalizer, storages, posting, peering (public kopf API).

Invariants: kopf's bookkeeping lives in annotations under our own prefix, never in the status
contract; shards never share a diff-base key; several replicas coordinate through kopf's peering.
"""

from __future__ import annotations

import logging
from typing import Any, cast

import kopf

from batchcert.models.names import FINALIZER, GROUP, PAUSED_ANNOTATION
from batchcert.reconcile.sharding import ShardAssignment

__all__ = ["FINALIZER", "GenerationDiffBase", "configure_settings"]


class GenerationDiffBase(kopf.AnnotationsDiffBaseStorage):
    """kopf's diff-base as ``metadata.generation`` plus labels and annotations, not the spec.

    kopf builds the essence on every watch event (a deep copy of the whole body: spec, status,
    managedFields) and keeps the last one as an annotation on the object (a JSON copy of the
    spec). ``on_change`` only needs to know *that* the spec, labels or annotations changed, and
    the API server bumps ``metadata.generation`` on every spec change (status and metadata
    changes leave it): the annotation shrinks to a few bytes and each event copies only metadata.
    An object still carrying the whole-spec annotation of an older operator differs once, wakes
    once, and gets the small annotation. Our own ``batchcert.dev/paused`` shares the prefix kopf
    marks as its own and would be filtered out with kopf's: it is kept explicitly, so pausing and
    resuming wake the object at once.
    """

    def build(self, *, body: kopf.Body, extra_fields: Any = None) -> kopf.BodyEssence:
        meta = body.get("metadata", {})
        # kopf's own filtering (its marked prefixes, kubectl's last-applied, the diff-base itself)
        # on a body of labels and annotations only; no extra fields (no field handlers).
        small = {k: meta[k] for k in ("labels", "annotations") if meta.get(k) is not None}
        essence = super().build(body=kopf.Body(cast(kopf.RawBody, {"metadata": small})))
        essence["generation"] = meta.get("generation")  # type: ignore[typeddict-unknown-key]
        # Our own annotations share kopf's prefix, so kopf's filter drops them: keep the pause.
        paused = (meta.get("annotations") or {}).get(PAUSED_ANNOTATION)
        if paused is not None:
            essence["paused"] = paused  # type: ignore[typeddict-unknown-key]
        return essence


def configure_settings(
    settings: kopf.OperatorSettings,
    *,
    peering: str | None = None,
    priority: int = 0,
    shard: ShardAssignment | None = None,
) -> None:
    settings.persistence.finalizer = FINALIZER
    # Our handlers keep no progress worth persisting (the reconcile is level-driven), so kopf's
    # bookkeeping goes to annotations under our own prefix, never into the status contract.
    settings.persistence.progress_storage = kopf.AnnotationsProgressStorage(prefix=GROUP)
    # kopf stores the diff-base even where no handler matches, so shards sharing one key would
    # race: a shard that does not own an object could store a change first, and the owner would
    # see none (no wake until its next turn). One key per shard index.
    key = "last-handled-configuration"
    if shard is not None and not shard.is_whole:
        key += f".shard-{shard.index}"
    settings.persistence.diffbase_storage = GenerationDiffBase(prefix=GROUP, key=key)
    settings.posting.level = logging.INFO
    settings.posting.reporting_component = "batchcert-operator"  # "From" in kubectl describe
    settings.watching.server_timeout = 300
    if peering is None:
        settings.peering.standalone = True  # one replica: nothing to coordinate with
    else:
        # Several replicas: kopf's peering object (crds/kopf-peering.yaml) lets only the live
        # operator with the highest priority act; equal priorities all pause (kopf's rule).
        settings.peering.standalone = False
        settings.peering.name = peering
        settings.peering.mandatory = True
        settings.peering.priority = priority
