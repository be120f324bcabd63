"""Request bodies: size limits (a pure ASGI middleware, so oversize bodies are refused before they are
buffered), gzip decoding with a bound on the decoded size, and fast JSON parsing with orjson."""

from __future__ import annotations

import zlib
from collections.abc import Callable
from typing import Any

import orjson
from starlette.requests import Request
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from gateway.errors import ProblemError, problem_response


class BodyTooLarge(ProblemError):
    def __init__(self, limit: int) -> None:
        super().__init__("payload_too_large", f"The request body exceeds {limit} bytes.", limit_bytes=limit)


class BodyLimitMiddleware:
    """413 problem when Content-Length, or the streamed body, exceeds the limit for the path."""

    def __init__(self, app: ASGIApp, *, limit_for: Callable[[str], int]) -> None:
        self.app = app
        self.limit_for = limit_for

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit = self.limit_for(scope["path"])
        for name, value in scope["headers"]:
            if name == b"content-length":
                try:
                    too_large = int(value) > limit
                except ValueError:
                    too_large = False
                if too_large:
                    await self._refuse(scope, receive, send, limit)
                    return
                break

        received = 0
        started = False

        async def limited_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    raise BodyTooLarge(limit)
            return message

        async def tracking_send(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, limited_receive, tracking_send)
        except BodyTooLarge:
            if started:
                raise
            await self._refuse(scope, receive, tracking_send, limit)

    @staticmethod
    async def _refuse(scope: Scope, receive: Receive, send: Send, limit: int) -> None:
        exc = BodyTooLarge(limit)
        response = problem_response(
            413,
            exc.code,
            detail=exc.detail,
            instance=scope["path"],
            headers={"Connection": "close"},
            limit_bytes=limit,
        )
        await response(scope, receive, send)


def gunzip_bounded(data: bytes, limit: int) -> bytes:
    """Decode a gzip body, refusing (413) when the decoded size exceeds `limit` (zip bombs)."""
    decoder = zlib.decompressobj(wbits=31)
    try:
        out = decoder.decompress(data, limit + 1)
    except zlib.error as exc:
        raise ProblemError("invalid_request", "The body is not valid gzip.") from exc
    if len(out) > limit or decoder.unconsumed_tail:
        raise BodyTooLarge(limit)
    return out


async def read_json(request: Request, limit: int) -> Any:
    """The request body as parsed JSON (gzip or identity encoding), at most `limit` decoded bytes.
    Cached on the request so auth and the route can both look at it."""
    cached = getattr(request.state, "json_body", _MISSING)
    if cached is not _MISSING:
        return cached
    raw = await request.body()
    encoding = request.headers.get("content-encoding", "identity").strip().lower()
    if encoding == "gzip":
        raw = gunzip_bounded(raw, limit)
    elif encoding not in ("identity", ""):
        raise ProblemError(
            "unsupported_encoding",
            f"Content-Encoding {encoding!r} is not supported; use gzip.",
            headers={"Accept-Encoding": "gzip"},
        )
    if len(raw) > limit:
        raise BodyTooLarge(limit)
    if not raw:
        raise ProblemError("invalid_json", "The body is empty; send a JSON object.")
    try:
        body = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise ProblemError("invalid_json", f"The body is not valid JSON: {exc}") from None
    request.state.json_body = body
    return body


_MISSING = object()
