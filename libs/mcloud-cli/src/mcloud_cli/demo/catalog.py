"""What the demo tenant is made of: a sports brand's catalogue (CNY), recommend settings, the loyalty
program, message templates, and the lifecycle journeys of journey-svc/templates adapted to a demo that
runs on the real clock."""

from __future__ import annotations

import copy
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

CURRENCY = "CNY"
SHOES = ["sports", "running", "running_shoes"]
APPAREL = ["sports", "running", "apparel"]


def _product(item_id: str, title: str, categories: list[str], price: int, tags: list[str], **extra: Any) -> dict:
    return {"id": item_id, "title": title, "categories": categories, "price": price, "currency": CURRENCY,
            "tags": tags, "brand": "Stride", "in_stock": True, **extra}


def _activity(item_id: str, title: str, categories: list[str], tags: list[str], starts_at: str) -> dict:
    return {"id": item_id, "kind": "activity", "title": title, "categories": categories, "tags": tags,
            "starts_at": starts_at}


CATALOGUE: list[dict] = [
    # running shoes
    _product("aerorun-5", "AeroRun 5", SHOES, 1099, ["running", "road", "marathon"]),
    _product("cloudstride-3", "CloudStride 3", SHOES, 1299, ["running", "road", "cushioned"]),
    _product("tempo-fly", "TempoFly", SHOES, 999, ["running", "road", "race"]),
    _product("trailhawk-2", "TrailHawk 2", SHOES, 1199, ["running", "trail"]),
    # apparel
    _product("dryfit-tee", "DryFit running tee", APPAREL, 199, ["running"]),
    _product("split-shorts", "Split running shorts", APPAREL, 249, ["running"]),
    _product("wind-jacket", "Packable wind jacket", APPAREL, 599, ["running", "outdoor"]),
    # accessories
    _product("cushion-socks", "Cushioned running socks (3 pairs)", ["sports", "running", "socks"], 89,
             ["running"]),
    _product("pace-gps", "PaceMaker GPS watch", ["sports", "running", "watches"], 2499, ["running", "gps"]),
    _product("run-belt", "Running belt", ["sports", "running", "bags"], 159, ["running"]),
    # nutrition (consumables come back when they run out)
    _product("energy-gel-12", "Energy gels x12", ["sports", "nutrition", "energy_gels"], 129,
             ["running", "marathon"], replenish_after_days=30),
    _product("electrolyte-tabs", "Electrolyte tablets", ["sports", "nutrition", "electrolytes"], 79,
             ["running"], replenish_after_days=30),
    # something for another interest
    _product("yoga-mat", "Studio yoga mat", ["sports", "yoga", "mats"], 299, ["yoga"]),
    # marketing activities
    _activity("city-marathon", "Shanghai City Marathon 2027", ["events", "running_events"], ["running", "marathon"],
              "2027-11-28T07:00:00+08:00"),
    _activity("night-10k", "Riverside Night 10K", ["events", "running_events"], ["running"],
              "2027-06-20T19:30:00+08:00"),
    _activity("yoga-retreat", "Weekend yoga retreat", ["events", "yoga_events"], ["yoga"],
              "2027-05-01T09:00:00+08:00"),
]
PRODUCTS = [i for i in CATALOGUE if i.get("kind") != "activity"]
BY_ID = {i["id"]: i for i in CATALOGUE}

# intent locks after 3 views of an item that sat 1 minute in the cart (0 is read as "the default", 10
# minutes, by recommend, so 1 is the shortest hold)
RECOMMEND_SETTINGS = {
    "intent_min_views": 3,
    "intent_window_hours": 24,
    "intent_cart_minutes": 1,
    "complements": {"running_shoes": ["socks", "watches", "energy_gels"]},
}

PROGRAM = {
    "name": "Stride Club",
    "currency": CURRENCY,
    "tiers": [
        {"code": "normal", "name": "Normal", "rank": 0, "threshold_points": 0},
        {"code": "silver", "name": "Silver", "rank": 1, "threshold_points": 1000, "discount_percent": 5,
         "benefits": [{"code": "early_access", "name": "Early access to new releases"},
                      {"code": "free_gait_analysis", "name": "Free gait analysis in store"}]},
        {"code": "gold", "name": "Gold", "rank": 2, "threshold_points": 6000, "discount_percent": 10,
         "free_shipping": True, "benefits": [{"code": "marathon_entry", "name": "Guaranteed marathon entry"}]},
    ],
    "earn_rules": [
        {"name": "An order earns 100 points", "trigger": "order", "points": 100},
        {"name": "1 point per yuan", "trigger": "order", "points_per_unit": 1, "unit_minor": 100},
    ],
    "points_validity_days": 365,
    "pending_days": 0,  # no return window in the demo: points are available at once
    "tier_window_months": 12,
    "auto_enroll": True,
    "point_value_minor": 1,
    "time_zone": "Asia/Shanghai",
}

WELCOME_COUPON = {"name": "Welcome 10% off", "discount_type": "percent_off", "percent_off": 10,
                  "code_prefix": "WELCOME-", "validity_days": 30, "remind_days_before_expiry": 7}

STORE_ID = "SH-JINGAN"
STORE_NAME = "Stride Jing'an"

# template key -> (channel, content in English); Liquid sees the profile, the journey's context and the step's data
TEMPLATES: dict[str, tuple[str, dict]] = {
    "welcome": ("email", {
        "subject": "Welcome to Stride Club, {{ profile.first_name }}: 10% off your first order",
        "body_html": "<h1>Welcome to Stride Club, {{ profile.first_name }}!</h1>"
                     "<p>Your first-order coupon: <b>{{ coupon.code }}</b> (10% off).</p>"
                     "<p><a href=\"https://shop.example.com/running\">Find your next run</a></p>"}),
    "first-purchase-coupon": ("email", {
        "subject": "Your coupon is waiting",
        "body_html": "<p>Use <b>{{ coupon.code }}</b> on your first order.</p>"}),
    "first-purchase-last-chance": ("email", {
        "subject": "Last chance: your welcome coupon",
        "body_html": "<p>Your coupon expires soon.</p>"}),
    "tier-upgrade": ("email", {
        "subject": "You are {{ to_tier_code | capitalize }} now, {{ profile.first_name }}",
        "body_html": "<h1>Welcome to {{ to_tier_code | capitalize }}!</h1>"
                     "<p>Your new benefits: {{ benefit_codes | join: ', ' }}.</p>"
                     "<p>{{ points_to_next_tier }} points to {{ next_tier_code | capitalize }}.</p>"}),
    "tier-upgrade-inapp": ("in_app", {
        "title": "You are {{ to_tier_code | capitalize }} now",
        "body_text": "New benefits: {{ benefit_codes | join: ', ' }}. {{ points_to_next_tier }} points to "
                     "{{ next_tier_code | capitalize }}.",
        "data": {"screen": "loyalty"}}),
    "tier-benefits-reminder": ("email", {
        "subject": "Your {{ to_tier_code | capitalize }} benefits are waiting",
        "body_html": "<p>Use your benefits: {{ benefit_codes | join: ', ' }}.</p>"}),
    # app push (the demo's push sink stands in for the push gateway)
    "store-invite-push": ("push", {
        "title": "{{ profile.first_name }}, you are near " + STORE_NAME,
        "body_text": "Drop in today: your free gait analysis and new-season running shoes are waiting.",
        "data": {"screen": "store", "store_id": STORE_ID}}),
    "post-purchase-push": ("push", {
        "title": "Thanks for visiting Stride, {{ profile.first_name }}",
        "body_text": "Your in-store order {{ order_id }} earned {{ total | plus: 100 }} points: see your balance "
                     "in the app.",
        "data": {"screen": "loyalty"}}),
    # the other lifecycle journeys of journey-svc/templates
    "cross-sell": ("email", {
        "subject": "Goes well with your new gear, {{ profile.first_name }}",
        "body_html": "<p>Picked for you: socks, a GPS watch and energy gels for your next run.</p>"}),
    "repeat-purchase-bonus": ("email", {
        "subject": "+{{ bonus_points }} bonus points for coming back",
        "body_html": "<p>You ordered again within a week: {{ bonus_points }} bonus points are yours.</p>"}),
    "repeat-purchase-coupon": ("email", {
        "subject": "15% off your next order",
        "body_html": "<p>Your coupon: <b>{{ coupon.code }}</b>.</p>"}),
    "replenishment-reminder": ("email", {
        "subject": "Running low on gels, {{ profile.first_name }}?",
        "body_html": "<p>Reorder in one click with <b>{{ coupon.code }}</b> (10% off).</p>"}),
    "coupon-expiring": ("email", {
        "subject": "Your coupon {{ code }} expires soon",
        "body_html": "<p>Use <b>{{ code }}</b> before it expires.</p>"}),
    "coupon-expiring-final-sms": ("sms", {
        "body_text": "Stride: your coupon {{ code }} expires soon."}),
    "winback-we-miss-you": ("email", {
        "subject": "We miss you, {{ profile.first_name }}: 15% off",
        "body_html": "<p>Come back with <b>{{ coupon.code }}</b>.</p>"}),
    "winback-stronger-offer": ("email", {
        "subject": "25% off, just for you",
        "body_html": "<p>Our best offer: <b>{{ coupon.code }}</b>.</p>"}),
    "winback-sms": ("sms", {
        "body_text": "Stride: we miss you. Your coupon is still waiting in the app."}),
    "d11-lead-welcome": ("email", {"subject": "Free shipping on Double-11",
                                   "body_html": "<p>Everything ships free on 11.11.</p>"}),
    "d11-lead-coupon": ("email", {"subject": "A coupon you can use now",
                                  "body_html": "<p>Your coupon: <b>{{ coupon.code }}</b>.</p>"}),
    "d11-voucher-earned": ("email", {"subject": "Your Double-11 voucher",
                                     "body_html": "<p>Voucher: <b>{{ coupon.code }}</b>.</p>"}),
    "d11-early-access": ("email", {"subject": "Thank you: early access to Double-11",
                                   "body_html": "<p>Your access code: <b>{{ coupon.code }}</b>.</p>"}),
    "d11-share-task": ("email", {"subject": "Share with 10 friends, earn a voucher",
                                 "body_html": "<p>Share the Double-11 preview with 10 friends.</p>"}),
    "d11-access-code-reminder": ("email", {"subject": "One week to Double-11",
                                           "body_html": "<p>Keep your early-access code at hand.</p>"}),
    "d11-cart-recovery": ("email", {"subject": "Still thinking about it?",
                                    "body_html": "<p>Your cart is waiting, with <b>{{ coupon.code }}</b>.</p>"}),
}


def _coupon(name: str, prefix: str, percent: int, days: int = 30) -> dict:
    return {"name": name, "discount_type": "percent_off", "percent_off": percent, "code_prefix": prefix,
            "validity_days": days}


@dataclass(frozen=True)
class Lifecycle:
    """A journey of journey-svc/templates and what the demo fills its variables with: template keys (of
    TEMPLATES), coupon campaigns (CampaignWrite bodies), segments (rules) and plain values."""

    key: str
    file: str
    templates: dict[str, str] = field(default_factory=dict)
    campaigns: dict[str, dict] = field(default_factory=dict)
    segments: dict[str, dict] = field(default_factory=dict)
    fixed: dict[str, str] = field(default_factory=dict)
    notes: tuple[str, ...] = ()
    draft: str = ""  # why it is saved as a draft rather than published ("" = published)


LIFECYCLE: list[Lifecycle] = [
    Lifecycle("repeat_purchase", "repeat-purchase.json",
              templates={"cross_sell_template": "cross-sell", "bonus_points_template": "repeat-purchase-bonus",
                         "repeat_coupon_template": "repeat-purchase-coupon"},
              campaigns={"repeat_coupon_campaign_id": _coupon("Repeat purchase 15% off", "AGAIN-", 15)}),
    Lifecycle("replenishment", "replenishment-reminder.json",
              templates={"reminder_template": "replenishment-reminder"},
              campaigns={"reorder_coupon_campaign_id": _coupon("Reorder 10% off", "REFILL-", 10, 14)},
              fixed={"category": "nutrition", "replenish_after": "P25D"},
              notes=("entered by orders whose category is nutrition (energy gels run out in 30 days)",)),
    Lifecycle("coupon_expiry", "coupon-expiry-reminder.json",
              templates={"reminder_template": "coupon-expiring", "final_sms_template": "coupon-expiring-final-sms"},
              notes=("the welcome coupon reminds 7 days before it expires; the final SMS is dropped: the demo "
                     "tenant has no SMS provider",)),
    Lifecycle("win_back", "win-back-dormant.json",
              templates={"winback_email_template": "winback-we-miss-you",
                         "stronger_coupon_template": "winback-stronger-offer", "winback_sms_template": "winback-sms"},
              campaigns={"winback_coupon_campaign_id": _coupon("Win-back 15% off", "MISSYOU-", 15),
                         "stronger_coupon_campaign_id": _coupon("Win-back 25% off", "COMEBACK-", 25)},
              segments={"dormant_segment_id": {"computed": "last_order_at", "op": "older_than_days", "value": 180}},
              notes=("dormant = no order in 180 days",)),
    Lifecycle("double11", "double11-warm-up.json",
              templates={"lead_welcome_template": "d11-lead-welcome", "lead_coupon_template": "d11-lead-coupon",
                         "voucher_template": "d11-voucher-earned", "early_access_template": "d11-early-access",
                         "share_task_template": "d11-share-task",
                         "access_code_reminder_template": "d11-access-code-reminder",
                         "cart_recovery_template": "d11-cart-recovery"},
              campaigns={"lead_coupon_campaign_id": _coupon("Double-11 lead 10% off", "LEAD-", 10, 60),
                         "double11_voucher_campaign_id": _coupon("Double-11 voucher", "D11-", 20, 60),
                         "early_access_campaign_id": _coupon("Double-11 early access", "EARLY-", 5, 60),
                         "cart_coupon_campaign_id": _coupon("Double-11 cart 10% off", "CART-", 10, 60)},
              segments={
                  "audience_segment_id": {"trait": "email", "op": "exists"},
                  "new_leads_segment_id": {"all": [{"trait": "email", "op": "exists"},
                                                   {"not": {"computed": "order_count", "op": "gte", "value": 1}}]},
                  "active_segment_id": {"computed": "last_order_at", "op": "within_days", "value": 180},
                  "dormant_segment_id": {"all": [{"computed": "last_order_at", "op": "older_than_days", "value": 180},
                                                 {"computed": "cart", "op": "exists"}]},
                  "sharers_segment_id": {"event": "Product Shared", "count": {"op": "gte", "value": 10}}},
              fixed={"launch_date": "2027-10-20", "reminder_at": "2027-11-04T10:00:00+08:00"},
              draft="a once-only seasonal campaign (launch 2027-10-20, 10:00): published, it would email every "
                    "demo customer on launch day, long after the demo and its SMTP sink are gone; "
                    "publish it when the season comes (POST /v1/journeys/{id}/publish)"),
]


def journey_templates_dir() -> Path:
    """journey-svc/templates of the checkout this CLI runs from (searched upwards from here and the cwd)."""
    for start in (Path(__file__).resolve(), Path.cwd().resolve()):
        for folder in (start, *start.parents):
            candidate = folder / "journey-svc" / "templates"
            if candidate.is_dir():
                return candidate
    raise FileNotFoundError("journey-svc/templates not found: run `mcloud demo` from the mcloud checkout")


_DAYS = re.compile(r"^P(\d+)D$")


def shorten(duration: str) -> str:
    """Days become hours (P2D -> PT2H): the demo's journeys never wait days on the real clock."""
    m = _DAYS.match(duration)
    return f"PT{m.group(1)}H" if m else duration


def adapt(definition: dict) -> tuple[dict, list[str]]:
    """The definition with best-send-time waits removed (the message goes now) and day-long waits and
    timeouts turned into hours, no holdout (the demo's one customer must not be held out); and what changed."""
    d = copy.deepcopy(definition)
    notes: list[str] = []
    steps = d["steps"]
    skip = {s["id"]: s["next"] for s in steps if s.get("type") == "wait" and s.get("best_send_time")}

    def target(step_id: str) -> str:
        while step_id in skip:
            step_id = skip[step_id]
        return step_id

    if skip:
        notes.append(f"best-send-time waits removed ({', '.join(skip)}): messages go at once")
    d["steps"] = steps = [s for s in steps if s["id"] not in skip]
    d["start"] = target(d["start"])
    for s in steps:
        for key in ("next", "timeout_next", "else"):
            if key in s:
                s[key] = target(s[key])
        for branch in s.get("branches", []) + s.get("variants", []):
            branch["next"] = target(branch["next"])
        for key in ("duration", "timeout"):
            if key in s and (short := shorten(s[key])) != s[key]:
                notes.append(f"{s['id']}: {s[key]} -> {short}")
                s[key] = short
    if d.get("holdout_percent"):
        notes.append(f"holdout {d['holdout_percent']}% -> 0%")
        d["holdout_percent"] = 0
    return d, notes


def fill(node: Any, values: dict[str, str]) -> Any:
    """Replace "{{variable}}" strings by their values."""
    if isinstance(node, dict):
        return {k: fill(v, values) for k, v in node.items()}
    if isinstance(node, list):
        return [fill(v, values) for v in node]
    if isinstance(node, str) and (m := re.fullmatch(r"\{\{(\w+)\}\}", node)):
        return values[m.group(1)]
    return node


def welcome_journey(template: dict, values: dict[str, str]) -> tuple[dict, list[str]]:
    """welcome-first-purchase.json, with the 10% coupon issued at sign-up and shown in the welcome email."""
    definition, notes = adapt(fill(template["definition"], values))
    definition["steps"].insert(0, {"id": "welcome-coupon", "type": "issue_coupon",
                                   "campaign_id": values["first_purchase_campaign_id"], "next": definition["start"]})
    definition["start"] = "welcome-coupon"
    notes.insert(0, "welcome-coupon step added: the 10% coupon comes with the welcome email")
    return definition, notes


def tier_upgrade_journey(template: dict, values: dict[str, str]) -> tuple[dict, list[str]]:
    """tier-upgrade-congratulation.json, congratulating on the best channel and in the app's inbox."""
    definition, notes = adapt(fill(template["definition"], values))
    steps = definition["steps"]
    congratulate = next(s for s in steps if s["id"] == "congratulate")
    steps.insert(steps.index(congratulate) + 1, {
        "id": "congratulate-in-app", "type": "send", "channel": "in_app", "template": values["inapp_template"],
        "data": {"utm_campaign": "tier-upgrade"}, "next": congratulate["next"]})
    congratulate["next"] = "congratulate-in-app"
    notes.append("congratulate-in-app step added: the congratulation also lands in the in-app inbox")
    return definition, notes


def lifecycle_journey(template: dict, values: dict[str, str]) -> tuple[dict, list[str]]:
    """Any other template of journey-svc/templates, filled and adapted to the real clock."""
    return adapt(fill(template["definition"], values))


def store_nearby_journey(template_id: str) -> dict:
    """DOMAIN.md step 6: the app reports her near a store ("Store Nearby" with a store id): a push invites her
    in, at most once a day. Conversion: an order in a store (a POS order carries its store_id) within 12 hours."""
    in_store = [{"property": "store_id", "op": "exists"}]
    return {
        "entry": {"type": "event", "event": "Store Nearby", "where": [{"property": "store_id", "op": "exists"}]},
        "reentry": {"mode": "cooldown", "cooldown": "P1D"},
        "goal": {"event": "Order Completed", "where": in_store, "within": "PT12H"},
        "exit_criteria": [{"event": "message.unsubscribed"}],
        "start": "invite",
        "steps": [
            {"id": "invite", "type": "send", "channel": "push", "template": template_id,
             "data": {"utm_campaign": "store-nearby"}, "next": "bought-in-store"},
            {"id": "bought-in-store", "type": "wait_for_event", "event": "Order Completed", "where": in_store,
             "timeout": "PT12H", "next": "came-in", "timeout_next": "did-not-come"},
            {"id": "came-in", "type": "exit"},
            {"id": "did-not-come", "type": "exit"},
        ],
    }


def post_purchase_journey(template_id: str) -> dict:
    """DOMAIN.md step 7: after an order in a store (a POS order carries its store_id), a push thanks her and
    tells her the points she earned; one enrollment per order."""
    return {
        "entry": {"type": "event", "event": "Order Completed", "key": "order_id",
                  "where": [{"property": "store_id", "op": "exists"}]},
        "exit_criteria": [{"event": "message.unsubscribed"}],
        "start": "thank-you",
        "steps": [
            {"id": "thank-you", "type": "send", "channel": "push", "template": template_id,
             "data": {"utm_campaign": "post-purchase"}, "next": "thanked"},
            {"id": "thanked", "type": "exit"},
        ],
    }
