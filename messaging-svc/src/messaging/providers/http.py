"""HTTP providers on one shared httpx.AsyncClient: sms "http_json" and "twilio", push "http_json" and "fcm",
webhook "webhook". 2xx = taken; 429, 5xx and transport errors = TemporaryFailure (Retry-After honoured);
other 4xx = PermanentFailure."""

from __future__ import annotations

import hashlib
import hmac
import json
import uuid
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Any

import httpx

from messaging.providers.base import Delivery, Outgoing, PermanentFailure, ProviderSpec, TemporaryFailure

TWILIO_URL = "https://api.twilio.com"
FCM_URL = "https://fcm.googleapis.com"
SIGNATURE_HEADER = "X-Mcloud-Signature"
# Twilio error codes about the recipient: invalid To number, unsubscribed recipient, not a mobile number
TWILIO_RECIPIENT_ERRORS = frozenset({21211, 21610, 21614})


def new_http_client(timeout: float = 10.0) -> httpx.AsyncClient:
    """The one client every HTTP provider of a process shares."""
    return httpx.AsyncClient(timeout=httpx.Timeout(timeout, connect=5.0), follow_redirects=False,
                             limits=httpx.Limits(max_connections=200, max_keepalive_connections=50),
                             headers={"User-Agent": "mcloud-messaging/1"})


def sign(secret: str | bytes, body: bytes) -> str:
    """The webhook signature header value: "sha256=<hex hmac of the body>"."""
    key = secret.encode() if isinstance(secret, str) else secret
    return "sha256=" + hmac.new(key, body, hashlib.sha256).hexdigest()


def retry_after_of(value: str | None, now: datetime | None = None) -> float | None:
    """Seconds from a Retry-After header (delta-seconds or an HTTP date), None when absent or unreadable."""
    if not value:
        return None
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - (now or datetime.now(UTC))).total_seconds())


def _json(response: httpx.Response) -> Any:
    try:
        return response.json()
    except (ValueError, UnicodeDecodeError):
        return None


def _detail(response: httpx.Response) -> str:
    text = response.text[:300] if response.content else ""
    return f"HTTP {response.status_code} {text}".strip()


def classify_response(response: httpx.Response, provider: str,
                      hard_bounce: Callable[[httpx.Response], bool] | None = None) -> None:
    """Raise the failure a non-2xx response means; return for 2xx."""
    status = response.status_code
    if 200 <= status < 300:
        return
    if status == 429 or status >= 500 or status == 408:
        raise TemporaryFailure(_detail(response), retry_after=retry_after_of(response.headers.get("retry-after")),
                               provider=provider)
    raise PermanentFailure(_detail(response), provider=provider,
                           hard_bounce=bool(hard_bounce and hard_bounce(response)))


def _message_id(response: httpx.Response, *keys: str) -> str:
    body = _json(response)
    if isinstance(body, Mapping):
        for key in keys:
            value = body.get(key)
            if isinstance(value, (str, int)) and not isinstance(value, bool) and str(value):
                return str(value)
    return uuid.uuid4().hex


class HttpProvider:
    """Common part: one POST with transport errors mapped to TemporaryFailure."""

    name = "http"
    id_keys: tuple[str, ...] = ("id", "message_id")

    def __init__(self, spec: ProviderSpec, client: httpx.AsyncClient) -> None:
        self.spec = spec
        self._client = client

    async def _post(self, url: str, **kwargs: Any) -> httpx.Response:
        try:
            return await self._client.post(url, **kwargs)
        except httpx.TimeoutException as exc:
            raise TemporaryFailure(f"timeout: {exc!r}", provider=self.name) from exc
        except httpx.TransportError as exc:
            raise TemporaryFailure(f"transport: {exc!r}", provider=self.name) from exc
        except httpx.InvalidURL as exc:
            raise PermanentFailure(f"invalid url: {exc}", provider=self.name) from exc
        except httpx.HTTPError as exc:  # decoding, too many redirects...: the provider misbehaved, try later
            raise TemporaryFailure(f"http: {exc!r}", provider=self.name) from exc

    def _hard_bounce(self, response: httpx.Response) -> bool:
        return False

    async def _deliver(self, url: str, **kwargs: Any) -> Delivery:
        response = await self._post(url, **kwargs)
        classify_response(response, self.name, self._hard_bounce)
        return Delivery(self.spec.provider, _message_id(response, *self.id_keys))

    def _auth_headers(self, out: Outgoing) -> dict[str, str]:
        headers = {"Idempotency-Key": out.message_id}
        token = self.spec.secrets.get("api_key") or self.spec.secrets.get("token")
        if token:
            headers["Authorization"] = f"Bearer {token}"
        extra = self.spec.settings.get("headers")
        if isinstance(extra, Mapping):
            headers.update({str(k): str(v) for k, v in extra.items()})
        return headers

    async def close(self) -> None:  # the shared client is closed by the Dispatcher
        return None


class SmsHttpJson(HttpProvider):
    """sms "http_json": POST settings.url {"to", "body", "sender", "message_id"}."""

    name = "http_json"

    async def send(self, out: Outgoing) -> Delivery:
        payload = {"to": out.to, "body": out.body_text, "sender": str(self.spec.settings.get("sender", "")),
                   "message_id": out.message_id}
        return await self._deliver(str(self.spec.settings.get("url", "")), json=payload,
                                   headers=self._auth_headers(out))


class PushHttpJson(HttpProvider):
    """push "http_json": POST settings.url {"to", "title", "body", "data", "message_id"}."""

    name = "http_json"

    async def send(self, out: Outgoing) -> Delivery:
        payload = {"to": out.to, "title": out.title, "body": out.body_text, "data": dict(out.data),
                   "message_id": out.message_id}
        return await self._deliver(str(self.spec.settings.get("url", "")), json=payload,
                                   headers=self._auth_headers(out))


class Twilio(HttpProvider):
    """sms "twilio": form POST {base_url}/2010-04-01/Accounts/{account_sid}/Messages.json, basic auth
    (account_sid, secrets.auth_token); From = settings.from (or from_number) or MessagingServiceSid."""

    name = "twilio"
    id_keys = ("sid",)

    async def send(self, out: Outgoing) -> Delivery:
        settings = self.spec.settings
        sid = str(settings.get("account_sid", ""))
        base = str(settings.get("base_url") or TWILIO_URL).rstrip("/")
        form = {"To": out.to, "Body": out.body_text}
        sender = settings.get("from") or settings.get("from_number")
        if sender:
            form["From"] = str(sender)
        if settings.get("messaging_service_sid"):
            form["MessagingServiceSid"] = str(settings["messaging_service_sid"])
        if settings.get("status_callback"):
            form["StatusCallback"] = str(settings["status_callback"])
        return await self._deliver(f"{base}/2010-04-01/Accounts/{sid}/Messages.json", data=form,
                                   auth=(sid, str(self.spec.secrets.get("auth_token", ""))))

    def _hard_bounce(self, response: httpx.Response) -> bool:
        body = _json(response)
        return isinstance(body, Mapping) and body.get("code") in TWILIO_RECIPIENT_ERRORS


class Fcm(HttpProvider):
    """push "fcm" (HTTP v1): POST {base_url}/v1/projects/{project_id}/messages:send with
    {"message": {"token", "notification": {"title", "body"}, "data"}}, Bearer secrets.access_token."""

    name = "fcm"
    id_keys = ("name",)

    async def send(self, out: Outgoing) -> Delivery:
        settings = self.spec.settings
        base = str(settings.get("base_url") or FCM_URL).rstrip("/")
        data = {str(k): v if isinstance(v, str) else json.dumps(v, separators=(",", ":"), default=str)
                for k, v in out.data.items()}  # FCM data values must be strings
        message: dict[str, Any] = {"token": out.to, "notification": {"title": out.title, "body": out.body_text}}
        if data:
            message["data"] = data
        return await self._deliver(f"{base}/v1/projects/{settings.get('project_id', '')}/messages:send",
                                   json={"message": message},
                                   headers={"Authorization": f"Bearer {self.spec.secrets.get('access_token', '')}"})

    def _hard_bounce(self, response: httpx.Response) -> bool:
        if response.status_code == 404:
            return True
        return "UNREGISTERED" in response.text


class Webhook(HttpProvider):
    """webhook "webhook": POST the data as JSON to out.to (or settings.url), signed with
    `X-Mcloud-Signature: sha256=<hmac-sha256 of the body with secrets.signing_secret>`."""

    name = "webhook"

    async def send(self, out: Outgoing) -> Delivery:
        url = out.to or str(self.spec.settings.get("url", ""))
        if not url.startswith(("http://", "https://")):
            raise PermanentFailure(f"webhook address {url!r} is not an http(s) URL", provider=self.name,
                                   hard_bounce=True)
        body = json.dumps(dict(out.data), separators=(",", ":"), default=str).encode()
        headers = {"Content-Type": "application/json", "X-Mcloud-Message-Id": out.message_id,
                   "Idempotency-Key": out.message_id}
        secret = self.spec.secrets.get("signing_secret")
        if secret:
            headers[SIGNATURE_HEADER] = sign(str(secret), body)
        return await self._deliver(url, content=body, headers=headers)


def http_provider(channel: str, spec: ProviderSpec, client: httpx.AsyncClient) -> HttpProvider:
    kinds: dict[tuple[str, str], type[HttpProvider]] = {
        ("sms", "http_json"): SmsHttpJson, ("sms", "twilio"): Twilio, ("push", "http_json"): PushHttpJson,
        ("push", "fcm"): Fcm, ("webhook", "webhook"): Webhook,
    }
    kind = kinds.get((channel, spec.provider))
    if kind is None:
        raise PermanentFailure(f"provider {spec.provider!r} is not available for {channel}", provider=spec.provider)
    return kind(spec, client)
