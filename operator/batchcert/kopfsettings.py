"""kopf's settings for this operator: finalizer, storages, posting, peering (public kopf API).

Invariants: kopf's progress lives in annotations under our own prefix, never in the status
contract; its diff-base lives in this process (no object write); several replicas coordinate
through kopf's peering.
"""

from __future__ import annotations

import logging
from typing import Any, cast

import kopf

from batchcert.models.names import FINALIZER, GROUP, PAUSED_ANNOTATION
from batchcert.reconcile.sharding import ShardAssignment

__all__ = ["FINALIZER", "GenerationDiffBase", "configure_settings"]


class GenerationDiffBase(kopf.AnnotationsDiffBaseStorage):
    """kopf's diff-base as ``metadata.generation`` plus labels and annotations, not the spec,
    kept in memory (no object write).

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

    def __init__(self, *, prefix: str, key: str = "last-handled-configuration") -> None:
        super().__init__(prefix=prefix, key=key)
        self._essences: dict[str, kopf.BodyEssence] = {}  # by uid

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

    # The diff-base is kept in this process, not in an annotation on the object: storing it
    # there cost one object write per created object and one more per spec change (the API
    # server and etcd paid for both, and every replica watched them). Nothing is lost when the
    # process restarts or a replica takes over: an object without a diff-base is "new" to kopf
    # (no handler for that), and the daemon's first turn reconciles it whatever changed.

    def fetch(self, *, body: kopf.Body) -> kopf.BodyEssence | None:
        return self._essences.get(_uid(body))

    def store(self, *, body: kopf.Body, patch: kopf.Patch, essence: kopf.BodyEssence) -> None:
        self._essences[_uid(body)] = essence

    def forget(self, body: kopf.Body) -> None:
        """The object is gone: drop its diff-base."""
        self._essences.pop(_uid(body), None)


def _uid(body: kopf.Body) -> str:
    return str(body.get("metadata", {}).get("uid", ""))


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
    # The diff-base lives in this process (GenerationDiffBase.store); the key still names the
    # annotation an older operator wrote, which kopf's essence must leave out. One per shard, as
    # the older operator's were.
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
