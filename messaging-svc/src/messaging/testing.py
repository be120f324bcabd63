"""Local stand-ins for delivery providers, for tests and benchmarks: SmtpSink (a real SMTP server, aiosmtpd)
and HttpSink (a tiny HTTP/1.1 server). Both listen on 127.0.0.1 on a free port of the running event loop:

    async with SmtpSink() as smtp, HttpSink() as http:
        ...  # settings {"host": "127.0.0.1", "port": smtp.port, ...} / {"url": http.url + "/sms"}
        await smtp.wait_for(1)
        smtp.messages[0]["Subject"]
"""

from __future__ import annotations

import asyncio
import json
import uuid
import weakref
from collections import deque
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from email import message_from_bytes, policy
from email.message import EmailMessage
from typing import Any
from urllib.parse import parse_qs

from aiosmtpd.smtp import SMTP

DEFAULT_REPLIES = {421: "4.3.2 Service not available", 450: "4.2.1 Mailbox busy",
                   451: "4.3.0 Local error, try again later", 452: "4.3.1 Insufficient storage",
                   550: "5.1.1 Mailbox unavailable", 551: "5.1.6 User not local",
                   552: "5.3.4 Message too big", 553: "5.1.3 Mailbox name not allowed",
                   554: "5.6.0 Transaction failed"}


class _SinkHandler:
    def __init__(self, sink: SmtpSink) -> None:
        self.sink = sink

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
        reply = self.sink._next_failure("rcpt")
        if reply is not None:
            return reply
        envelope.rcpt_tos.append(address)
        envelope.rcpt_options.extend(rcpt_options)
        return "250 OK"

    async def handle_DATA(self, server, session, envelope):
        reply = self.sink._next_failure("data")
        if reply is not None:
            return reply
        await self.sink._accept(envelope)
        return "250 2.0.0 OK queued"


class SmtpSink:
    """An SMTP server collecting what it is sent. `messages` (parsed EmailMessage objects, when `keep` is on),
    `envelopes` ((mail_from, rcpt_tos) pairs), `count`. `fail_next(n, code=451)` refuses the next n messages
    with that reply (at DATA, or at RCPT with stage="rcpt")."""

    def __init__(self, *, keep: bool = True, host: str = "127.0.0.1", port: int = 0) -> None:
        self.keep = keep
        self.host = host
        self.port = port
        self.messages: list[EmailMessage] = []
        self.envelopes: list[tuple[str, list[str]]] = []
        self.count = 0
        self.refused = 0
        self.connections = 0  # client connections ever accepted
        self._failures: deque[tuple[str, str]] = deque()
        self._server: asyncio.AbstractServer | None = None
        self._sessions: weakref.WeakSet[SMTP] = weakref.WeakSet()
        self._changed: asyncio.Condition | None = None

    def fail_next(self, n: int = 1, code: int = 451, message: str | None = None, *, stage: str = "data") -> None:
        if stage not in ("data", "rcpt"):
            raise ValueError("stage is 'data' or 'rcpt'")
        reply = f"{code} {message or DEFAULT_REPLIES.get(code, 'Refused by the sink')}"
        self._failures.extend([(stage, reply)] * n)

    def _next_failure(self, stage: str) -> str | None:
        if self._failures and self._failures[0][0] == stage:
            self.refused += 1
            return self._failures.popleft()[1]
        return None

    async def _accept(self, envelope) -> None:
        self.count += 1
        self.envelopes.append((envelope.mail_from, list(envelope.rcpt_tos)))
        if self.keep:
            raw = envelope.original_content or envelope.content
            self.messages.append(message_from_bytes(raw, policy=policy.default))
        async with self._changed:
            self._changed.notify_all()

    async def wait_for(self, n: int, timeout: float = 10.0) -> None:  # noqa: ASYNC109
        """Wait until at least n messages were accepted."""
        async with asyncio.timeout(timeout), self._changed:
            await self._changed.wait_for(lambda: self.count >= n)

    async def start(self) -> SmtpSink:
        loop = asyncio.get_running_loop()
        self._changed = asyncio.Condition()
        handler = _SinkHandler(self)

        def session() -> SMTP:
            proto = SMTP(handler, hostname="sink.mcloud.test", ident="mcloud SmtpSink", loop=loop,
                         enable_SMTPUTF8=True)
            self._sessions.add(proto)
            self.connections += 1
            return proto

        self._server = await loop.create_server(session, self.host, self.port)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    def drop_connections(self) -> None:
        """Close every open client connection (what a server restart looks like to pooled clients)."""
        for proto in list(self._sessions):
            if proto.transport is not None:
                proto.transport.close()

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            self.drop_connections()
            await self._server.wait_closed()
            self._server = None

    async def __aenter__(self) -> SmtpSink:
        return await self.start()

    async def __aexit__(self, *exc_info: object) -> None:
        await self.stop()


@dataclass
class Recorded:
    """One request an HttpSink got."""

    method: str
    path: str  # with the query string
    headers: dict[str, str]  # lower-case names
    body: bytes = b""

    @property
    def json(self) -> Any:
        return json.loads(self.body) if self.body else None

    @property
    def form(self) -> dict[str, str]:
        return {k: v[0] for k, v in parse_qs(self.body.decode(), keep_blank_values=True).items()}


@dataclass
class Reply:
    status: int = 200
    body: Any = None  # JSON-able, str or bytes; None = {"id": "<new uuid>"} on 2xx
    headers: Mapping[str, str] = field(default_factory=dict)


_REASONS = {200: "OK", 201: "Created", 202: "Accepted", 204: "No Content", 400: "Bad Request", 401: "Unauthorized",
            403: "Forbidden", 404: "Not Found", 408: "Request Timeout", 429: "Too Many Requests",
            500: "Internal Server Error", 502: "Bad Gateway", 503: "Service Unavailable", 504: "Gateway Timeout"}


class HttpSink:
    """A tiny HTTP/1.1 server (keep-alive, Content-Length bodies) recording requests in `requests`. Replies come
    from a queue set with `respond_with([503, 503, 200])` (items: a status, a Reply, or (status, body[, headers]));
    when the queue is empty every request gets `default` (200 with {"id": "<uuid>"})."""

    def __init__(self, host: str = "127.0.0.1") -> None:
        self.host = host
        self.port = 0
        self.requests: list[Recorded] = []
        self.default = Reply()
        self._replies: deque[Reply] = deque()
        self._server: asyncio.AbstractServer | None = None
        self._writers: set[asyncio.StreamWriter] = set()
        self._changed: asyncio.Condition | None = None

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def respond_with(self, replies: Iterable[int | Reply | tuple]) -> None:
        for item in replies:
            if isinstance(item, Reply):
                self._replies.append(item)
            elif isinstance(item, tuple):
                self._replies.append(Reply(*item))
            else:
                self._replies.append(Reply(int(item)))

    async def wait_for(self, n: int, timeout: float = 10.0) -> None:  # noqa: ASYNC109
        """Wait until at least n requests were received."""
        async with asyncio.timeout(timeout), self._changed:
            await self._changed.wait_for(lambda: len(self.requests) >= n)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._writers.add(writer)
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                lines = head.decode("latin-1").split("\r\n")
                method, target, _ = lines[0].split(" ", 2)
                headers: dict[str, str] = {}
                for line in lines[1:]:
                    if ":" in line:
                        name, value = line.split(":", 1)
                        headers[name.strip().lower()] = value.strip()
                body = await reader.readexactly(int(headers.get("content-length", "0") or 0))
                self.requests.append(Recorded(method, target, headers, body))
                reply = self._replies.popleft() if self._replies else self.default
                writer.write(self._render(reply))
                await writer.drain()
                async with self._changed:
                    self._changed.notify_all()
                if headers.get("connection", "").lower() == "close":
                    break
        except (asyncio.IncompleteReadError, ConnectionError, ValueError, asyncio.LimitOverrunError):
            pass
        finally:
            self._writers.discard(writer)
            writer.close()

    @staticmethod
    def _render(reply: Reply) -> bytes:
        body = reply.body
        if body is None:
            body = {"id": uuid.uuid4().hex} if 200 <= reply.status < 300 else {"error": _REASONS.get(reply.status, "")}
        content_type = "application/json"
        if isinstance(body, bytes):
            payload = body
        elif isinstance(body, str):
            payload, content_type = body.encode(), "text/plain; charset=utf-8"
        else:
            payload = json.dumps(body).encode()
        headers = {"Content-Type": content_type, "Content-Length": str(len(payload)), **reply.headers}
        head = f"HTTP/1.1 {reply.status} {_REASONS.get(reply.status, 'Status')}\r\n"
        head += "".join(f"{k}: {v}\r\n" for k, v in headers.items()) + "\r\n"
        return head.encode("latin-1") + payload

    async def start(self) -> HttpSink:
        self._changed = asyncio.Condition()
        self._server = await asyncio.start_server(self._serve, self.host, 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            for writer in list(self._writers):
                writer.close()
            await self._server.wait_closed()
            self._server = None

    async def __aenter__(self) -> HttpSink:
        return await self.start()

    async def __aexit__(self, *exc_info: object) -> None:
        await self.stop()
