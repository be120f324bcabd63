"""Configure a demo tenant through the public HTTP API: catalogue, recommend settings, loyalty program,
coupon campaign, message templates, the email channel (a local SMTP server) and the in-app channel, and
the lifecycle journeys published."""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import orjson

from mcloud_cli.demo import catalog
from mcloud_cli.demo.api import Gateway


@dataclass
class DemoSetup:
    program_id: str
    campaign_id: str
    templates: dict[str, str]  # key -> template id
    journeys: dict[str, str]  # "welcome" / "tier_upgrade" -> journey id
    notes: dict[str, list[str]] = field(default_factory=dict)  # journey -> how it was adapted for the demo
    published_at: float = 0.0  # time.monotonic() when the journeys were published
    items: int = 0


async def configure(gw: Gateway, smtp_port: int | None, *, from_email: str = "club@stride.example.com") -> DemoSetup:
    gw.step = "setup"
    if smtp_port is not None:
        await gw.put("/v1/messaging/channels/email", {
            "provider": "smtp", "settings": {"host": "127.0.0.1", "port": smtp_port, "from_email": from_email,
                                             "from_name": "Stride Club"}})
    await gw.put("/v1/messaging/channels/in_app", {"provider": "", "settings": {}})
    templates: dict[str, str] = {}
    for key, (channel, content) in catalog.TEMPLATES.items():
        t = await gw.post("/v1/templates", {"name": f"demo-{key}", "channel": channel, "default_locale": "en",
                                            "variants": [{"locale": "en", **content}]})
        templates[key] = t["id"]
    program = await gw.post("/v1/loyalty/programs", catalog.PROGRAM)
    campaign = await gw.post("/v1/coupon-campaigns", catalog.WELCOME_COUPON)
    folder = catalog.journey_templates_dir()
    values = {
        "welcome_template": templates["welcome"], "coupon_nudge_template": templates["first-purchase-coupon"],
        "last_chance_template": templates["first-purchase-last-chance"], "first_purchase_campaign_id": campaign["id"],
        "program_id": program["id"], "congratulation_template": templates["tier-upgrade"],
        "benefits_reminder_template": templates["tier-benefits-reminder"],
        "inapp_template": templates["tier-upgrade-inapp"],
    }
    journeys: dict[str, str] = {}
    notes: dict[str, list[str]] = {}
    for key, file, build in (("welcome", "welcome-first-purchase.json", catalog.welcome_journey),
                             ("tier_upgrade", "tier-upgrade-congratulation.json", catalog.tier_upgrade_journey)):
        template = orjson.loads((folder / file).read_bytes())
        definition, notes[key] = build(template, values)
        created = await gw.post("/v1/journeys", {"name": f"{template['name']} (demo)",
                                                 "description": template.get("description", ""),
                                                 "definition": definition})
        if created.get("errors"):
            raise gw.fail(f"journey {file} adapted for the demo is invalid: {created['errors']}")
        journeys[key] = created["journey"]["id"]
        await gw.post(f"/v1/journeys/{journeys[key]}/publish")
    published_at = time.monotonic()
    await gw.put("/v1/recommendations/settings", catalog.RECOMMEND_SETTINGS)
    upserted = await gw.post("/v1/catalog/items", {"items": catalog.CATALOGUE})
    if upserted.get("upserted") != len(catalog.CATALOGUE):
        raise gw.fail(f"catalogue not stored: {upserted}")
    return DemoSetup(program_id=program["id"], campaign_id=campaign["id"], templates=templates, journeys=journeys,
                     notes=notes, published_at=published_at, items=len(catalog.CATALOGUE))
