"""Pure parts of the providers: circuit breaker, configuration check, failure classification, message bytes."""

from __future__ import annotations

import hashlib
import hmac
from datetime import UTC, datetime
from email import message_from_bytes, policy

import aiosmtplib
import httpx
import pytest

from mcloud_common.clock import ManualClock
from mcloud_common.errors import InvalidArgument
from messaging.providers import (
    Breakers,
    Circuit,
    Outgoing,
    PermanentFailure,
    ProviderSpec,
    TemporaryFailure,
    build_message,
    check_provider,
    setup_of,
)
from messaging.providers.dispatch import _monotonic_of
from messaging.providers.email import classify_smtp_error, render_message
from messaging.providers.http import classify_response, retry_after_of, sign


def test_circuit_opens_after_five_consecutive_failures():
    circuit = Circuit()
    for _ in range(4):
        assert circuit.allow(0)
        circuit.failure(0)
    assert circuit.state(0) == "closed"
    circuit.failure(1)
    assert circuit.state(1) == "open"
    assert not circuit.allow(29.9)


def test_success_resets_the_count():
    circuit = Circuit()
    for _ in range(4):
        circuit.failure(0)
    circuit.success()
    for _ in range(4):
        circuit.failure(0)
    assert circuit.state(0) == "closed"


def test_half_open_lets_one_trial_through():
    circuit = Circuit(threshold=2, open_seconds=30)
    circuit.failure(0)
    circuit.failure(0)
    assert circuit.state(29) == "open"
    assert circuit.state(30) == "half_open"
    assert circuit.allow(30)
    assert not circuit.allow(30)  # one trial at a time
    circuit.failure(31)  # the trial failed: open again for another 30 s
    assert circuit.state(60) == "open"
    assert circuit.allow(61)
    circuit.success()
    assert circuit.state(61) == "closed"
    assert circuit.allow(61) and circuit.allow(61)


def test_released_trial_allows_another():
    circuit = Circuit(threshold=1, open_seconds=1)
    circuit.failure(0)
    assert circuit.allow(2)
    circuit.release()
    assert circuit.allow(2)


def test_breakers_use_the_injected_clock():
    clock = ManualClock(datetime(2026, 11, 2, 10, tzinfo=UTC))
    breakers = Breakers(_monotonic_of(clock))
    circuit = breakers.get("t", "sms", "twilio")
    for _ in range(5):
        circuit.failure(breakers.now())
    assert breakers.state("t", "sms", "twilio") == "open"
    assert breakers.state("t", "sms", "other") == "closed"
    assert breakers.get("t2", "sms", "twilio") is not circuit
    clock.advance(seconds=30)
    assert breakers.state("t", "sms", "twilio") == "half_open"


@pytest.mark.parametrize(("channel", "spec", "field"), [
    ("email", ProviderSpec("smtp", {"port": 25, "from_email": "a@b.c"}), "config.settings_json.host"),
    ("email", ProviderSpec("smtp", {"host": "h", "port": 0, "from_email": "a@b.c"}), "config.settings_json.port"),
    ("email", ProviderSpec("smtp", {"host": "h", "port": 25}), "config.settings_json.from_email"),
    ("email", ProviderSpec("smtp", {"host": "h", "port": 25, "from_email": "nope"}),
     "config.settings_json.from_email"),
    ("email", ProviderSpec("smtp", {"host": "h", "port": 25, "from_email": "a@b.c", "use_tls": "yes"}),
     "config.settings_json.use_tls"),
    ("email", ProviderSpec("twilio"), "config.provider"),
    ("sms", ProviderSpec("http_json", {"url": "ftp://x"}), "config.settings_json.url"),
    ("sms", ProviderSpec("http_json", {}), "config.settings_json.url"),
    ("sms", ProviderSpec("twilio", {"account_sid": "AC1"}), "config.secrets_json.auth_token"),
    ("sms", ProviderSpec("twilio", {}, {"auth_token": "x"}), "config.settings_json.account_sid"),
    ("push", ProviderSpec("fcm", {"project_id": "p"}), "config.secrets_json.access_token"),
    ("push", ProviderSpec("fcm", {}, {"access_token": "x"}), "config.settings_json.project_id"),
    ("webhook", ProviderSpec("smtp"), "config.provider"),
    ("in_app", ProviderSpec("log"), "config.channel"),
    ("sms", ProviderSpec("log", rate_limit_per_second=-1), "config.rate_limit_per_second"),
])
def test_check_provider_names_the_bad_field(channel, spec, field):
    with pytest.raises(InvalidArgument) as info:
        check_provider(channel, spec)
    assert info.value.code == "invalid_channel_config"
    assert info.value.extra["field"] == field


def test_check_provider_accepts_good_configs_and_prefixes_fallback_fields():
    check_provider("email", ProviderSpec("smtp", {"host": "127.0.0.1", "port": "2525", "from_email": "n@shop.example",
                                                  "from_name": "Shop"}, {"username": "u", "password": "p"}))
    check_provider("email", ProviderSpec("log"))
    check_provider("sms", ProviderSpec("twilio", {"account_sid": "AC1", "from": "+15550001"}, {"auth_token": "t"}))
    check_provider("push", ProviderSpec("fcm", {"project_id": "p"}, {"access_token": "t"}, 10))
    check_provider("webhook", ProviderSpec("webhook", {}, {"signing_secret": "s"}))
    with pytest.raises(InvalidArgument) as info:
        check_provider("sms", ProviderSpec("http_json"), field_prefix="config.fallbacks[1]")
    assert info.value.extra["field"] == "config.fallbacks[1].settings_json.url"


def test_smtp_errors_are_classified():
    refused = aiosmtplib.SMTPRecipientsRefused([aiosmtplib.SMTPRecipientRefused(550, "5.1.1 no such user", "x@y")])
    failure = classify_smtp_error(refused)
    assert isinstance(failure, PermanentFailure) and failure.hard_bounce
    policy_refusal = aiosmtplib.SMTPRecipientsRefused([aiosmtplib.SMTPRecipientRefused(550, "5.7.1 spam", "x@y")])
    assert classify_smtp_error(policy_refusal).hard_bounce is False
    greylisted = aiosmtplib.SMTPRecipientsRefused([aiosmtplib.SMTPRecipientRefused(450, "4.2.0 later", "x@y")])
    assert isinstance(classify_smtp_error(greylisted), TemporaryFailure)
    assert isinstance(classify_smtp_error(aiosmtplib.SMTPDataError(451, "try later")), TemporaryFailure)
    content = classify_smtp_error(aiosmtplib.SMTPDataError(554, "5.6.0 bad content"))
    assert isinstance(content, PermanentFailure) and not content.hard_bounce
    assert isinstance(classify_smtp_error(aiosmtplib.SMTPServerDisconnected("gone")), TemporaryFailure)
    assert isinstance(classify_smtp_error(aiosmtplib.SMTPReadTimeoutError("slow")), TemporaryFailure)
    assert isinstance(classify_smtp_error(ConnectionRefusedError()), TemporaryFailure)


def _response(status: int, body: bytes = b"", headers: dict | None = None) -> httpx.Response:
    return httpx.Response(status, content=body, headers=headers or {})


def test_http_responses_are_classified():
    classify_response(_response(202), "p")
    with pytest.raises(TemporaryFailure) as info:
        classify_response(_response(429, headers={"Retry-After": "7"}), "p")
    assert info.value.retry_after == 7
    with pytest.raises(TemporaryFailure):
        classify_response(_response(503), "p")
    with pytest.raises(PermanentFailure) as perm:
        classify_response(_response(400, b"bad"), "p")
    assert not perm.value.hard_bounce


def test_retry_after_dates():
    now = datetime(2026, 11, 2, 10, tzinfo=UTC)
    assert retry_after_of("Mon, 02 Nov 2026 10:00:30 GMT", now) == 30
    assert retry_after_of("soon", now) is None
    assert retry_after_of(None) is None
    assert retry_after_of("-5") == 0


def test_signature_is_hmac_sha256_of_the_body():
    assert sign("k", b"{}") == "sha256=" + hmac.new(b"k", b"{}", hashlib.sha256).hexdigest()


def test_message_bytes_parse_as_a_proper_email():
    out = Outgoing("m-1", "t", "email", "ana@example.com", subject="Grüße – 50% off", body_text="Hi Ana\nLine 2",
                   body_html="<p>Hi <b>Ana</b> ✓</p>" + "x" * 2000,
                   headers={"List-Unsubscribe": "<https://u.example/u/tok>",
                            "List-Unsubscribe-Post": "List-Unsubscribe=One-Click", "To": "evil@example.com"})
    now = datetime(2026, 11, 2, 10, tzinfo=UTC)
    msg = build_message(out, from_email="news@shop.example", from_name="Shöp", reply_to="help@shop.example", now=now)
    assert msg["Subject"] == "Grüße – 50% off"
    assert msg["From"].addresses[0].display_name == "Shöp"
    assert msg["From"].addresses[0].addr_spec == "news@shop.example"
    assert msg["To"] == "ana@example.com"
    assert msg["Message-ID"] == "<m-1@mcloud>"
    assert msg["Reply-To"] == "help@shop.example"
    assert msg["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    assert msg["Date"].datetime == now
    assert msg.get_content_type() == "multipart/alternative"
    assert msg.get_body(("plain",)).get_content().splitlines() == ["Hi Ana", "Line 2"]
    assert msg.get_body(("html",)).get_content().startswith("<p>Hi <b>Ana</b> ✓</p>xxx")
    raw = render_message(out, from_email="news@shop.example", now=now)
    assert all(len(line) <= 998 for line in raw.split(b"\r\n"))
    assert raw.isascii()
    only_text = message_from_bytes(render_message(Outgoing("m-2", "t", "email", "a@b.c", body_text="plain"),
                                                  from_email="n@s.e"), policy=policy.default)
    assert only_text.get_content_type() == "text/plain"


def test_header_injection_is_refused():
    out = Outgoing("m", "t", "email", "a@b.c", subject="x\r\nBcc: victim@example.com")
    with pytest.raises(ValueError):
        render_message(out, from_email="n@s.e")


def test_setup_of_a_stored_row():
    updated = datetime(2026, 11, 2, 9, tzinfo=UTC)
    row = {"channel": "sms", "provider": "twilio", "settings": '{"account_sid": "AC1"}', "secrets": {"auth_token": "t"},
           "rate_limit_per_second": 20, "updated_at": updated,
           "fallbacks": '[{"provider": "http_json", "settings": {"url": "http://x"}, "rate_limit_per_second": 5}]'}
    setup = setup_of(row)
    assert setup.primary == ProviderSpec("twilio", {"account_sid": "AC1"}, {"auth_token": "t"}, 20)
    assert setup.fallbacks == (ProviderSpec("http_json", {"url": "http://x"}, {}, 5),)
    assert setup.version == updated.isoformat()
    assert [spec.provider for spec in setup.chain] == ["twilio", "http_json"]
