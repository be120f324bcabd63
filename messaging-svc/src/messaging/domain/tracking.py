"""Signed links inside messages: the open pixel, click redirects, unsubscribe and preference pages.

A token is `base64url(JSON payload) + "." + base64url(HMAC-SHA256(secret, payload part)[:16])`, URL-safe
and without padding. The payload is compact: {"t": tenant, "k": kind, "m": message_id, "p": profile_id,
"c": channel, "u": url}, empty fields left out. Kinds: "o" open, "c" click, "u" unsubscribe,
"p" preferences; the caller checks the kind it expects. The tenant rides in the token because the
gateway's public links carry no API key: the gateway peeks at it (`tenant_of_token`, unverified) to
route the call, and the service verifies the signature before trusting anything in it.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import html as html_lib
import re
from typing import Any

import orjson

from mcloud_common.errors import InvalidArgument

KINDS = frozenset({"o", "c", "u", "p"})
MAX_TOKEN_CHARS = 4096
_SIG_BYTES = 16
_FIELDS = ("t", "k", "m", "p", "c", "u")


def _b64e(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _b64d(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _bad(detail: str = "the link token is invalid") -> InvalidArgument:
    return InvalidArgument(detail, code="invalid_token", field="token")


def _decode_payload(part: str) -> dict[str, Any]:
    data = orjson.loads(_b64d(part))
    if not isinstance(data, dict):
        raise ValueError("payload is not an object")
    return data


class Links:
    """Makes and checks the signed links of one deployment (secret = settings.tracking_secret)."""

    def __init__(self, secret: bytes, public_url: str) -> None:
        if not secret:
            raise ValueError("a tracking secret is required")
        self._secret = secret
        self.public_url = public_url.rstrip("/")

    # ---- tokens -----------------------------------------------------------------------------------

    def _sign(self, part: str) -> str:
        return _b64e(hmac.new(self._secret, part.encode("ascii"), hashlib.sha256).digest()[:_SIG_BYTES])

    def token(self, tenant_id: str, kind: str, *, message_id: str = "", profile_id: str = "", channel: str = "",
              url: str = "") -> str:
        if kind not in KINDS:
            raise ValueError(f"unknown link kind {kind!r}")
        values = {"t": tenant_id, "k": kind, "m": message_id, "p": profile_id, "c": channel, "u": url}
        part = _b64e(orjson.dumps({k: v for k, v in values.items() if v}))
        return f"{part}.{self._sign(part)}"

    def verify(self, token: str) -> dict[str, str]:
        """The payload of a genuine token, every field present ("" when absent); InvalidArgument
        (code invalid_token) for a forged, altered or malformed one."""
        if not token or len(token) > MAX_TOKEN_CHARS or token.count(".") != 1:
            raise _bad()
        part, sig = token.split(".")
        try:
            expected = self._sign(part)
        except UnicodeEncodeError:
            raise _bad() from None
        if not hmac.compare_digest(expected.encode(), sig.encode("utf-8", "replace")):
            raise _bad()
        try:
            data = _decode_payload(part)
        except ValueError:
            raise _bad() from None
        out = {k: data.get(k, "") for k in _FIELDS}
        if not all(isinstance(v, str) for v in out.values()) or out["k"] not in KINDS or not out["t"]:
            raise _bad()
        return out

    # ---- links ------------------------------------------------------------------------------------

    def open_pixel(self, tenant_id: str, message_id: str) -> str:
        return f"{self.public_url}/t/o/{self.token(tenant_id, 'o', message_id=message_id)}.gif"

    def click(self, tenant_id: str, message_id: str, url: str) -> str:
        return f"{self.public_url}/t/c/{self.token(tenant_id, 'c', message_id=message_id, url=url)}"

    def unsubscribe(self, tenant_id: str, profile_id: str, message_id: str, channel: str) -> str:
        token = self.token(tenant_id, "u", message_id=message_id, profile_id=profile_id, channel=channel)
        return f"{self.public_url}/u/{token}"

    def preferences(self, tenant_id: str, profile_id: str, message_id: str, channel: str) -> str:
        token = self.token(tenant_id, "p", message_id=message_id, profile_id=profile_id, channel=channel)
        return f"{self.public_url}/p/{token}"

    def is_own_link(self, url: str) -> bool:
        """True for links this deployment made (tracking, unsubscribe, preferences): never re-wrapped."""
        return any(url.startswith(f"{self.public_url}{prefix}") for prefix in ("/t/", "/u/", "/p/"))


def tenant_of_token(token: str) -> str | None:
    """The tenant a token claims, WITHOUT checking the signature (for routing only), or None."""
    try:
        part = token.split(".", 1)[0]
        if not part or len(token) > MAX_TOKEN_CHARS:
            return None
        tenant = _decode_payload(part).get("t")
    except (ValueError, TypeError):
        return None
    return tenant if isinstance(tenant, str) and tenant else None


_HREF = re.compile(r"""(?P<lead>\bhref\s*=\s*)(?P<q>["'])(?P<url>https?://[^"']*)(?P=q)""", re.IGNORECASE)
_BODY_END = re.compile(r"</body\s*>", re.IGNORECASE)
_NO_TRACK = re.compile(r"\bdata-no-track\b", re.IGNORECASE)
_UNSUB_WORDS = re.compile(r"unsubscribe|/preferences", re.IGNORECASE)


def track_html(html: str, links: Links, tenant_id: str, message_id: str) -> str:
    """`html` with its http(s) links sent through click tracking and an open pixel added (before
    </body>, else at the end). Left alone: mailto:/tel:/"#..." links (not http), links this
    deployment made (unsubscribe, preferences, tracking), and links that look like a sender's own
    unsubscribe/preference links (so one-click flows and list hygiene keep working)."""
    if not html:
        return html

    def wrap(match: re.Match[str]) -> str:
        raw = match.group("url")
        url = html_lib.unescape(raw).strip()
        if links.is_own_link(url) or _UNSUB_WORDS.search(url):
            return match.group(0)
        tag_start = html.rfind("<", 0, match.start())
        if tag_start >= 0 and _NO_TRACK.search(html, tag_start, match.start()):
            return match.group(0)
        q = match.group("q")
        return f"{match.group('lead')}{q}{links.click(tenant_id, message_id, url)}{q}"

    out = _HREF.sub(wrap, html)
    pixel = (f'<img src="{links.open_pixel(tenant_id, message_id)}" width="1" height="1" alt="" '
             'style="display:block;width:1px;height:1px;border:0" />')
    ends = list(_BODY_END.finditer(out))
    if ends:
        at = ends[-1].start()
        return out[:at] + pixel + out[at:]
    return out + pixel
