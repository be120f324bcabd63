"""Email providers' event webhooks: check the call is genuine, then turn its payload into normalized
tracking facts (`Fact`) that `repo.tracking.record` applies.

- SendGrid Event Webhook: a JSON array of events; signed with ECDSA P-256 / SHA-256 over
  `timestamp + body` (headers x-twilio-email-event-webhook-signature / -timestamp, base64 DER
  signature); the tenant's public key (secrets.webhook_public_key, PEM or base64 DER).
- Mailgun: JSON {"signature": {timestamp, token, signature}, "event-data": {...}};
  signature = hex HMAC-SHA256(secrets.webhook_signing_key, timestamp + token).
- Postmark: one JSON record per call (RecordType Delivery, Bounce, SpamComplaint, Open, Click,
  SubscriptionChange). Postmark does not sign webhooks, so the URL is configured with a shared
  secret (secrets.webhook_secret) sent as header x-mcloud-webhook-secret or as the basic-auth password.

A bad or missing signature is PERMISSION_DENIED (invalid_signature; webhook_not_configured when the
tenant has no key); a body that is not the provider's shape is INVALID_ARGUMENT (invalid_webhook_body).
Events we do not track (processed, deferred, temporary failures...) are skipped.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import orjson

from mcloud_common.errors import InvalidArgument, PermissionDenied

PROVIDERS = ("sendgrid", "mailgun", "postmark")
MESSAGE_ID_ARG = "mcloud_message_id"  # custom arg / user variable / metadata carrying our message id
_UUID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$", re.IGNORECASE)
_OUR_MESSAGE_ID = re.compile(r"^<?([0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12})@mcloud>?$",
                             re.IGNORECASE)


@dataclass(frozen=True, slots=True)
class Fact:
    """One tracking fact from a provider. `message_id` is ours when the provider echoed it back,
    else "" and `provider_message_id` identifies the message."""

    provider_event_id: str
    kind: str  # delivered, opened, clicked, bounced, failed, complained, unsubscribed
    occurred_at: datetime
    message_id: str = ""
    provider_message_id: str = ""
    url: str = ""
    hard_bounce: bool = False
    detail: str = ""
    user_agent: str = ""


def _denied(detail: str = "the webhook signature is invalid") -> PermissionDenied:
    return PermissionDenied(detail, code="invalid_signature")


def _malformed(detail: str) -> InvalidArgument:
    return InvalidArgument(detail, code="invalid_webhook_body", field="body")


def _not_configured(provider: str) -> PermissionDenied:
    return PermissionDenied(f"no {provider} webhook key is configured for this tenant", code="webhook_not_configured")


def _json(body: bytes) -> Any:
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError:
        raise _malformed("the webhook body is not JSON") from None


def _text(value: Any, limit: int = 2000) -> str:
    if value is None:
        return ""
    return (value if isinstance(value, str) else str(value))[:limit]


def _our_id(value: Any) -> str:
    text = _text(value).strip()
    return text.lower() if _UUID.match(text) else ""


def _epoch(value: Any, fallback: datetime) -> datetime:
    try:
        return datetime.fromtimestamp(float(value), UTC)
    except (TypeError, ValueError, OverflowError, OSError):
        return fallback


def _iso(value: Any, fallback: datetime) -> datetime:
    if not isinstance(value, str) or not value:
        return fallback
    text = re.sub(r"(\.\d{6})\d+", r"\1", value.strip())
    try:
        parsed = datetime.fromisoformat(text)
    except ValueError:
        return fallback
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def _message_ids(provider_message_id: Any, our: Any = None) -> tuple[str, str]:
    """(our message id, the provider's id): ours from the custom argument, or recognised in an RFC 5322
    Message-ID we set (`<uuid@mcloud>`)."""
    pmid = _text(provider_message_id).strip()
    mine = _our_id(our)
    if not mine and (m := _OUR_MESSAGE_ID.match(pmid)):
        mine = m.group(1).lower()
    return mine, pmid.strip("<>")


# ---- signatures ------------------------------------------------------------------------------------


def _load_public_key(text: str):
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.hazmat.primitives.serialization import load_der_public_key, load_pem_public_key

    try:
        if "BEGIN" in text:
            key = load_pem_public_key(text.encode())
        else:
            key = load_der_public_key(base64.b64decode("".join(text.split())))
    except (ValueError, TypeError, binascii.Error):
        raise _not_configured("sendgrid") from None
    if not isinstance(key, ec.EllipticCurvePublicKey):
        raise _not_configured("sendgrid")
    return key


def verify_sendgrid(headers: Mapping[str, str], body: bytes, public_key: str) -> None:
    from cryptography.exceptions import InvalidSignature
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import ec

    if not public_key:
        raise _not_configured("sendgrid")
    key = _load_public_key(public_key)
    signature = headers.get("x-twilio-email-event-webhook-signature", "")
    timestamp = headers.get("x-twilio-email-event-webhook-timestamp", "")
    if not signature or not timestamp:
        raise _denied("the SendGrid signature headers are missing")
    try:
        key.verify(base64.b64decode(signature), timestamp.encode() + body, ec.ECDSA(hashes.SHA256()))
    except (InvalidSignature, ValueError, binascii.Error):
        raise _denied() from None


def verify_mailgun(signature: Any, signing_key: str) -> None:
    if not signing_key:
        raise _not_configured("mailgun")
    if not isinstance(signature, dict):
        raise _denied("the Mailgun signature is missing")
    timestamp, token, given = (_text(signature.get(k)) for k in ("timestamp", "token", "signature"))
    if not timestamp or not token or not given:
        raise _denied("the Mailgun signature is incomplete")
    expected = hmac.new(signing_key.encode(), (timestamp + token).encode(), hashlib.sha256).hexdigest()
    if not hmac.compare_digest(expected.encode(), given.lower().encode("utf-8", "replace")):
        raise _denied()


def verify_postmark(headers: Mapping[str, str], secret: str) -> None:
    if not secret:
        raise _not_configured("postmark")
    given = headers.get("x-mcloud-webhook-secret", "")
    auth = headers.get("authorization", "")
    if not given and auth[:6].lower() == "basic ":
        try:
            given = base64.b64decode(auth[6:].strip()).decode().partition(":")[2]
        except (ValueError, binascii.Error, UnicodeDecodeError):
            given = ""
    if not given or not hmac.compare_digest(given.encode(), secret.encode()):
        raise _denied("the webhook secret is missing or wrong")


# ---- payloads --------------------------------------------------------------------------------------

_SENDGRID_KINDS = {"delivered": "delivered", "open": "opened", "click": "clicked", "bounce": "bounced",
                   "dropped": "failed", "spamreport": "complained", "unsubscribe": "unsubscribed",
                   "group_unsubscribe": "unsubscribed"}


def parse_sendgrid(body: bytes, *, now: datetime) -> list[Fact]:
    events = _json(body)
    if not isinstance(events, list):
        raise _malformed("a SendGrid webhook body is a JSON array of events")
    facts = []
    for item in events:
        if not isinstance(item, dict):
            raise _malformed("each SendGrid event is a JSON object")
        kind = _SENDGRID_KINDS.get(_text(item.get("event")))
        if kind is None:
            continue
        sg_message_id = _text(item.get("sg_message_id"))
        # sg_message_id is the X-Message-Id the send returned, followed by ".filter..." routing parts
        mine, pmid = _message_ids(sg_message_id.split(".", 1)[0], item.get(MESSAGE_ID_ARG))
        event_id = _text(item.get("sg_event_id")) or hashlib.sha256(orjson.dumps(item, option=orjson.OPT_SORT_KEYS)
                                                                    ).hexdigest()
        # "bounce" is a permanent rejection; type "blocked" is a temporary one (the address is fine)
        hard = kind == "bounced" and _text(item.get("type")) != "blocked"
        facts.append(Fact(
            provider_event_id=f"sendgrid:{event_id}", kind=kind, occurred_at=_epoch(item.get("timestamp"), now),
            message_id=mine, provider_message_id=pmid, url=_text(item.get("url")), hard_bounce=hard,
            detail=_text(item.get("reason") or item.get("response") or ""), user_agent=_text(item.get("useragent"))))
    return facts


_MAILGUN_KINDS = {"delivered": "delivered", "opened": "opened", "clicked": "clicked", "failed": "bounced",
                  "complained": "complained", "unsubscribed": "unsubscribed"}


def parse_mailgun(data: Any, *, now: datetime) -> list[Fact]:
    if not isinstance(data, dict) or not isinstance(data.get("event-data"), dict):
        raise _malformed("a Mailgun webhook body has an event-data object")
    event = data["event-data"]
    kind = _MAILGUN_KINDS.get(_text(event.get("event")))
    if kind is None:
        return []
    if kind == "bounced" and _text(event.get("severity")) == "temporary":
        return []  # Mailgun retries temporary failures itself
    message = event.get("message") if isinstance(event.get("message"), dict) else {}
    headers = message.get("headers") if isinstance(message.get("headers"), dict) else {}
    variables = event.get("user-variables") if isinstance(event.get("user-variables"), dict) else {}
    mine, pmid = _message_ids(headers.get("message-id"), variables.get(MESSAGE_ID_ARG))
    status = event.get("delivery-status") if isinstance(event.get("delivery-status"), dict) else {}
    client = event.get("client-info") if isinstance(event.get("client-info"), dict) else {}
    event_id = _text(event.get("id")) or hashlib.sha256(orjson.dumps(event, option=orjson.OPT_SORT_KEYS)).hexdigest()
    detail = _text(status.get("description") or status.get("message") or event.get("reason") or "")
    return [Fact(provider_event_id=f"mailgun:{event_id}", kind=kind, occurred_at=_epoch(event.get("timestamp"), now),
                 message_id=mine, provider_message_id=pmid, url=_text(event.get("url")),
                 hard_bounce=kind == "bounced", detail=detail, user_agent=_text(client.get("user-agent")))]


_POSTMARK_HARD = frozenset({"HardBounce", "BadEmailAddress", "ManuallyDeactivated"})
_POSTMARK_IGNORED = frozenset({"AutoResponder", "Subscribe", "AddressChange", "OpenRelayTest", "InboundError",
                               "Transient", "Unconfirmed"})


def parse_postmark(data: Any, *, now: datetime) -> list[Fact]:
    if not isinstance(data, dict) or not isinstance(data.get("RecordType"), str):
        raise _malformed("a Postmark webhook body is one JSON record with a RecordType")
    record = data["RecordType"]
    metadata = data.get("Metadata") if isinstance(data.get("Metadata"), dict) else {}
    mine, pmid = _message_ids(data.get("MessageID"), metadata.get(MESSAGE_ID_ARG))
    ident = mine or pmid

    def fact(kind: str, event_id: str, at: Any, **extra: Any) -> list[Fact]:
        return [Fact(provider_event_id=f"postmark:{event_id}", kind=kind, occurred_at=_iso(at, now), message_id=mine,
                     provider_message_id=pmid, **extra)]

    if record == "Delivery":
        return fact("delivered", f"delivery:{ident}", data.get("DeliveredAt"), detail=_text(data.get("Details")))
    if record in ("Bounce", "SpamComplaint"):
        type_ = _text(data.get("Type"))
        event_id = f"bounce:{_text(data.get('ID')) or ident}"
        detail = _text(data.get("Description") or data.get("Details"))
        if record == "SpamComplaint" or type_ == "SpamComplaint":
            return fact("complained", event_id, data.get("BouncedAt"), detail=detail)
        if type_ in _POSTMARK_IGNORED:
            return []
        return fact("bounced", event_id, data.get("BouncedAt"), hard_bounce=type_ in _POSTMARK_HARD, detail=detail)
    if record == "Open":
        at = data.get("ReceivedAt")
        return fact("opened", f"open:{ident}:{_text(at)}", at, user_agent=_text(data.get("UserAgent")))
    if record == "Click":
        at, url = data.get("ReceivedAt"), _text(data.get("OriginalLink"))
        url_hash = hashlib.sha1(url.encode(), usedforsecurity=False).hexdigest()[:16]
        return fact("clicked", f"click:{ident}:{url_hash}:{_text(at)}", at, url=url,
                    user_agent=_text(data.get("UserAgent")))
    if record == "SubscriptionChange":
        if data.get("SuppressSending") is not True:
            return []
        at = data.get("ChangedAt")
        return fact("unsubscribed", f"unsubscribe:{ident}:{_text(at)}", at,
                    detail=_text(data.get("SuppressionReason")))
    return []


def parse(provider: str, headers: Mapping[str, str], body: bytes, secrets: Mapping[str, Any], *,
          now: datetime) -> list[Fact]:
    """The facts of one webhook call, after checking it is genuine with the tenant's `secrets`
    (the email channel config's secrets). `headers` names are lower-case."""
    headers = {k.lower(): v for k, v in headers.items()}
    if provider == "sendgrid":
        verify_sendgrid(headers, body, _text(secrets.get("webhook_public_key"), 10_000))
        return parse_sendgrid(body, now=now)
    if provider == "mailgun":
        data = _json(body)
        verify_mailgun(data.get("signature") if isinstance(data, dict) else None,
                       _text(secrets.get("webhook_signing_key")))
        return parse_mailgun(data, now=now)
    if provider == "postmark":
        verify_postmark(headers, _text(secrets.get("webhook_secret")))
        return parse_postmark(_json(body), now=now)
    raise InvalidArgument(f"unknown provider {provider!r} (sendgrid, mailgun or postmark)", code="invalid_provider",
                          field="provider")
