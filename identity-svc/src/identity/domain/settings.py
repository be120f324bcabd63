"""A tenant's identity settings: identifier rules, trait source priority, lifecycle thresholds,
computed-trait event names and the default phone region. Stored as JSON per tenant, defaults filled
in, validated by pydantic (unknown keys are an error, so typos do not pass silently)."""

from __future__ import annotations

import re
from functools import cached_property
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

Normaliser = Literal["none", "trim", "lower", "email", "phone"]

# Junk values every identifier type refuses (case-insensitive, whole value). Tenants add their own.
DEFAULT_BLOCKED = [
    r"^0+$",
    r"^(null|nil|none|undefined|unknown|nan|n/?a|na|test|-+|\.+|\s*)$",
    r"^test@test\.com$",
    r"^(noreply|no-reply|none|null|test|example)@(example\.com|test\.com|email\.com)$",
    r"^(.)\1{7,}$",  # 11111111, aaaaaaaa
]


class IdentifierRule(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    # Lower number = higher priority. When an event's identifiers cannot all go on one profile
    # (a limit would break, or two identified people would merge), the lowest-priority one is dropped.
    priority: int = Field(ge=1, le=1000)
    # Most values of this type one profile may hold.
    limit: int = Field(ge=1, le=10_000)
    # A strong identifier names a person (a profile holding one is "identified"); weak ones name a
    # browser or device.
    strong: bool = True
    normalise: Normaliser = "trim"
    # Extra blocked-value regexes for this type (whole value, case-insensitive), on top of the defaults.
    blocked: list[str] = Field(default_factory=list)

    @field_validator("blocked")
    @classmethod
    def _regexes_compile(cls, value: list[str]) -> list[str]:
        for pattern in value:
            try:
                re.compile(pattern)
            except re.error as exc:
                raise ValueError(f"blocked pattern {pattern!r} is not a valid regex: {exc}") from exc
        return value


DEFAULT_IDENTIFIERS: dict[str, IdentifierRule] = {
    "user_id": IdentifierRule(priority=1, limit=1, normalise="trim"),
    "member_id": IdentifierRule(priority=2, limit=1, normalise="trim"),
    "crm_id": IdentifierRule(priority=3, limit=1, normalise="trim"),
    "email": IdentifierRule(priority=4, limit=1, normalise="email"),
    "phone": IdentifierRule(priority=5, limit=1, normalise="phone"),
    "wechat_unionid": IdentifierRule(priority=6, limit=1, normalise="trim"),
    "wechat_openid": IdentifierRule(priority=7, limit=5, normalise="trim"),
    "pos_card": IdentifierRule(priority=8, limit=3, normalise="trim"),
    "device_id": IdentifierRule(priority=20, limit=5, strong=False, normalise="trim"),
    "anonymous_id": IdentifierRule(priority=30, limit=100, strong=False, normalise="trim"),
}


class LifecycleThresholds(BaseModel):
    """potential: no order yet; first_purchase: one order; repeat: repeat_min_orders or more;
    retained: retained_min_orders or more; churned: no order for churn_after_days (any of the
    buying stages). A churned customer who orders again goes back to the stage their count gives."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    repeat_min_orders: int = Field(default=2, ge=2)
    retained_min_orders: int = Field(default=4, ge=2)
    churn_after_days: int = Field(default=180, ge=1)

    @model_validator(mode="after")
    def _ordered(self) -> LifecycleThresholds:
        if self.retained_min_orders < self.repeat_min_orders:
            raise ValueError("retained_min_orders must be at least repeat_min_orders")
        return self


class ComputedEvents(BaseModel):
    """Which track events feed the computed traits (Segment e-commerce spec names by default)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    order: list[str] = Field(default_factory=lambda: ["Order Completed"])
    product_viewed: list[str] = Field(default_factory=lambda: ["Product Viewed"])
    product_added: list[str] = Field(default_factory=lambda: ["Product Added"])
    product_removed: list[str] = Field(default_factory=lambda: ["Product Removed"])
    store_visit: list[str] = Field(default_factory=lambda: ["Store Visited"])


class TenantSettings(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    # ISO 3166 region for phone numbers written without a country code.
    default_region: str = Field(default="CN", pattern=r"^[A-Z]{2}$")
    # Identifier types, built-in and custom (a custom type name: lowercase letters, digits, _).
    identifiers: dict[str, IdentifierRule] = Field(default_factory=lambda: dict(DEFAULT_IDENTIFIERS))
    # Trait conflicts: a value from a source earlier in this list is not overwritten by one from a
    # source later in it; between equal sources the most recent event wins.
    trait_source_priority: list[str] = Field(
        default_factory=lambda: ["server", "crm", "pos", "app", "mini_program", "web", "ads"])
    lifecycle: LifecycleThresholds = Field(default_factory=LifecycleThresholds)
    computed_events: ComputedEvents = Field(default_factory=ComputedEvents)

    @field_validator("identifiers")
    @classmethod
    def _identifier_names(cls, value: dict[str, IdentifierRule]) -> dict[str, IdentifierRule]:
        merged = dict(DEFAULT_IDENTIFIERS)
        for name, rule in value.items():
            if not re.fullmatch(r"[a-z][a-z0-9_]{0,63}", name):
                raise ValueError(f"identifier type {name!r}: use lowercase letters, digits and _")
            merged[name] = rule
        return merged

    def rule(self, type_: str) -> IdentifierRule | None:
        return self.identifiers.get(type_)

    @cached_property
    def _blocked(self) -> dict[str, re.Pattern[str]]:
        out = {}
        for name, rule in self.identifiers.items():
            out[name] = re.compile("|".join(f"(?:{p})" for p in [*DEFAULT_BLOCKED, *rule.blocked]), re.IGNORECASE)
        return out

    def is_blocked(self, type_: str, value: str) -> bool:
        pattern = self._blocked.get(type_)
        return pattern is not None and pattern.fullmatch(value) is not None

    @cached_property
    def source_rank(self) -> dict[str, int]:
        """Smaller is stronger; unknown sources rank after every listed one."""
        return {s: i for i, s in enumerate(self.trait_source_priority)}

    def to_json(self) -> str:
        return self.model_dump_json()


DEFAULT_SETTINGS = TenantSettings()
