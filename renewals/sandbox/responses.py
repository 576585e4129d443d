"""The response envelope and the errors handlers raise.

Every response, success or failure, is ``{"success": bool, "message": str, "data": ...}``
(docs/faststar.md, Part A). Bodies are encoded once here with the stdlib ``json`` module in
compact form: the hot path (off-session charges) spends most of its time encoding.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

JSON = dict[str, Any]
Headers = list[tuple[bytes, bytes]]

_encode = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False).encode


def encode_json(value: Any) -> bytes:
    """Compact UTF-8 JSON bytes."""
    return _encode(value).encode("utf-8")


@dataclass(slots=True)
class Reply:
    """What a handler answers: status, the exact body bytes, extra headers.

    ``drop_after_headers`` makes the server send the status line and headers (with the full
    ``Content-Length``) and then close the connection without the body, so the client sees
    a truncated response (test card ...0341).
    """

    status: int
    body: bytes
    headers: Headers = field(default_factory=list)
    drop_after_headers: bool = False


def ok(data: Any, message: str = "OK", status: int = 200) -> Reply:
    """A success envelope."""
    return Reply(status, encode_json({"success": True, "message": message, "data": data}))


def failure(status: int, message: str, *, with_data: bool = True) -> Reply:
    """A failure envelope; ``data`` is null, or left out entirely when ``with_data`` is false."""
    envelope: JSON = {"success": False, "message": message}
    if with_data:
        envelope["data"] = None
    return Reply(status, encode_json(envelope))


class ApiError(Exception):
    """Raised by handlers and validators; the dispatcher turns it into a failure envelope."""

    def __init__(self, status: int, message: str, headers: Headers | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.headers = headers or []

    def reply(self) -> Reply:
        reply = failure(self.status, self.message)
        reply.headers.extend(self.headers)
        return reply


def bad_request(message: str) -> ApiError:
    return ApiError(400, message)


def not_found(what: str, object_id: str) -> ApiError:
    return ApiError(404, f"No such {what}: {object_id}")
