"""A local SMTP sink for the demo: a real SMTP server (aiosmtpd) on 127.0.0.1, on a free port, keeping
every email it is sent so the demo can show what the person received."""

from __future__ import annotations

import asyncio
from email import message_from_bytes, policy
from email.message import EmailMessage

from aiosmtpd.smtp import SMTP


class _Handler:
    def __init__(self, sink: MailSink) -> None:
        self.sink = sink

    async def handle_DATA(self, server, session, envelope):
        raw = envelope.original_content or envelope.content
        self.sink.messages.append(message_from_bytes(raw, policy=policy.default))
        return "250 2.0.0 OK queued"


class MailSink:
    """`async with MailSink() as sink:` ... `sink.port`, `sink.messages`, `sink.to(address)`."""

    def __init__(self, host: str = "127.0.0.1", port: int = 0) -> None:
        self.host = host
        self.port = port
        self.messages: list[EmailMessage] = []
        self._server: asyncio.AbstractServer | None = None

    def to(self, address: str) -> list[EmailMessage]:
        return [m for m in self.messages if address.lower() in str(m["To"]).lower()]

    async def start(self) -> MailSink:
        loop = asyncio.get_running_loop()
        handler = _Handler(self)
        self._server = await loop.create_server(
            lambda: SMTP(handler, hostname="demo-sink.mcloud.local", ident="mcloud demo sink", loop=loop,
                         enable_SMTPUTF8=True), self.host, self.port)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
            self._server = None

    async def __aenter__(self) -> MailSink:
        return await self.start()

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()


def html_of(mail: EmailMessage) -> str:
    part = mail.get_body(("html", "plain"))
    return part.get_content() if part is not None else ""
