"""Channel configuration: a channel's provider, settings, write-only secrets, rate limit, frequency
caps and fallback providers. `get_channel` serves the senders from a short-lived in-process cache
(a change on another replica is seen within CACHE_SECONDS)."""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import asyncpg
import orjson

from mcloud.messaging.v1 import messaging_pb2 as pb
from mcloud_common.errors import InvalidArgument
from mcloud_common.timestamps import set_timestamp
from messaging.domain.attribution import check_currency
from messaging.domain.names import CHANNEL_ENUM
from messaging.domain.policies import Cap
from messaging.providers import ChannelSetup, ProviderSpec, check_provider
from messaging.repo.preferences import check_channel

CACHE_SECONDS = 2.0
MAX_WINDOW_HOURS = 720
MAX_CAPS = 10
MAX_FALLBACKS = 5
IN_APP_PROVIDER = "in_app"


@dataclass(frozen=True, slots=True)
class ChannelRow:
    """A channel's stored configuration (secrets included: for the senders only, never returned)."""

    channel: str
    provider: str
    enabled: bool
    settings: Mapping[str, Any]
    secrets: Mapping[str, Any]
    rate_limit_per_second: int
    caps: tuple[Cap, ...]
    # each {"provider", "settings", "secrets", "rate_limit_per_second"}
    fallbacks: tuple[dict[str, Any], ...]
    updated_at: datetime
    # what one sent message costs (channel report: cost and ROI)
    cost_per_message_minor: int = 0
    cost_currency: str = ""

    def setup(self):
        """The providers' ChannelSetup of this configuration (messaging.providers)."""
        from messaging.providers import ProviderSpec as spec

        return ChannelSetup(
            channel=self.channel,
            primary=spec(provider=self.provider, settings=self.settings, secrets=self.secrets,
                         rate_limit_per_second=self.rate_limit_per_second),
            fallbacks=tuple(spec(provider=f["provider"], settings=f["settings"], secrets=f["secrets"],
                                 rate_limit_per_second=f["rate_limit_per_second"]) for f in self.fallbacks),
            version=self.updated_at.isoformat())


_cache: dict[tuple[str, str], tuple[float, ChannelRow | None]] = {}


def _json(value: Any, default: Any) -> Any:
    if isinstance(value, str):
        value = orjson.loads(value)
    return default if value is None else value


def _row(row: Mapping[str, Any]) -> ChannelRow:
    caps = tuple(Cap(int(c["max_messages"]), int(c["window_hours"])) for c in _json(row["frequency_caps"], []))
    return ChannelRow(channel=row["channel"], provider=row["provider"], enabled=row["enabled"],
                      settings=_json(row["settings"], {}), secrets=_json(row["secrets"], {}),
                      rate_limit_per_second=row["rate_limit_per_second"], caps=caps,
                      fallbacks=tuple(_json(row["fallbacks"], [])), updated_at=row["updated_at"],
                      cost_per_message_minor=row.get("cost_per_message_minor") or 0,
                      cost_currency=row.get("cost_currency") or "")


async def get_channel(conn: asyncpg.Connection, tenant: str, channel: str, *, fresh: bool = False
                      ) -> ChannelRow | None:
    """The channel's configuration, None when the tenant never configured it."""
    key = (tenant, channel)
    hit = _cache.get(key)
    if hit is not None and not fresh and hit[0] > time.monotonic():
        return hit[1]
    row = await conn.fetchrow("SELECT * FROM channel_configs WHERE tenant_id = $1 AND channel = $2", tenant, channel)
    value = _row(row) if row is not None else None
    _cache[key] = (time.monotonic() + CACHE_SECONDS, value)
    return value


def _object(text: str, field: str) -> dict[str, Any] | None:
    """A JSON object from `text`; None for empty text."""
    if not text.strip():
        return None
    try:
        value = orjson.loads(text)
    except orjson.JSONDecodeError:
        raise InvalidArgument(f"{field} is not valid JSON", code="invalid_json", field=field) from None
    if not isinstance(value, dict):
        raise InvalidArgument(f"{field} must be a JSON object", code="invalid_json", field=field)
    return value


def _rate(value: int, field: str) -> int:
    if value < 0:
        raise InvalidArgument(f"{field} must be >= 0 (0 = unlimited)", code="invalid_rate_limit", field=field)
    return value


def _cost(minor: int, currency: str) -> tuple[int, str]:
    """The cost per message and its currency (required with a cost, optional without)."""
    if minor < 0:
        raise InvalidArgument("cost_per_message_minor must be >= 0", code="invalid_cost",
                              field="config.cost_per_message_minor")
    if not currency.strip():
        if minor:
            raise InvalidArgument("cost_currency is required with a cost per message", code="invalid_currency",
                                  field="config.cost_currency")
        return 0, ""
    return minor, check_currency(currency, "config.cost_currency")


def _caps(caps) -> list[dict[str, int]]:
    if len(caps) > MAX_CAPS:
        raise InvalidArgument(f"at most {MAX_CAPS} frequency caps", code="too_many_caps", field="config.frequency_caps")
    out = []
    for i, cap in enumerate(caps):
        if cap.max_messages < 1:
            raise InvalidArgument("max_messages must be >= 1", code="invalid_frequency_cap",
                                  field=f"config.frequency_caps[{i}].max_messages")
        if not 1 <= cap.window_hours <= MAX_WINDOW_HOURS:
            raise InvalidArgument(f"window_hours must be 1..{MAX_WINDOW_HOURS}", code="invalid_frequency_cap",
                                  field=f"config.frequency_caps[{i}].window_hours")
        out.append({"max_messages": cap.max_messages, "window_hours": cap.window_hours})
    return out


def _check_provider(channel: str, provider: str, settings: Mapping, secrets: Mapping, rate: int,
                    prefix: str = "config") -> None:
    """The providers' own validation of a provider's settings."""
    spec = ProviderSpec(provider=provider, settings=settings, secrets=secrets, rate_limit_per_second=rate)
    check_provider(channel, spec, field_prefix=prefix)


def message(row: Mapping[str, Any]) -> pb.ChannelConfig:
    """The API view, without secrets."""
    r = row if isinstance(row, ChannelRow) else _row(row)
    c = pb.ChannelConfig(channel=CHANNEL_ENUM[r.channel], provider=r.provider, enabled=r.enabled,
                         settings_json=orjson.dumps(dict(r.settings)).decode(),
                         rate_limit_per_second=r.rate_limit_per_second,
                         cost_per_message_minor=r.cost_per_message_minor, cost_currency=r.cost_currency)
    for cap in r.caps:
        c.frequency_caps.add(max_messages=cap.max_messages, window_hours=cap.window_hours)
    for f in r.fallbacks:
        c.fallbacks.add(provider=f["provider"], settings_json=orjson.dumps(f["settings"]).decode(),
                        rate_limit_per_second=f["rate_limit_per_second"])
    set_timestamp(c.updated_at, r.updated_at)
    return c


async def configure(conn: asyncpg.Connection, tenant: str, config: pb.ChannelConfig, now: datetime
                    ) -> pb.ChannelConfig:
    """Replace a channel's configuration (ConfigureChannel). Empty secrets keep the stored ones (a
    fallback's: those stored for the same provider)."""
    channel = check_channel(config.channel, "config.channel")
    provider = config.provider.strip() or (IN_APP_PROVIDER if channel == "in_app" else "")
    if not provider:
        raise InvalidArgument("config.provider is required", code="invalid_provider", field="config.provider")
    settings = _object(config.settings_json, "config.settings_json") or {}
    new_secrets = _object(config.secrets_json, "config.secrets_json")
    rate = _rate(config.rate_limit_per_second, "config.rate_limit_per_second")
    caps = _caps(config.frequency_caps)
    if len(config.fallbacks) > MAX_FALLBACKS:
        raise InvalidArgument(f"at most {MAX_FALLBACKS} fallbacks", code="too_many_fallbacks", field="config.fallbacks")
    cost, cost_currency = _cost(config.cost_per_message_minor, config.cost_currency)
    async with conn.transaction():
        old = await conn.fetchrow("SELECT * FROM channel_configs WHERE tenant_id = $1 AND channel = $2 FOR UPDATE",
                                  tenant, channel)
        old_row = _row(old) if old is not None else None
        secrets = new_secrets if new_secrets is not None else (
            dict(old_row.secrets) if old_row is not None and old_row.provider == provider else {})
        stored_fallbacks = {f["provider"]: f for f in old_row.fallbacks} if old_row is not None else {}
        fallbacks = []
        for i, f in enumerate(config.fallbacks):
            field = f"config.fallbacks[{i}]"
            name = f.provider.strip()
            if not name:
                raise InvalidArgument(f"{field}.provider is required", code="invalid_provider",
                                      field=f"{field}.provider")
            f_secrets = _object(f.secrets_json, f"{field}.secrets_json")
            if f_secrets is None:
                f_secrets = dict(stored_fallbacks.get(name, {}).get("secrets", {}))
            fallbacks.append({"provider": name, "settings": _object(f.settings_json, f"{field}.settings_json") or {},
                              "secrets": f_secrets,
                              "rate_limit_per_second": _rate(f.rate_limit_per_second,
                                                             f"{field}.rate_limit_per_second")})
        if channel != "in_app":
            _check_provider(channel, provider, settings, secrets, rate)
            for i, f in enumerate(fallbacks):
                _check_provider(channel, f["provider"], f["settings"], f["secrets"], f["rate_limit_per_second"],
                                f"config.fallbacks[{i}]")
        row = await conn.fetchrow(
            """
            INSERT INTO channel_configs (tenant_id, channel, provider, enabled, settings, secrets,
                                         rate_limit_per_second, frequency_caps, fallbacks, updated_at,
                                         cost_per_message_minor, cost_currency)
            VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)
            ON CONFLICT (tenant_id, channel) DO UPDATE SET provider = excluded.provider, enabled = excluded.enabled,
                settings = excluded.settings, secrets = excluded.secrets,
                rate_limit_per_second = excluded.rate_limit_per_second, frequency_caps = excluded.frequency_caps,
                fallbacks = excluded.fallbacks, updated_at = excluded.updated_at,
                cost_per_message_minor = excluded.cost_per_message_minor, cost_currency = excluded.cost_currency
            RETURNING *
            """, tenant, channel, provider, config.enabled, settings, secrets, rate, caps, fallbacks, now,
            cost, cost_currency)
    _cache.pop((tenant, channel), None)
    return message(row)
