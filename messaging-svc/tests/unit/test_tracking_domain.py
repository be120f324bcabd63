from __future__ import annotations

import base64
import hashlib
import hmac
from datetime import UTC, datetime

import orjson
import pytest
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec

from mcloud_common.errors import InvalidArgument, PermissionDenied
from messaging.domain import webhooks
from messaging.domain.tracking import Links, tenant_of_token, track_html

TENANT = "7d0b6a52-58b4-4a40-9d8c-4f1f3ad1f0a1"
MESSAGE = "3f2b8c1e-1d2a-4e5f-8a9b-0c1d2e3f4a5b"
PROFILE = "a6c1e0f2-9b8d-4c7e-8f6a-5b4c3d2e1f00"
NOW = datetime(2026, 11, 2, 10, 0, tzinfo=UTC)
links = Links(b"test-secret", "https://t.example.com/")


def token_of(url: str) -> str:
    return url.rsplit("/", 1)[1].removesuffix(".gif")


# ---- tokens ------------------------------------------------------------------------------------------


def test_click_token_round_trips_and_carries_the_tenant():
    url = links.click(TENANT, MESSAGE, "https://shop.example.com/p?a=1&item_id=42")
    assert url.startswith("https://t.example.com/t/c/")
    token = token_of(url)
    assert all(c.isalnum() or c in "-_." for c in token)
    claims = links.verify(token)
    assert claims == {"t": TENANT, "k": "c", "m": MESSAGE, "p": "", "c": "",
                      "u": "https://shop.example.com/p?a=1&item_id=42"}
    assert tenant_of_token(token) == TENANT


def test_pixel_unsubscribe_and_preference_links():
    pixel = links.open_pixel(TENANT, MESSAGE)
    assert pixel.endswith(".gif") and links.verify(token_of(pixel))["k"] == "o"
    unsub = links.verify(token_of(links.unsubscribe(TENANT, PROFILE, MESSAGE, "email")))
    assert (unsub["k"], unsub["p"], unsub["c"], unsub["m"]) == ("u", PROFILE, "email", MESSAGE)
    assert links.verify(token_of(links.preferences(TENANT, PROFILE, MESSAGE, "sms")))["k"] == "p"


@pytest.mark.parametrize("mutate", [
    lambda t: t[:-2] + ("AA" if t[-2:] != "AA" else "BB"),  # signature changed
    lambda t: t.replace(".", ".x"),
    lambda t: t.split(".")[0],  # no signature
    lambda t: "",
    lambda t: t + "." + t,
    lambda t: "a" * 5000,
    lambda t: "!!!.???",
    lambda t: "é.é",
])
def test_tampered_or_malformed_tokens_are_rejected(mutate):
    token = token_of(links.click(TENANT, MESSAGE, "https://a.example.com/"))
    with pytest.raises(InvalidArgument) as info:
        links.verify(mutate(token))
    assert info.value.code == "invalid_token"


def test_a_payload_swapped_under_a_valid_signature_is_rejected():
    good = token_of(links.click(TENANT, MESSAGE, "https://a.example.com/"))
    evil = token_of(links.click(TENANT, MESSAGE, "https://evil.example.com/"))
    with pytest.raises(InvalidArgument):
        links.verify(evil.split(".")[0] + "." + good.split(".")[1])


def test_another_secret_does_not_verify():
    token = token_of(links.click(TENANT, MESSAGE, "https://a.example.com/"))
    with pytest.raises(InvalidArgument):
        Links(b"other", "https://t.example.com").verify(token)


def test_tenant_of_token_is_none_for_garbage():
    assert tenant_of_token("") is None
    assert tenant_of_token("garbage") is None
    assert tenant_of_token("bm90IGpzb24.x") is None  # "not json"


# ---- track_html --------------------------------------------------------------------------------------


def test_track_html_rewrites_http_links_and_adds_the_pixel():
    unsub = links.unsubscribe(TENANT, PROFILE, MESSAGE, "email")
    html = ("<html><body><a href=\"https://shop.example.com/x?a=1&amp;b=2\">x</a>"
            "<a href='http://plain.example.com/'>y</a><a href=\"mailto:hi@example.com\">m</a>"
            "<a href=\"#top\">t</a><a href=\"" + unsub + "\">unsubscribe</a>"
            "<a href=\"https://shop.example.com/unsubscribe?u=1\">theirs</a>"
            "<a data-no-track href=\"https://keep.example.com/\">k</a></BODY></html>")
    out = track_html(html, links, TENANT, MESSAGE)
    clicks = [part.split('"')[0].split("'")[0] for part in out.split("https://t.example.com/t/c/")[1:]]
    assert [links.verify(t)["u"] for t in clicks] == ["https://shop.example.com/x?a=1&b=2",
                                                       "http://plain.example.com/"]
    assert "href='https://t.example.com/t/c/" in out  # the quote style is kept
    for kept in ("mailto:hi@example.com", "#top", unsub, "https://shop.example.com/unsubscribe?u=1",
                 "https://keep.example.com/"):
        assert f'"{kept}"' in out
    pixel = links.open_pixel(TENANT, MESSAGE)
    assert out.index(pixel) < out.index("</BODY>")


def test_track_html_without_a_body_tag_appends_the_pixel():
    out = track_html("<p>hi</p>", links, TENANT, MESSAGE)
    assert out.startswith("<p>hi</p><img") and links.open_pixel(TENANT, MESSAGE) in out
    assert track_html("", links, TENANT, MESSAGE) == ""


# ---- webhooks ----------------------------------------------------------------------------------------


def ec_keys():
    private = ec.generate_private_key(ec.SECP256R1())
    der = private.public_key().public_bytes(serialization.Encoding.DER,
                                            serialization.PublicFormat.SubjectPublicKeyInfo)
    pem = private.public_key().public_bytes(serialization.Encoding.PEM,
                                            serialization.PublicFormat.SubjectPublicKeyInfo).decode()
    return private, base64.b64encode(der).decode(), pem


def sendgrid_headers(private, body: bytes, timestamp: str = "1793613600") -> dict[str, str]:
    signature = private.sign(timestamp.encode() + body, ec.ECDSA(hashes.SHA256()))
    return {"X-Twilio-Email-Event-Webhook-Signature": base64.b64encode(signature).decode(),
            "X-Twilio-Email-Event-Webhook-Timestamp": timestamp}


SENDGRID_EVENTS = [
    {"email": "a@example.com", "timestamp": 1793613600, "event": "processed", "sg_event_id": "e0",
     "sg_message_id": "abc.filter1"},
    {"email": "a@example.com", "timestamp": 1793613601, "event": "delivered", "sg_event_id": "e1",
     "sg_message_id": "abc.filterdrecv-1.2", "mcloud_message_id": MESSAGE},
    {"timestamp": 1793613602, "event": "open", "sg_event_id": "e2", "sg_message_id": "abc.x", "useragent": "UA"},
    {"timestamp": 1793613603, "event": "click", "sg_event_id": "e3", "sg_message_id": "abc.x",
     "url": "https://shop.example.com/"},
    {"timestamp": 1793613604, "event": "bounce", "sg_event_id": "e4", "sg_message_id": "abc.x", "type": "bounce",
     "reason": "550 no such user"},
    {"timestamp": 1793613605, "event": "bounce", "sg_event_id": "e5", "sg_message_id": "abc.x", "type": "blocked"},
    {"timestamp": 1793613606, "event": "spamreport", "sg_event_id": "e6", "sg_message_id": "abc.x"},
    {"timestamp": 1793613607, "event": "unsubscribe", "sg_event_id": "e7", "sg_message_id": "abc.x"},
    {"timestamp": 1793613608, "event": "dropped", "sg_event_id": "e8", "sg_message_id": "abc.x"},
]


@pytest.mark.parametrize("key_format", ["der", "pem"])
def test_sendgrid_events_with_a_good_signature(key_format):
    private, der, pem = ec_keys()
    body = orjson.dumps(SENDGRID_EVENTS)
    facts = webhooks.parse("sendgrid", sendgrid_headers(private, body), body,
                           {"webhook_public_key": der if key_format == "der" else pem}, now=NOW)
    assert [f.kind for f in facts] == ["delivered", "opened", "clicked", "bounced", "bounced", "complained",
                                       "unsubscribed", "failed"]
    delivered, opened, clicked, hard, soft = facts[:5]
    assert delivered.provider_event_id == "sendgrid:e1" and delivered.message_id == MESSAGE
    assert delivered.provider_message_id == "abc" and opened.message_id == ""
    assert delivered.occurred_at == datetime.fromtimestamp(1793613601, UTC)
    assert opened.user_agent == "UA" and clicked.url == "https://shop.example.com/"
    assert hard.hard_bounce and hard.detail == "550 no such user" and not soft.hard_bounce


def test_sendgrid_bad_signature_is_denied():
    private, der, _ = ec_keys()
    other, _, _ = ec_keys()
    body = orjson.dumps(SENDGRID_EVENTS)
    for headers, data in [(sendgrid_headers(other, body), body),  # another key
                          (sendgrid_headers(private, body), body + b" "),  # body changed
                          ({**sendgrid_headers(private, body), "X-Twilio-Email-Event-Webhook-Timestamp": "1"}, body),
                          ({}, body),
                          ({**sendgrid_headers(private, body), "X-Twilio-Email-Event-Webhook-Signature": "@@"}, body)]:
        with pytest.raises(PermissionDenied) as info:
            webhooks.parse("sendgrid", headers, data, {"webhook_public_key": der}, now=NOW)
        assert info.value.code == "invalid_signature"
    with pytest.raises(PermissionDenied) as info:
        webhooks.parse("sendgrid", sendgrid_headers(private, body), body, {}, now=NOW)
    assert info.value.code == "webhook_not_configured"


def test_sendgrid_malformed_body_is_invalid():
    private, der, _ = ec_keys()
    for body in (b"{not json", b'{"event": "open"}', b"[1]"):
        with pytest.raises(InvalidArgument):
            webhooks.parse("sendgrid", sendgrid_headers(private, body), body, {"webhook_public_key": der}, now=NOW)


def mailgun_body(event: dict, key: str = "mg-key", timestamp: str = "1793613600", token: str = "tok") -> bytes:
    signature = hmac.new(key.encode(), (timestamp + token).encode(), hashlib.sha256).hexdigest()
    return orjson.dumps({"signature": {"timestamp": timestamp, "token": token, "signature": signature},
                         "event-data": event})


def test_mailgun_events_and_signature():
    secrets = {"webhook_signing_key": "mg-key"}
    opened = {"id": "ev-1", "event": "opened", "timestamp": 1793613600.5,
              "message": {"headers": {"message-id": f"<{MESSAGE}@mcloud>"}}, "client-info": {"user-agent": "UA"}}
    [fact] = webhooks.parse("mailgun", {}, mailgun_body(opened), secrets, now=NOW)
    assert (fact.kind, fact.message_id, fact.provider_event_id, fact.user_agent) == ("opened", MESSAGE,
                                                                                      "mailgun:ev-1", "UA")
    failed = {"id": "ev-2", "event": "failed", "severity": "permanent", "timestamp": 1793613601,
              "message": {"headers": {"message-id": "2026.abc@mg.example.com"}},
              "delivery-status": {"description": "mailbox does not exist"}}
    [fact] = webhooks.parse("mailgun", {}, mailgun_body(failed), secrets, now=NOW)
    assert (fact.kind, fact.hard_bounce, fact.provider_message_id, fact.message_id) == (
        "bounced", True, "2026.abc@mg.example.com", "")
    assert fact.detail == "mailbox does not exist"
    temporary = {**failed, "severity": "temporary"}
    assert webhooks.parse("mailgun", {}, mailgun_body(temporary), secrets, now=NOW) == []
    with pytest.raises(PermissionDenied) as info:
        webhooks.parse("mailgun", {}, mailgun_body(opened, key="wrong"), secrets, now=NOW)
    assert info.value.code == "invalid_signature"
    tampered = orjson.loads(mailgun_body(opened))
    tampered["signature"]["timestamp"] = "1793613999"
    with pytest.raises(PermissionDenied):
        webhooks.parse("mailgun", {}, orjson.dumps(tampered), secrets, now=NOW)
    with pytest.raises(InvalidArgument):
        webhooks.parse("mailgun", {}, b"nope", secrets, now=NOW)


def test_postmark_records_and_shared_secret():
    secrets = {"webhook_secret": "pm-secret"}
    ok = {"x-mcloud-webhook-secret": "pm-secret"}
    basic = {"authorization": "Basic " + base64.b64encode(b"postmark:pm-secret").decode()}
    records = [
        ({"RecordType": "Delivery", "MessageID": "pm-1", "DeliveredAt": "2026-11-02T10:00:01.1234567Z"}, "delivered"),
        ({"RecordType": "Open", "MessageID": "pm-1", "ReceivedAt": "2026-11-02T10:05:00Z", "UserAgent": "UA",
          "Metadata": {"mcloud_message_id": MESSAGE}}, "opened"),
        ({"RecordType": "Click", "MessageID": "pm-1", "ReceivedAt": "2026-11-02T10:06:00Z",
          "OriginalLink": "https://shop.example.com/"}, "clicked"),
        ({"RecordType": "Bounce", "ID": 42, "Type": "HardBounce", "MessageID": "pm-1",
          "BouncedAt": "2026-11-02T10:00:00-04:00", "Description": "gone"}, "bounced"),
        ({"RecordType": "SpamComplaint", "ID": 43, "Type": "SpamComplaint", "MessageID": "pm-1"}, "complained"),
        ({"RecordType": "SubscriptionChange", "MessageID": "pm-1", "SuppressSending": True,
          "ChangedAt": "2026-11-02T10:00:00Z"}, "unsubscribed"),
    ]
    for record, kind in records:
        [fact] = webhooks.parse("postmark", ok, orjson.dumps(record), secrets, now=NOW)
        assert fact.kind == kind and fact.provider_message_id == "pm-1"
        assert fact.provider_event_id.startswith("postmark:")
    [delivered] = webhooks.parse("postmark", basic, orjson.dumps(records[0][0]), secrets, now=NOW)
    assert delivered.occurred_at == datetime(2026, 11, 2, 10, 0, 1, 123456, tzinfo=UTC)
    [bounce] = webhooks.parse("postmark", ok, orjson.dumps(records[3][0]), secrets, now=NOW)
    assert bounce.hard_bounce and bounce.provider_event_id == "postmark:bounce:42"
    assert bounce.occurred_at == datetime(2026, 11, 2, 14, 0, tzinfo=UTC)
    soft = {"RecordType": "Bounce", "ID": 44, "Type": "SoftBounce", "MessageID": "pm-1"}
    assert not webhooks.parse("postmark", ok, orjson.dumps(soft), secrets, now=NOW)[0].hard_bounce
    auto = {"RecordType": "Bounce", "ID": 45, "Type": "AutoResponder", "MessageID": "pm-1"}
    assert webhooks.parse("postmark", ok, orjson.dumps(auto), secrets, now=NOW) == []
    body = orjson.dumps(records[0][0])
    for headers in ({}, {"x-mcloud-webhook-secret": "nope"},
                    {"authorization": "Basic " + base64.b64encode(b"postmark:nope").decode()},
                    {"authorization": "Basic %%%"}):
        with pytest.raises(PermissionDenied):
            webhooks.parse("postmark", headers, body, secrets, now=NOW)
    with pytest.raises(InvalidArgument):
        webhooks.parse("postmark", ok, b"[]", secrets, now=NOW)


def test_unknown_provider():
    with pytest.raises(InvalidArgument) as info:
        webhooks.parse("sparkpost", {}, b"[]", {}, now=NOW)
    assert info.value.code == "invalid_provider"
