"""The one status writer, and the object as a turn must see it.

Status is written only by ``write_status``: a merge patch of what changed (nothing else), through
kopf's own API client (``kopfprivate.patch_status``). Until the watch delivers the object that
carries our writes, a turn sees the delivered status plus our patches (``WrittenStatus``).

Invariants: handlers return nothing, so kopf never writes handler results into ``status``; an
empty patch is never sent (the reconcile returns one only when something changed).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, replace
from typing import Any

import kopf

from batchcert.kopfprivate import patch_status
from batchcert.models.names import FINALIZER, PAUSED_ANNOTATION
from batchcert.reconcile.memory import ObjectView
from batchcert.reconcile.outcome import Event
from batchcert.translate.merge_patch import apply_merge_patch

_EVENT_MESSAGE_LIMIT = 1000


@dataclass
class WrittenStatus:
    """The status our writes lead to, until the watch delivers the object that carries them: a
    turn taken before then must not reconcile against the status from before our own writes.

    Computed here (the status the turn saw plus the patch, RFC 7386: only ``write_status``
    writes status), not the server's answer (the whole object); and the status, not only the
    last patch: a second write before the watch catches up is a patch against the first one's
    result, so a turn must see both (else a rotation written once would be counted again).

    It is held until the watch delivers our write's version or a later one, not merely any
    version newer than the turn saw: another writer's change made just before ours (kopf's
    finalizer patch on a new object) arrives first and does not carry our status, and a turn
    taken on it wrote the first status a second time. Versions are ordered as integers when
    both parse as such: since Kubernetes 1.35 the API concepts page documents one object's
    resourceVersions as comparable, monotonically increasing integers of unspecified size
    (KEP-5504; kubernetes/website#52848). Otherwise any version other than the one the turn
    saw ends the hold, the equality-only rule older servers promise.
    """

    status: dict[str, Any]
    resource_version_before: str
    resource_version_written: str  # "" when the server named none

    def is_pending(self, body: kopf.Body) -> bool:
        """The watch has not yet delivered the version of the object our write made."""
        delivered = str(body.get("metadata", {}).get("resourceVersion", ""))
        if delivered == self.resource_version_before:
            return True
        if delivered.isdigit() and self.resource_version_written.isdigit():
            return int(delivered) < int(self.resource_version_written)
        return False


async def write_status(
    settings: kopf.OperatorSettings,
    resource: kopf.Resource,
    body: kopf.Body,
    status_patch: dict[str, Any],
    logger: kopf.Logger,
    *,
    seen_status: dict[str, Any] | None = None,
) -> WrittenStatus | None:
    """The one status writer: a merge patch of ``status`` (what changed, nothing else), computed
    against ``seen_status`` (the status the turn saw, our pending writes included); None when
    the object is gone meanwhile."""
    meta = body.get("metadata", {})
    if logger.isEnabledFor(logging.DEBUG):
        logger.debug("Merge-patching the status with: %r", status_patch)
    written = await patch_status(
        settings, resource, meta.get("namespace"), meta.get("name", ""), status_patch, logger
    )
    if written is None:
        return None
    after = apply_merge_patch(seen_status or {}, status_patch)
    return WrittenStatus(after, str(meta.get("resourceVersion", "")), written)


def current_view(body: kopf.Body, written: WrittenStatus | None) -> ObjectView:
    """The object as the turn must see it: with our last write applied while the watch has not
    delivered it yet."""
    view = to_view(body)
    if written is not None and written.is_pending(body):
        return replace(view, status=dict(written.status))
    return view


def to_view(body: kopf.Body) -> ObjectView:
    meta = body.get("metadata", {})
    annotations = meta.get("annotations") or {}
    return ObjectView(
        namespace=meta.get("namespace", ""),
        name=meta.get("name", ""),
        uid=meta.get("uid", ""),
        generation=int(meta.get("generation") or 0),
        spec=dict(body.get("spec") or {}),
        status=dict(body.get("status") or {}),
        deleting=bool(meta.get("deletionTimestamp")),
        has_finalizer=FINALIZER in (meta.get("finalizers") or []),
        paused=str(annotations.get(PAUSED_ANNOTATION, "")).lower() == "true",
    )


def post_events(body: kopf.Body, events: list[Event]) -> None:
    for event in events:
        kopf.event(
            body,
            type=event.type,
            reason=event.reason,
            message=event.message[:_EVENT_MESSAGE_LIMIT],
        )
