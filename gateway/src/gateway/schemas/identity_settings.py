"""Identity settings shape, for documentation: identity validates and owns the contents (documented
in identity-svc/README.md), so the gateway passes the JSON through and extra keys reach identity,
which refuses unknown ones with a 400."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from gateway.schemas.common import JsonDict

EXAMPLE: dict[str, Any] = {
    "default_region": "CN",
    "identifiers": {
        "email": {"priority": 4, "limit": 1, "strong": True, "normalise": "email", "blocked": []},
        "member_card": {"priority": 9, "limit": 2, "strong": True, "normalise": "trim", "blocked": ["^X+$"]},
    },
    "trait_source_priority": ["server", "crm", "pos", "app", "mini_program", "web", "ads"],
    "lifecycle": {"repeat_min_orders": 2, "retained_min_orders": 4, "churn_after_days": 180},
    "computed_events": {"order": ["Order Completed"], "product_viewed": ["Product Viewed"]},
}


class IdentitySettings(BaseModel):
    """A tenant's identity settings. On PUT, omitted keys take their defaults."""

    model_config = ConfigDict(extra="allow", json_schema_extra={"examples": [EXAMPLE]})

    default_region: str | None = Field(None, description="ISO 3166 region of phone numbers without a country code")
    identifiers: dict[str, dict[str, Any]] | None = Field(
        None,
        description="per identifier type: priority (lower wins), limit (values per profile), strong (names a "
        "person), normalise (none, trim, lower, email, phone), blocked (extra junk-value regexes)",
    )
    trait_source_priority: list[str] | None = Field(
        None, description="a trait from an earlier source is not overwritten by a later one"
    )
    lifecycle: JsonDict | None = Field(
        None, description="repeat_min_orders, retained_min_orders, churn_after_days"
    )
    computed_events: dict[str, list[str]] | None = Field(
        None, description="track event names feeding computed traits (order, product_viewed, ...)"
    )
