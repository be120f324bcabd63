"""What every delivery provider shares: the message to send (Outgoing), the provider's receipt (Delivery),
the two ways a send fails (TemporaryFailure: try again later; PermanentFailure: never), a channel's provider
configuration (ProviderSpec, ChannelSetup) and the check of that configuration (check_provider)."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, Protocol
from urllib.parse import urlsplit

from mcloud_common.errors import InvalidArgument

_EMPTY: Mapping[str, Any] = MappingProxyType({})


@dataclass(frozen=True)
class Outgoing:
    """One rendered message for one address (email address, phone number, device token, webhook URL)."""

    message_id: str
    tenant_id: str
    channel: str
    to: str
    subject: str = ""
    body_text: str = ""
    body_html: str = ""
    title: str = ""
    data: Mapping[str, Any] = field(default_factory=dict)
    headers: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Delivery:
    """A provider took the message: its name and the id it gave the message (or one we made up)."""

    provider: str
    provider_message_id: str


class TemporaryFailure(Exception):
    """The send may work later (SMTP 4xx, connection errors, timeouts, HTTP 429/5xx, circuit open, rate limit).
    `retry_after` (seconds) when the provider said when to come back."""

    def __init__(self, detail: str, *, retry_after: float | None = None, provider: str = "") -> None:
        super().__init__(detail)
        self.detail = detail
        self.retry_after = retry_after
        self.provider = provider


class PermanentFailure(Exception):
    """The message was refused and resending it will not help (SMTP 5xx, HTTP 4xx). `hard_bounce` is True when
    the refusal is about the recipient (unknown mailbox, unregistered device token, invalid number)."""

    def __init__(self, detail: str, *, hard_bounce: bool = False, provider: str = "") -> None:
        super().__init__(detail)
        self.detail = detail
        self.hard_bounce = hard_bounce
        self.provider = provider


@dataclass(frozen=True)
class ProviderSpec:
    """One provider of a channel: its name, non-secret settings, secrets and its rate limit (0 = unlimited)."""

    provider: str
    settings: Mapping[str, Any] = field(default_factory=dict)
    secrets: Mapping[str, Any] = field(default_factory=dict)
    rate_limit_per_second: int = 0

    def fingerprint(self) -> str:
        """A short stable id of the provider's name and settings (not secrets): two endpoints of the same
        provider kind get their own circuit breaker and rate limit bucket."""
        raw = json.dumps([self.provider, dict(self.settings)], sort_keys=True, default=str)
        return hashlib.sha1(raw.encode()).hexdigest()[:10]


@dataclass(frozen=True)
class ChannelSetup:
    """A tenant's configuration of a channel: primary provider, fallbacks tried in order, and a version that
    changes whenever the tenant reconfigures (providers, pools and connections are then rebuilt)."""

    channel: str
    primary: ProviderSpec
    fallbacks: tuple[ProviderSpec, ...] = ()
    version: str = ""

    @property
    def chain(self) -> tuple[ProviderSpec, ...]:
        return (self.primary, *self.fallbacks)


def _object(value: Any) -> Mapping[str, Any]:
    """A JSON object given as a mapping, JSON text (asyncpg's default for jsonb) or None."""
    if value is None or value == "":
        return {}
    if isinstance(value, (str, bytes)):
        value = json.loads(value)
    return value if isinstance(value, Mapping) else {}


def spec_of(provider: str, settings: Any = None, secrets: Any = None, rate_limit_per_second: int | None = 0
            ) -> ProviderSpec:
    """A ProviderSpec from stored values (settings/secrets as mappings or JSON text)."""
    return ProviderSpec(provider, _object(settings), _object(secrets), int(rate_limit_per_second or 0))


def setup_of(row: Mapping[str, Any]) -> ChannelSetup:
    """A ChannelSetup from a channel_configs row (or mapping): channel, provider, settings, secrets,
    rate_limit_per_second, fallbacks (a JSON list of {"provider", "settings" | "settings_json",
    "secrets" | "secrets_json", "rate_limit_per_second"}), updated_at (-> version)."""
    fallbacks = row.get("fallbacks") or []
    if isinstance(fallbacks, (str, bytes)):
        fallbacks = json.loads(fallbacks)
    chain = tuple(
        spec_of(str(item.get("provider", "")), item.get("settings", item.get("settings_json")),
                item.get("secrets", item.get("secrets_json")), item.get("rate_limit_per_second"))
        for item in fallbacks if isinstance(item, Mapping))
    updated = row.get("updated_at")
    version = updated.isoformat() if hasattr(updated, "isoformat") else str(updated or "")
    return ChannelSetup(str(row["channel"]), spec_of(str(row["provider"]), row.get("settings"), row.get("secrets"),
                                                      row.get("rate_limit_per_second")), chain, version)


class Provider(Protocol):
    """A configured provider instance (one per tenant, channel, setup version and chain position)."""

    name: str

    async def send(self, out: Outgoing) -> Delivery: ...

    async def close(self) -> None: ...


# ---------------------------------------------------------------------------------------------------------------
# Configuration check

PROVIDERS: dict[str, frozenset[str]] = {
    "email": frozenset({"smtp", "log"}),
    "sms": frozenset({"http_json", "twilio", "log"}),
    "push": frozenset({"http_json", "fcm", "log"}),
    "webhook": frozenset({"webhook", "log"}),
}


def _bad(detail: str, field_name: str) -> InvalidArgument:
    return InvalidArgument(detail, code="invalid_channel_config", field=field_name)


def _text(spec_part: Mapping[str, Any], key: str, where: str, *, required: bool) -> str:
    value = spec_part.get(key)
    if value is None or value == "":
        if required:
            raise _bad(f"{key} is required", f"{where}.{key}")
        return ""
    if not isinstance(value, str):
        raise _bad(f"{key} must be a string", f"{where}.{key}")
    return value


def _flag(settings: Mapping[str, Any], key: str, where: str) -> None:
    value = settings.get(key)
    if value is not None and not isinstance(value, bool):
        raise _bad(f"{key} must be true or false", f"{where}.{key}")


def _url(settings: Mapping[str, Any], key: str, where: str, *, required: bool) -> None:
    value = _text(settings, key, where, required=required)
    if not value:
        return
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise _bad(f"{key} must be an http(s) URL", f"{where}.{key}")


def port_of(value: Any) -> int | None:
    """An SMTP port from settings (int or digit string), None when invalid."""
    if isinstance(value, bool):
        return None
    if isinstance(value, str) and value.strip().isdigit():
        value = int(value.strip())
    if isinstance(value, int) and 0 < value < 65536:
        return value
    return None


def check_provider(channel: str, spec: ProviderSpec, *, field_prefix: str = "config") -> None:
    """Raise InvalidArgument(code="invalid_channel_config", field=...) when `spec` cannot work for `channel`.
    Fields are named like "config.settings_json.host" (field_prefix "config.fallbacks[0]" for a fallback).
    Secrets must be the effective ones (stored secrets merged in when the request left them empty)."""
    known = PROVIDERS.get(channel)
    if known is None:
        raise _bad(f"channel {channel!r} has no configurable providers", "config.channel")
    if spec.provider not in known:
        raise _bad(f"provider {spec.provider!r} is not available for {channel}; use one of {sorted(known)}",
                   f"{field_prefix}.provider")
    if not isinstance(spec.settings, Mapping):
        raise _bad("settings must be a JSON object", f"{field_prefix}.settings_json")
    if not isinstance(spec.secrets, Mapping):
        raise _bad("secrets must be a JSON object", f"{field_prefix}.secrets_json")
    if not isinstance(spec.rate_limit_per_second, int) or spec.rate_limit_per_second < 0:
        raise _bad("rate_limit_per_second must be 0 (unlimited) or more", f"{field_prefix}.rate_limit_per_second")
    settings, secrets = spec.settings, spec.secrets
    where, secret_where = f"{field_prefix}.settings_json", f"{field_prefix}.secrets_json"
    if spec.provider == "smtp":
        _text(settings, "host", where, required=True)
        if "port" not in settings or port_of(settings["port"]) is None:
            raise _bad("port must be a number from 1 to 65535", f"{where}.port")
        from_email = _text(settings, "from_email", where, required=True)
        if "@" not in from_email or any(c in from_email for c in " \r\n<>"):
            raise _bad("from_email must be an email address", f"{where}.from_email")
        for key in ("from_name", "reply_to"):
            value = _text(settings, key, where, required=False)
            if "\r" in value or "\n" in value:
                raise _bad(f"{key} must be one line", f"{where}.{key}")
        _flag(settings, "use_tls", where)
        _flag(settings, "start_tls", where)
        if settings.get("use_tls") and settings.get("start_tls"):
            raise _bad("use_tls and start_tls cannot both be on", f"{where}.start_tls")
        _text(secrets, "username", secret_where, required=False)
        _text(secrets, "password", secret_where, required=False)
    elif spec.provider == "http_json":
        _url(settings, "url", where, required=True)
    elif spec.provider == "twilio":
        _text(settings, "account_sid", where, required=True)
        for key in ("from", "from_number", "messaging_service_sid"):
            _text(settings, key, where, required=False)
        _url(settings, "base_url", where, required=False)
        _text(secrets, "auth_token", secret_where, required=True)
    elif spec.provider == "fcm":
        _text(settings, "project_id", where, required=True)
        _url(settings, "base_url", where, required=False)
        _text(secrets, "access_token", secret_where, required=True)
    elif spec.provider == "webhook":
        _url(settings, "url", where, required=False)
        _text(secrets, "signing_secret", secret_where, required=False)
