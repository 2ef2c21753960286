"""kopf's private API, in one place: the only module that imports ``kopf._cogs``.

kopf 1.45 offers no public call for what the operator needs here, so it reaches into kopf's
private modules here and nowhere else (``tests/unit/test_kopfprivate.py`` fails if another module
does, and if the watch-stream wrap no longer takes effect inside kopf); kopf is pinned to the
tested minor (``kopf~=1.45.2`` in pyproject.toml, 1.45.2 in constraints.txt):

* ``patch_status``: one merge patch of the status subresource through kopf's own API client
  (authenticated and retried as kopf's own calls are). kopf applies a handler's ``patch`` only
  when the handler returns, and the per-object daemon never returns while it owns the object.
  Not kopf's ``patch_obj``: that deep-copies the whole answered object on every call to diff it
  for JSON-patch functions we never use, and formats the patch into a debug line even with debug
  logging off.
* ``get_json``/``post_json``: the ServiceAccount reads and TokenRequests of per-namespace
  credentials (``kubetokens.py``), through kopf's client for the same reasons.
* ``keep_watched_bodies_lean``: kopf holds the latest body of every object it watches, and half
  of a BatchCertPool's body is managedFields, which nothing in kopf or here reads; of the rest,
  most bytes are the same strings repeated in every object. About 30 MB at 1000 pools
  (benchmarks/results/issue15/memory). kopf has no option for it, so its watch stream is wrapped
  once.

Invariants: each hook is installed at most once; a body is changed only by dropping fields no
one reads and sharing equal strings (``lean_body``).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from sys import intern
from typing import Any, cast

import kopf

# Fields of a watched body that nothing in kopf or here reads, and that are large: every
# writer's managedFields entry (19.6 of 38.8 KB of a measured body) and kubectl's client-side
# copy of the manifest (~1.5 KB; kopf filters it out of its diff-base itself).
_UNREAD_ANNOTATIONS = ("kubectl.kubernetes.io/last-applied-configuration",)


async def patch_status(
    settings: kopf.OperatorSettings,
    resource: kopf.Resource,
    namespace: Any,  # kopf's NamespaceName (a str) or None
    name: str,
    status_patch: dict[str, Any],
    logger: kopf.Logger,
) -> str | None:
    """Merge-patch ``status``: the resourceVersion the server answered ("" if it named none),
    None when the object is gone."""
    from kopf._cogs.clients import api
    from kopf._cogs.clients.errors import APINotFoundError

    try:
        answered = await api.patch(
            url=resource.get_url(namespace=namespace, name=name, subresource="status"),
            headers={"Content-Type": "application/merge-patch+json"},
            payload={"status": status_patch},
            settings=settings,
            logger=logger,
        )
    except APINotFoundError:
        return None
    metadata = answered.get("metadata") if isinstance(answered, dict) else None
    return str(metadata.get("resourceVersion") or "") if isinstance(metadata, dict) else ""


async def get_json(settings: kopf.OperatorSettings, url: str, logger: Any) -> dict[str, Any] | None:
    """GET through kopf's API client (its login, retries, session); None when not found."""
    from kopf._cogs.clients import api
    from kopf._cogs.clients.errors import APINotFoundError

    try:
        found = await api.get(url=url, settings=settings, logger=logger)
    except APINotFoundError:
        return None
    return dict(found)


async def post_json(
    settings: kopf.OperatorSettings, url: str, payload: dict[str, Any], logger: Any
) -> Any:
    """POST through kopf's API client."""
    from kopf._cogs.clients import api

    return await api.post(url=url, payload=payload, settings=settings, logger=logger)


def _shared_strings(value: Any) -> Any:
    """``value`` rebuilt with every dict key and string interned (``sys.intern``, mortal).

    A thousand bodies spell the same keys ("lastTransitionTime", ...) and mostly the same values
    ("True", the vault URL, reasons, the image) in separate strings: sharing them halves a kept
    body (17.9 → 8.0 KiB measured on 200 benchmark bodies) for ~40 µs per watch event.
    """
    if isinstance(value, dict):
        return {
            intern(k): intern(v) if v.__class__ is str else _shared_strings(v)
            for k, v in value.items()
        }
    if isinstance(value, list):
        return [intern(v) if v.__class__ is str else _shared_strings(v) for v in value]
    return value


def lean_body(body: dict[str, Any]) -> dict[str, Any]:
    """A watched body as kopf should keep it: without unread fields, its strings shared."""
    metadata = body.get("metadata")
    if isinstance(metadata, dict):
        metadata.pop("managedFields", None)
        annotations = metadata.get("annotations")
        if isinstance(annotations, dict):
            for key in _UNREAD_ANNOTATIONS:
                annotations.pop(key, None)
    return cast(dict[str, Any], _shared_strings(body))


async def _lean_bodies(stream: AsyncIterator[Any]) -> AsyncIterator[Any]:
    async for item in stream:
        if isinstance(item, dict) and isinstance(item.get("object"), dict):
            item["object"] = lean_body(item["object"])
        yield item


def keep_watched_bodies_lean() -> None:
    """Have kopf keep each watched object lean (:func:`lean_body`): wrap its watch stream once."""
    from kopf._cogs.clients import watching

    original = watching.continuous_watch
    if getattr(original, "_batchcert_lean", False):
        return

    def lean(**kwargs: Any) -> AsyncIterator[Any]:
        return _lean_bodies(original(**kwargs))

    lean._batchcert_lean = True  # type: ignore[attr-defined]
    watching.continuous_watch = lean
