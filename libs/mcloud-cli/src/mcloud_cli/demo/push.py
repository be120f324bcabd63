"""A local push sink for the demo: a tiny HTTP/1.1 server (asyncio) on 127.0.0.1, on a free port, standing in
for a push gateway. The tenant's push channel uses messaging's generic JSON HTTP provider (`http_json`), which
POSTs {"to", "title", "body", "data", "message_id"} to it; every body is kept so the demo can show what the
person's phone received."""

from __future__ import annotations

import asyncio
import json
import uuid
from typing import Any


class PushSink:
    """`async with PushSink() as sink:` ... `sink.url`, `sink.pushes` (JSON bodies), `sink.to(token)`."""

    def __init__(self, host: str = "127.0.0.1", port: int = 0) -> None:
        self.host = host
        self.port = port
        self.pushes: list[dict[str, Any]] = []
        self._server: asyncio.AbstractServer | None = None
        self._writers: set[asyncio.StreamWriter] = set()
        self._handlers: set[asyncio.Task] = set()

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}/push"

    def to(self, token: str) -> list[dict[str, Any]]:
        return [p for p in self.pushes if p.get("to") == token]

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._writers.add(writer)
        if (task := asyncio.current_task()) is not None:
            self._handlers.add(task)
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                lines = head.decode("latin-1").split("\r\n")
                method = lines[0].split(" ", 1)[0]
                headers = {k.strip().lower(): v.strip() for k, _, v in (ln.partition(":") for ln in lines[1:] if ln)}
                body = await reader.readexactly(int(headers.get("content-length") or 0))
                status, reply = 200, {"id": uuid.uuid4().hex}
                try:
                    push = json.loads(body) if method == "POST" else None
                except ValueError:
                    push = None
                if isinstance(push, dict):
                    self.pushes.append(push)
                else:
                    status, reply = 400, {"error": "a JSON object is expected"}
                payload = json.dumps(reply).encode()
                writer.write(f"HTTP/1.1 {status} {'OK' if status == 200 else 'Bad Request'}\r\n"
                             f"Content-Type: application/json\r\nContent-Length: {len(payload)}\r\n\r\n".encode()
                             + payload)
                await writer.drain()
                if headers.get("connection", "").lower() == "close":
                    break
        except (asyncio.IncompleteReadError, ConnectionError, ValueError, asyncio.LimitOverrunError):
            pass
        finally:
            self._writers.discard(writer)
            if task is not None:
                self._handlers.discard(task)
            writer.close()

    async def start(self) -> PushSink:
        self._server = await asyncio.start_server(self._serve, self.host, self.port)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            for writer in list(self._writers):
                writer.close()
            # a sender's kept-alive connection ends its handler (EOF) now, not by cancellation at loop shutdown
            if self._handlers:
                await asyncio.wait(list(self._handlers), timeout=2)
            await self._server.wait_closed()
            self._server = None

    async def __aenter__(self) -> PushSink:
        return await self.start()

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()
