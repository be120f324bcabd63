"""What the demo tenant is made of: a sports brand's catalogue (CNY), recommend settings, the loyalty
program, message templates, and the lifecycle journeys of journey-svc/templates adapted to a demo that
runs on the real clock."""

from __future__ import annotations

import copy
import re
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
                  "code_prefix": "WELCOME-", "validity_days": 30}

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
}


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
