"""The Batch data plane's error, shared by its handlers (``service.py``, ``jobs.py``)."""

from __future__ import annotations


class BatchError(Exception):
    """Answered as ``{"odata.metadata", "code", "message": {"lang", "value"}, "values"}``."""

    def __init__(
        self,
        status: int,
        code: str,
        message: str,
        values: list[dict[str, str]] | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status, self.code, self.message = status, code, message
        self.values = values or []
        self.headers = headers or {}
