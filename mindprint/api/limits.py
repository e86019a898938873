"""Request guards that run before any route: body size, JSON nesting, security headers.

A pure ASGI middleware, so that nothing downstream (Starlette's request parsing,
pydantic, the routes) ever sees a body larger than the limit or nested deeper than
``MAX_JSON_DEPTH``. Both are refused with problem+json (413 and 400) without the body
being parsed: a JSON document nested 100,000 deep used to overflow the C stack of the
JSON parser, because ``py_ecc`` and ``eth`` raise Python's recursion limit to 100,000 on
import (see :func:`sane_recursion_limit`).
"""

from __future__ import annotations

import json
import re
import sys
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from mindprint.core.ratelimit import RateLimiter

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

#: default request-body cap (a chunk upload is a few KiB, a sample block ≤ 64 KiB)
MAX_BODY_BYTES = 2 * 2**20
MAX_JSON_DEPTH = 32
#: a recursion limit that a worker thread's C stack can always hold
RECURSION_LIMIT = 4000

SECURITY_HEADERS = [
    (b"x-content-type-options", b"nosniff"),
    (b"x-frame-options", b"DENY"),
    (b"referrer-policy", b"no-referrer"),
    (b"cross-origin-opener-policy", b"same-origin"),
    (b"content-security-policy", b"default-src 'self'; img-src 'self' data:; frame-ancestors 'none'"),
    (b"cache-control", b"no-store"),
]

_STRING = re.compile(rb'"(?:[^"\\]|\\.)*"', re.DOTALL)
_BRACKETS = re.compile(rb"[\[\]{}]+")

__all__ = ["RequestGuard", "json_depth", "sane_recursion_limit"]


def sane_recursion_limit(limit: int = RECURSION_LIMIT) -> None:
    """Undo the recursion limit of 100,000 that ``py_ecc``/``eth`` set on import.

    Call after importing them; a deep recursion then raises ``RecursionError`` instead of
    overflowing the C stack (a segfault that takes the whole server down).
    """
    import eth_account  # noqa: F401 - imported for its side effect on the limit, undone below
    import eth_utils  # noqa: F401

    if sys.getrecursionlimit() > limit:
        sys.setrecursionlimit(limit)


def json_depth(body: bytes) -> int:
    """The deepest nesting of arrays and objects in a JSON text (strings skipped), in O(n)."""
    depth = deepest = 0
    for run in _BRACKETS.findall(_STRING.sub(b'""', body)):
        for byte in run:
            if byte in (0x5B, 0x7B):  # [ {
                depth += 1
                deepest = max(deepest, depth)
            else:
                depth -= 1
    return deepest


class RequestGuard:
    """Refuse oversized bodies (413) and deeply nested JSON (400); add security headers."""

    def __init__(
        self,
        app: ASGIApp,
        *,
        max_body: int = MAX_BODY_BYTES,
        max_depth: int = MAX_JSON_DEPTH,
        sign_ins_per_minute: float = 600.0,
    ) -> None:
        self.app = app
        self.max_body = max_body
        self.max_depth = max_depth
        self.sign_ins = RateLimiter(sign_ins_per_minute, burst=max(1, int(sign_ins_per_minute // 4)))

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", []))
                present = {name.lower() for name, _ in headers}
                headers += [(k, v) for k, v in SECURITY_HEADERS if k not in present]
                message["headers"] = headers
            await send(message)

        if str(scope.get("path", "")).startswith("/auth/"):  # sign-in attempts per client address
            client = scope.get("client") or ("?", 0)
            wait = self.sign_ins.take(str(client[0]))
            if wait:
                await _refuse(
                    scope, send_with_headers, 429, "Too Many Requests", f"too many sign-ins; retry in {wait:.0f} s"
                )
                return
        declared = _content_length(scope)
        if declared is not None and declared > self.max_body:
            await _refuse(scope, send_with_headers, 413, "Content Too Large", f"body exceeds {self.max_body} bytes")
            return
        if scope.get("method") in ("GET", "HEAD", "OPTIONS", "DELETE") and not declared:
            await self.app(scope, receive, send_with_headers)
            return
        # read the whole (bounded) body once, check it, then replay it to the app
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.max_body:
                await _refuse(scope, send_with_headers, 413, "Content Too Large", f"body exceeds {self.max_body} bytes")
                return
            chunks.append(chunk)
            if not message.get("more_body", False):
                break
        body = b"".join(chunks)
        if _is_json(scope) and json_depth(body) > self.max_depth:
            await _refuse(
                scope, send_with_headers, 400, "Bad Request", f"JSON nested deeper than {self.max_depth} levels"
            )
            return
        delivered = False

        async def replay() -> Message:
            nonlocal delivered
            if delivered:
                return await receive()
            delivered = True
            return {"type": "http.request", "body": body, "more_body": False}

        await self.app(scope, replay, send_with_headers)


def _content_length(scope: Scope) -> int | None:
    for name, value in scope.get("headers", []):
        if name.lower() == b"content-length":
            try:
                return int(value)
            except ValueError:
                return None
    return None


def _is_json(scope: Scope) -> bool:
    for name, value in scope.get("headers", []):
        if name.lower() == b"content-type":
            return b"json" in value.lower()
    return True  # FastAPI parses a body without a content type as JSON too


async def _refuse(scope: Scope, send: Send, status: int, title: str, detail: str) -> None:
    body = json.dumps(
        {"type": "about:blank", "title": title, "status": status, "detail": detail, "instance": scope.get("path", "")}
    ).encode()
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"application/problem+json"),
                (b"content-length", str(len(body)).encode()),
                (b"connection", b"close"),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})
