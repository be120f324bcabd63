"""Email providers: "smtp" (aiosmtplib, a small pool of reused connections) and "log" (accepts, sends nothing)."""

from __future__ import annotations

import asyncio
import binascii
import logging
import re
import time
import uuid
from datetime import UTC, datetime
from email import message_from_bytes, policy
from email.header import Header
from email.message import EmailMessage
from email.utils import format_datetime, formataddr

import aiosmtplib
from aiosmtplib.email import parse_address

from messaging.providers.base import Delivery, Outgoing, PermanentFailure, ProviderSpec, TemporaryFailure, port_of

log = logging.getLogger(__name__)

# headers the provider sets itself; Outgoing.headers may not replace them
_OWN_HEADERS = frozenset({"from", "to", "subject", "date", "message-id", "mime-version", "content-type",
                          "content-transfer-encoding", "cc", "bcc"})
# RCPT/DATA refusals that are about the recipient's mailbox: unknown user, not local, bad mailbox name
_RECIPIENT_CODES = frozenset({550, 551, 553})
_TOKEN = re.compile(r"^[!-9;-~]+$")  # printable ASCII except ":" (RFC 5322 field name)
_ENHANCED = re.compile(r"^\s*([245])\.(\d{1,3})\.(\d{1,3})\b")
IDLE_SECONDS = 50.0  # pooled connections unused for longer are closed (servers drop idle sessions)


def _header(name: str, value: str, *, address: bool = False) -> bytes:
    """One header line: as is when plain ASCII and short, else RFC 2047 encoded and folded (an internationalised
    address is written as UTF-8, RFC 6532; it is sent with SMTPUTF8)."""
    if "\r" in value or "\n" in value:
        raise ValueError(f"header {name} may not contain line breaks")
    if not _TOKEN.match(name):
        raise ValueError(f"invalid header name {name!r}")
    if (value.isascii() or address) and len(name) + len(value) < 990:
        return f"{name}: {value}\r\n".encode()
    encoded = Header(value, "utf-8", header_name=name).encode(linesep="\r\n")
    return f"{name}: {encoded}\r\n".encode()


def _part(subtype: str, text: str) -> bytes:
    body = binascii.b2a_qp(text.replace("\r\n", "\n").replace("\r", "\n").encode(), istext=True)
    return (f'Content-Type: text/{subtype}; charset="utf-8"\r\n'
            "Content-Transfer-Encoding: quoted-printable\r\n\r\n").encode() + body.replace(b"\n", b"\r\n")


def render_message(out: Outgoing, *, from_email: str, from_name: str = "", reply_to: str = "",
                   now: datetime | None = None) -> bytes:
    """The RFC 5322 message for `out` as bytes: From (from_name <from_email>), To, Subject, Date,
    `Message-ID: <{message_id}@mcloud>` (a resend after a crash carries the same one), Reply-To, the Outgoing
    headers (List-Unsubscribe, List-Unsubscribe-Post, ...) and a multipart/alternative body of the text and HTML
    parts (quoted-printable UTF-8, so 7-bit clean). Written directly rather than through EmailMessage, which
    costs ~2 ms per message (the SMTP pool's target is >= 1,000 emails/s). Raises ValueError for header values
    that cannot be sent (line breaks, bad names)."""
    if any(c in from_email for c in "\r\n<>"):
        raise ValueError("invalid from_email")
    lines = [
        _header("From", formataddr((from_name, from_email), charset="utf-8") if from_name else from_email),
        _header("To", out.to, address=True),
        _header("Subject", out.subject),
        _header("Date", format_datetime(now or datetime.now(UTC))),
        _header("Message-ID", f"<{out.message_id}@mcloud>"),
    ]
    if reply_to:
        lines.append(_header("Reply-To", reply_to))
    for name, value in out.headers.items():
        if name.lower() not in _OWN_HEADERS:
            lines.append(_header(name, str(value)))
    lines.append(b"MIME-Version: 1.0\r\n")
    text, html = out.body_text, out.body_html
    if text and html:
        boundary = f"=_mcloud_{uuid.uuid4().hex}"  # "=_" never occurs in quoted-printable text
        lines.append(f'Content-Type: multipart/alternative; boundary="{boundary}"\r\n\r\n'.encode())
        for subtype, body in (("plain", text), ("html", html)):
            lines.append(f"--{boundary}\r\n".encode())
            lines.append(_part(subtype, body))
            lines.append(b"\r\n")
        lines.append(f"--{boundary}--\r\n".encode())
    else:
        lines.append(_part("html" if html else "plain", html or text or "\n"))
    return b"".join(lines)


def build_message(out: Outgoing, *, from_email: str, from_name: str = "", reply_to: str = "",
                  now: datetime | None = None) -> EmailMessage:
    """`render_message` parsed back into an EmailMessage (for previews and tests)."""
    raw = render_message(out, from_email=from_email, from_name=from_name, reply_to=reply_to, now=now)
    return message_from_bytes(raw, policy=policy.default)


def _hard_bounce(code: int, message: str, *, recipient_stage: bool) -> bool:
    """A refusal about the recipient: an enhanced status 5.1.x (bad destination mailbox) or 5.2.1 (mailbox
    disabled) at any stage, or 550/551/553 at RCPT unless the enhanced status says policy (5.7.x)."""
    match = _ENHANCED.match(message or "")
    if match and match.group(1) == "5":
        subject, detail = match.group(2), match.group(3)
        if (subject == "1" and detail not in ("7", "8")) or (subject == "2" and detail == "1"):  # x.1.7/8: sender
            return True
        if subject == "7":
            return False
    return recipient_stage and code in _RECIPIENT_CODES


def classify_smtp_error(exc: BaseException, provider: str = "smtp") -> TemporaryFailure | PermanentFailure:
    """Map an aiosmtplib / connection error to our failure kinds."""
    if isinstance(exc, aiosmtplib.SMTPRecipientsRefused):
        refused = exc.recipients[0] if exc.recipients else None
        if refused is None:
            return TemporaryFailure("recipient refused", provider=provider)
        detail = f"RCPT {refused.code} {refused.message}"
        if 400 <= refused.code < 500:
            return TemporaryFailure(detail, provider=provider)
        return PermanentFailure(detail, provider=provider,
                                hard_bounce=_hard_bounce(refused.code, refused.message, recipient_stage=True))
    if isinstance(exc, aiosmtplib.SMTPRecipientRefused):
        return classify_smtp_error(aiosmtplib.SMTPRecipientsRefused([exc]), provider)
    if isinstance(exc, (aiosmtplib.SMTPServerDisconnected, aiosmtplib.SMTPConnectError, aiosmtplib.SMTPTimeoutError)):
        return TemporaryFailure(f"smtp connection: {exc}", provider=provider)
    if isinstance(exc, aiosmtplib.SMTPResponseException):
        detail = f"{exc.code} {exc.message}"
        if isinstance(exc, aiosmtplib.SMTPAuthenticationError) and exc.code >= 500:
            return PermanentFailure(f"smtp authentication: {detail}", provider=provider)
        if isinstance(exc, aiosmtplib.SMTPSenderRefused) and exc.code >= 500:
            return PermanentFailure(f"sender refused: {detail}", provider=provider)
        if 400 <= exc.code < 500 or exc.code < 200:  # -1 is aiosmtplib's "no valid reply"
            return TemporaryFailure(detail, provider=provider)
        return PermanentFailure(detail, provider=provider,
                                hard_bounce=_hard_bounce(exc.code, exc.message, recipient_stage=False))
    if isinstance(exc, aiosmtplib.SMTPNotSupported):
        return PermanentFailure(f"smtp server: {exc}", provider=provider)
    if isinstance(exc, (ConnectionError, TimeoutError, OSError)):
        return TemporaryFailure(f"smtp connection: {exc!r}", provider=provider)
    if isinstance(exc, aiosmtplib.SMTPException):
        return TemporaryFailure(f"smtp: {exc}", provider=provider)
    return PermanentFailure(f"smtp: {exc}", provider=provider)


class SmtpProvider:
    """SMTP with up to `pool_size` connections kept open and reused (one TCP + EHLO per email is too slow).
    A connection that failed (disconnect, timeout, unexpected reply) is closed and dropped from the pool."""

    name = "smtp"

    def __init__(self, spec: ProviderSpec, *, pool_size: int | None = None, timeout: float = 10.0) -> None:
        settings, secrets = spec.settings, spec.secrets
        self._host = str(settings.get("host", ""))
        self._port = port_of(settings.get("port")) or 25
        self._use_tls = bool(settings.get("use_tls", False))
        # absent: STARTTLS when the server offers it (aiosmtplib's default)
        self._start_tls: bool | None = settings.get("start_tls") if "start_tls" in settings else None
        self._validate_certs = bool(settings.get("validate_certs", True))
        self._from_email = str(settings.get("from_email", ""))
        self._from_name = str(settings.get("from_name", "") or "")
        self._reply_to = str(settings.get("reply_to", "") or "")
        self._username = secrets.get("username") or None
        self._password = secrets.get("password") or None
        self._timeout = timeout
        size = pool_size or port_of(settings.get("pool_size")) or 4
        self._slots = asyncio.Semaphore(max(1, min(size, 32)))
        self._idle: list[tuple[aiosmtplib.SMTP, float]] = []
        self._closed = False

    async def _connect(self) -> aiosmtplib.SMTP:
        client = aiosmtplib.SMTP(hostname=self._host, port=self._port, timeout=self._timeout, use_tls=self._use_tls,
                                 start_tls=self._start_tls, validate_certs=self._validate_certs,
                                 username=self._username, password=self._password)
        await client.connect()
        return client

    def _take(self) -> aiosmtplib.SMTP | None:
        now = time.monotonic()
        while self._idle:
            client, since = self._idle.pop()
            if client.is_connected and now - since < IDLE_SECONDS:
                return client
            _drop(client)
        return None

    async def send(self, out: Outgoing) -> Delivery:
        try:
            raw = render_message(out, from_email=self._from_email, from_name=self._from_name,
                                 reply_to=self._reply_to)
        except (ValueError, TypeError, IndexError) as exc:
            raise PermanentFailure(f"cannot build the email: {exc}", provider=self.name) from exc
        async with self._slots:
            client = self._take()
            reused = client is not None
            for attempt in (1, 2):
                try:
                    if client is None:
                        client = await self._connect()
                    options = await self._options(client, out)
                    await client.sendmail(self._from_email, [out.to], raw, mail_options=options)
                except aiosmtplib.SMTPServerDisconnected as exc:
                    _drop(client)
                    client = None
                    if reused and attempt == 1:  # a pooled connection the server had closed: one fresh try
                        continue
                    raise classify_smtp_error(exc, self.name) from exc
                except (aiosmtplib.SMTPRecipientsRefused, aiosmtplib.SMTPSenderRefused,
                        aiosmtplib.SMTPDataError) as exc:
                    # a reply to this message; the session stays usable (aiosmtplib sent RSET)
                    if client is not None and client.is_connected:
                        self._release(client)
                    else:
                        _drop(client)
                    raise classify_smtp_error(exc, self.name) from exc
                except ValueError as exc:  # an address (or TLS option) aiosmtplib cannot use
                    self._release(client)
                    raise PermanentFailure(f"smtp: {exc}", provider=self.name,
                                           hard_bounce=not _valid_address(out.to)) from exc
                except aiosmtplib.SMTPNotSupported as exc:
                    self._release(client)
                    raise PermanentFailure(f"smtp server: {exc}", provider=self.name, hard_bounce=False) from exc
                except BaseException as exc:
                    _drop(client)
                    if isinstance(exc, Exception):
                        raise classify_smtp_error(exc, self.name) from exc
                    raise
                else:
                    self._release(client)
                    return Delivery(self.name, f"{out.message_id}@mcloud")
        raise TemporaryFailure("smtp: no connection", provider=self.name)  # pragma: no cover

    async def _options(self, client: aiosmtplib.SMTP, out: Outgoing) -> list[str]:
        if (self._from_email + out.to).isascii():
            return []
        if client.is_ehlo_or_helo_needed:
            await client.ehlo()
        if not client.supports_extension("smtputf8"):
            raise aiosmtplib.SMTPNotSupported("the address needs SMTPUTF8, which the server does not support")
        return ["SMTPUTF8"]

    def _release(self, client: aiosmtplib.SMTP | None) -> None:
        if client is None:
            return
        if self._closed or not client.is_connected:
            _drop(client)
        else:
            self._idle.append((client, time.monotonic()))

    def prune(self) -> int:
        """Close pooled connections idle for longer than IDLE_SECONDS; returns how many."""
        now = time.monotonic()
        keep = [(c, since) for c, since in self._idle if c.is_connected and now - since < IDLE_SECONDS]
        stale = [c for c, since in self._idle if (c, since) not in keep]
        self._idle = keep
        for client in stale:
            _drop(client)
        return len(stale)

    async def close(self) -> None:
        self._closed = True
        idle, self._idle = self._idle, []
        for client, _ in idle:
            try:
                await asyncio.wait_for(client.quit(), 2)
            except Exception:
                _drop(client)


def _valid_address(address: str) -> bool:
    try:
        parse_address(address)
    except ValueError:
        return False
    return "@" in address


def _drop(client: aiosmtplib.SMTP | None) -> None:
    if client is None:
        return
    try:
        client.close()
    except Exception:  # pragma: no cover - closing a broken transport
        log.debug("closing an smtp connection failed", exc_info=True)


class LogProvider:
    """Accepts every message and sends nothing (development); any channel."""

    name = "log"

    def __init__(self, spec: ProviderSpec | None = None) -> None:
        self.count = 0

    async def send(self, out: Outgoing) -> Delivery:
        self.count += 1
        log.debug("log provider took %s message %s for %s", out.channel, out.message_id, out.to)
        return Delivery(self.name, f"log-{out.message_id}")

    async def close(self) -> None:
        return None
