"""``batchcert status --wait``'s watch (batchcert.statuscmd._Cluster) against a scripted API server.

Covers: the watch starts from the version already read and returns at the first event that makes
the object Ready or Stalled for its generation (an older generation's Stalled is not it); a watch
the server closes is resumed from the last version seen; 410 Gone (as a status or an ERROR event)
restarts from a fresh read; a deletion while waiting is an unreadable object, said so; events
split across chunks are reassembled.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Any

import pytest

from batchcert.statuscmd import StatusReadError, _Cluster

pytestmark = pytest.mark.unit


def pool(rv: int, generation: int = 1, **conditions: str) -> dict[str, Any]:
    return {
        "metadata": {"name": "p", "resourceVersion": str(rv), "generation": generation},
        "status": {
            "conditions": [
                {"type": t, "status": v, "observedGeneration": 1} for t, v in conditions.items()
            ]
        },
    }


class Response:
    def __init__(self, status: int, body: Any = None, chunks: list[bytes] | None = None) -> None:
        self.status, self.reason, self._body, self._chunks = status, "", body, chunks or []

    async def json(self) -> Any:
        return self._body

    @property
    def content(self) -> Response:
        return self

    async def iter_any(self) -> AsyncIterator[bytes]:
        for chunk in self._chunks:
            yield chunk

    async def __aenter__(self) -> Response:
        return self

    async def __aexit__(self, *_: object) -> None:
        return None


def events(*items: tuple[str, dict[str, Any]]) -> list[bytes]:
    return [json.dumps({"type": t, "object": o}).encode() + b"\n" for t, o in items]


class Server:
    """Answers GETs in order; records each watch's resourceVersion."""

    def __init__(self, *responses: Response) -> None:
        self.responses = list(responses)
        self.watched_from: list[str] = []

    def get(self, url: str, params: dict[str, str] | None = None, **_: Any) -> Response:
        if params and params.get("watch"):
            self.watched_from.append(params["resourceVersion"])
        return self.responses.pop(0)


def wait(server: Server, start: dict[str, Any]) -> dict[str, Any]:
    cluster = _Cluster(server, "https://api", "p", "ns")
    return asyncio.run(asyncio.wait_for(cluster.watch_until_settled(start), 5))


def test_returns_at_the_first_stalled_event() -> None:
    stream = events(
        ("MODIFIED", pool(2, Ready="False")),
        ("MODIFIED", pool(3, Ready="False", Stalled="True")),
        ("MODIFIED", pool(4, Ready="True")),
    )
    server = Server(Response(200, chunks=stream))
    got = wait(server, pool(1, Ready="False"))
    assert got["metadata"]["resourceVersion"] == "3"
    assert server.watched_from == ["1"]


def test_an_older_generations_stalled_is_not_the_answer() -> None:
    stream = events(
        ("MODIFIED", pool(2, generation=2, Stalled="True")),
        ("MODIFIED", pool(3, generation=1, Ready="True")),
    )
    got = wait(Server(Response(200, chunks=stream)), pool(1, Ready="False"))
    assert got["metadata"]["resourceVersion"] == "3"


def test_a_closed_watch_resumes_from_the_last_version_seen() -> None:
    first = events(("MODIFIED", pool(5, Ready="False")))
    second = events(("MODIFIED", pool(6, Ready="True")))
    server = Server(Response(200, chunks=first), Response(200, chunks=second))
    assert wait(server, pool(1))["metadata"]["resourceVersion"] == "6"
    assert server.watched_from == ["1", "5"]


def test_gone_restarts_from_a_fresh_read() -> None:
    fresh = pool(40, Ready="False")
    server = Server(
        Response(410),
        Response(200, body=fresh),
        Response(200, chunks=events(("ERROR", {"code": 410}))),
        Response(200, body=pool(50)),
        Response(200, chunks=events(("MODIFIED", pool(51, Stalled="True")))),
    )
    assert wait(server, pool(1))["metadata"]["resourceVersion"] == "51"
    assert server.watched_from == ["1", "40", "50"]


def test_deleted_while_waiting_is_said() -> None:
    server = Server(Response(200, chunks=events(("DELETED", pool(2)))))
    with pytest.raises(StatusReadError, match="deleted while waiting"):
        wait(server, pool(1))


def test_an_event_split_across_chunks_is_read_whole() -> None:
    (line,) = events(("MODIFIED", pool(2, Ready="True")))
    server = Server(Response(200, chunks=[line[:7], line[7:30], line[30:]]))
    assert wait(server, pool(1))["metadata"]["resourceVersion"] == "2"
