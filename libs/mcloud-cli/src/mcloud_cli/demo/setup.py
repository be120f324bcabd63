"""Configure a demo tenant through the public HTTP API: catalogue, recommend settings, loyalty program,
coupon campaigns, segments, message templates, the email channel (a local SMTP server), the push channel
(messaging's generic JSON HTTP provider posting to a local push sink) and the in-app channel, and the
lifecycle journeys published (Double-11 saved as a draft: see catalog.LIFECYCLE)."""

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
    journeys: dict[str, str]  # "welcome" / "tier_upgrade" / "store_nearby" / ... -> journey id
    notes: dict[str, list[str]] = field(default_factory=dict)  # journey -> how it was adapted for the demo
    drafts: dict[str, str] = field(default_factory=dict)  # journey key -> why it was saved as a draft only
    names: dict[str, str] = field(default_factory=dict)  # journey key -> its name
    published_at: float = 0.0  # time.monotonic() when the journeys were published
    items: int = 0


async def _journey(gw: Gateway, name: str, description: str, definition: dict, *, publish: bool = True) -> str:
    created = await gw.post("/v1/journeys", {"name": name, "description": description, "definition": definition})
    if created.get("errors"):
        raise gw.fail(f"journey {name!r} adapted for the demo is invalid: {created['errors']}")
    if publish:
        await gw.post(f"/v1/journeys/{created['journey']['id']}/publish")
    return created["journey"]["id"]


async def configure(gw: Gateway, smtp_port: int | None, *, push_url: str | None = None,
                    from_email: str = "club@stride.example.com") -> DemoSetup:
    gw.step = "setup"
    if smtp_port is not None:
        await gw.put("/v1/messaging/channels/email", {
            "provider": "smtp", "settings": {"host": "127.0.0.1", "port": smtp_port, "from_email": from_email,
                                             "from_name": "Stride Club"}})
    if push_url is not None:
        await gw.put("/v1/messaging/channels/push", {"provider": "http_json", "settings": {"url": push_url}})
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
    names: dict[str, str] = {}
    drafts: dict[str, str] = {}
    for key, file, build in (("welcome", "welcome-first-purchase.json", catalog.welcome_journey),
                             ("tier_upgrade", "tier-upgrade-congratulation.json", catalog.tier_upgrade_journey)):
        template = orjson.loads((folder / file).read_bytes())
        definition, notes[key] = build(template, values)
        names[key] = f"{template['name']} (demo)"
        journeys[key] = await _journey(gw, names[key], template.get("description", ""), definition)
    for key, name, build, template_key, note in (
        ("store_nearby", "Store nearby invite (demo)", catalog.store_nearby_journey, "store-invite-push",
         "entered by the app's Store Nearby event (a store_id), a push invites her in, at most once a day"),
        ("post_purchase", "Post-purchase thank-you (demo)", catalog.post_purchase_journey, "post-purchase-push",
         "entered by a store order (Order Completed with a store_id, as the POS sends it), a push thanks her"),
    ):
        names[key], notes[key] = name, [note]
        journeys[key] = await _journey(gw, name, note, build(templates[template_key]))
    for life in catalog.LIFECYCLE:
        template = orjson.loads((folder / life.file).read_bytes())
        filled: dict[str, str] = {"program_id": program["id"], **life.fixed}
        filled.update({var: templates[key] for var, key in life.templates.items()})
        for var, body in life.campaigns.items():
            filled[var] = (await gw.post("/v1/coupon-campaigns", body))["id"]
        for var, rules in life.segments.items():
            filled[var] = (await gw.post("/v1/segments", {"name": f"demo {life.key} {var.removesuffix('_id')}",
                                                          "rules": rules}))["id"]
        definition, adapted = catalog.lifecycle_journey(template, filled)
        names[life.key], notes[life.key] = f"{template['name']} (demo)", [*life.notes, *adapted]
        journeys[life.key] = await _journey(gw, names[life.key], template.get("description", ""), definition,
                                            publish=not life.draft)
        if life.draft:
            drafts[life.key] = life.draft
    published_at = time.monotonic()
    await gw.put("/v1/recommendations/settings", catalog.RECOMMEND_SETTINGS)
    upserted = await gw.post("/v1/catalog/items", {"items": catalog.CATALOGUE})
    if upserted.get("upserted") != len(catalog.CATALOGUE):
        raise gw.fail(f"catalogue not stored: {upserted}")
    return DemoSetup(program_id=program["id"], campaign_id=campaign["id"], templates=templates, journeys=journeys,
                     notes=notes, drafts=drafts, names=names, published_at=published_at,
                     items=len(catalog.CATALOGUE))
