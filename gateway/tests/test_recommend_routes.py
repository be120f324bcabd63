"""The catalogue and recommendation routes over HTTP against a REAL recommend service (in-process gRPC on
a free port, its own migrated database, real Valkey, a ManualClock, no background jobs) and a fake
identity that resolves `type:value` profiles: catalogue writes and reads with money in decimal major
units, recommendations (GET and POST), filters, similar items, feedback, intent, retraining, settings,
stats; validation problems, scopes and 404s. Every test makes its own tenant, so they share one service."""

from __future__ import annotations

import uuid
from datetime import timedelta

import httpx
import pytest

from gateway.testing import assert_problem, bearer, scoped_key
from mcloud.identity.v1 import identity_pb2
from mcloud.recommend.v1 import recommend_pb2, recommend_pb2_grpc
from mcloud_common.grpc_client import make_channel, tenant_metadata
from mcloud_common.testing.services import wait_until

SHOP = [
    {"id": "shoe-a", "title": "Pegasus 40", "categories": ["sports", "running", "running_shoes"], "brand": "Nike",
     "price": "159.00", "currency": "EUR", "tags": ["road", "neutral"], "image_url": "https://img.example/a.png",
     "attributes": {"colour": "black"}},
    {"id": "shoe-b", "title": "Vomero 17", "categories": ["sports", "running", "running_shoes"], "brand": "Nike",
     "price": 179.99, "currency": "EUR", "tags": ["road", "cushioned"]},
    {"id": "shoe-c", "title": "Trail X", "categories": ["sports", "running", "running_shoes"], "brand": "Salomon",
     "price": 139.5, "currency": "EUR", "tags": ["trail"], "in_stock": False},
    {"id": "socks-1", "title": "Run socks", "categories": ["sports", "running", "socks"], "price": 12.9,
     "currency": "EUR", "tags": ["road"]},
    {"id": "watch-1", "title": "Forerunner", "categories": ["sports", "running", "watches"], "price": 249,
     "currency": "EUR"},
    {"id": "gel-1", "title": "Energy gel", "categories": ["sports", "running", "energy_gels"], "price": 2.5,
     "currency": "EUR", "replenish_after_days": 30},
    {"id": "mat-1", "title": "Yoga mat", "categories": ["sports", "yoga", "mats"], "price": 39, "currency": "EUR"},
    {"id": "marathon", "kind": "activity", "title": "City Marathon", "categories": ["events", "running"],
     "starts_at": "2026-12-06T07:00:00+08:00", "ends_at": "2026-12-06T14:00:00+08:00"},
]


@pytest.fixture
def client(recommend_client) -> httpx.AsyncClient:
    return recommend_client


@pytest.fixture
async def tenant(make_tenant):
    return await make_tenant()


@pytest.fixture
def admin(tenant) -> dict[str, str]:
    return bearer(tenant.secret_key)


@pytest.fixture
def people(recommend_identity, tenant):
    """Factory: a profile known to the fake identity by email; (profile id, "email:...")."""
    servicer, _ = recommend_identity

    def make() -> tuple[str, str]:
        pid, email = str(uuid.uuid4()), f"p-{uuid.uuid4().hex[:8]}@example.com"
        servicer.profiles[(tenant.tenant_id, pid)] = identity_pb2.Profile(
            id=pid, identifiers=[identity_pb2.Identifier(type="email", value=email)]
        )
        return pid, f"email:{email}"

    return make


async def stock_shop(client, headers) -> None:
    r = await client.post("/v1/catalog/items", headers=headers, json={"items": SHOP})
    assert r.status_code == 200, r.text
    assert r.json() == {"upserted": len(SHOP)}


def event(kind: str, item_id: str, *, clock, profile: str | None = None, anon: str | None = None,
          ago: timedelta = timedelta(0), **more) -> dict:
    out = {"event_id": str(uuid.uuid4()), "item_id": item_id, "kind": kind,
           "occurred_at": (clock.now() - ago).isoformat(), **more}
    if profile:
        out["profile"] = profile
    if anon:
        out["anonymous_id"] = anon
    return out


async def send(client, headers, *events: dict) -> dict:
    r = await client.post("/v1/recommendations/feedback", headers=headers, json={"feedback": list(events)})
    assert r.status_code == 200, r.text
    return r.json()


async def crowd(client, headers, clock) -> None:
    """Ten shoppers view shoe-a; eight of them also view shoe-b and buy shoe-a, half of those with socks; three
    look at the watch; one does yoga. shoe-a is the most popular item, shoe-b its closest neighbour."""
    events = []
    for n in range(10):
        anon = f"crowd-{n}-{uuid.uuid4().hex[:6]}"
        events.append(event("view", "shoe-a", clock=clock, anon=anon, ago=timedelta(hours=3)))
        if n < 8:
            events += [event("view", "shoe-b", clock=clock, anon=anon, ago=timedelta(hours=3)),
                       event("purchase", "shoe-a", clock=clock, anon=anon, ago=timedelta(hours=2), quantity=1)]
        if n < 4:
            events.append(event("purchase", "socks-1", clock=clock, anon=anon, ago=timedelta(hours=2), quantity=2))
        if n < 3:
            events.append(event("view", "watch-1", clock=clock, anon=anon, ago=timedelta(hours=1)))
    events.append(event("view", "mat-1", clock=clock, anon=f"yogi-{uuid.uuid4().hex[:6]}"))
    result = await send(client, headers, *events)
    assert result == {"accepted": len(events), "duplicates": 0}


def ids(body: dict) -> list[str]:
    return [r["item_id"] for r in body["items"]]


# ---- catalogue -----------------------------------------------------------------------------------


async def test_catalogue_round_trip_converts_money_to_minor_units_and_back(client, tenant, admin, recommend_port):
    await stock_shop(client, admin)
    extra = [{"id": "onsen", "title": "Onsen pass", "price": 1500, "currency": "JPY"},
             {"id": "dates", "title": "Dates", "price": "1.250", "currency": "KWD"}]
    assert (await client.post("/v1/catalog/items", headers=admin, json={"items": extra})).json() == {"upserted": 2}

    r = await client.get("/v1/catalog/items/shoe-a", headers=admin)
    assert r.status_code == 200, r.text
    item = r.json()
    assert (item["price"], item["currency"]) == (159.0, "EUR")
    assert item["kind"] == "product" and item["in_stock"] is True and item["brand"] == "Nike"
    assert item["categories"] == ["sports", "running", "running_shoes"] and item["tags"] == ["road", "neutral"]
    assert item["image_url"] == "https://img.example/a.png" and item["attributes"] == {"colour": "black"}
    assert item["url"] is None and item["updated_at"] is not None
    assert (await client.get("/v1/catalog/items/shoe-b", headers=admin)).json()["price"] == 179.99
    assert (await client.get("/v1/catalog/items/onsen", headers=admin)).json()["price"] == 1500
    assert (await client.get("/v1/catalog/items/dates", headers=admin)).json()["price"] == 1.25
    marathon = (await client.get("/v1/catalog/items/marathon", headers=admin)).json()
    assert marathon["kind"] == "activity" and marathon["price"] is None and marathon["currency"] is None
    assert marathon["starts_at"].startswith("2026-12-05T23:00:00")

    # what the service stores: integer minor units of the currency
    channel = make_channel(f"127.0.0.1:{recommend_port}")
    try:
        stub = recommend_pb2_grpc.RecommendServiceStub(channel)
        stored = {}
        for item_id in ("shoe-a", "shoe-b", "onsen", "dates"):
            got = await stub.GetItem(recommend_pb2.GetItemRequest(item_id=item_id),
                                     metadata=tenant_metadata(tenant.tenant_id))
            stored[item_id] = (got.item.price_minor, got.item.currency)
    finally:
        await channel.close()
    assert stored == {"shoe-a": (15900, "EUR"), "shoe-b": (17999, "EUR"), "onsen": (1500, "JPY"),
                      "dates": (1250, "KWD")}

    # an upsert replaces the whole item
    changed = {**SHOP[0], "price": 149, "in_stock": False, "tags": []}
    assert (await client.post("/v1/catalog/items", headers=admin, json={"items": [changed]})).status_code == 200
    again = (await client.get("/v1/catalog/items/shoe-a", headers=admin)).json()
    assert (again["price"], again["in_stock"], again["tags"]) == (149.0, False, [])


async def test_catalogue_lists_by_category_and_kind_page_by_page(client, admin):
    await stock_shop(client, admin)
    seen, cursor = [], None
    for _ in range(10):
        params = {"limit": 3, **({"cursor": cursor} if cursor else {})}
        page = await client.get("/v1/catalog/items", headers=admin, params=params)
        assert page.status_code == 200, page.text
        seen += [i["id"] for i in page.json()["items"]]
        cursor = page.json()["next_cursor"]
        if cursor is None:
            break
    assert seen == sorted(i["id"] for i in SHOP)

    shoes = await client.get("/v1/catalog/items", headers=admin, params={"category": "running_shoes"})
    assert [i["id"] for i in shoes.json()["items"]] == ["shoe-a", "shoe-b", "shoe-c"]
    activities = await client.get("/v1/catalog/items", headers=admin, params={"kind": "activity"})
    assert [i["id"] for i in activities.json()["items"]] == ["marathon"]
    assert_problem(await client.get("/v1/catalog/items", headers=admin, params={"kind": "car"}), 400,
                   "invalid_request")
    assert_problem(await client.get("/v1/catalog/items", headers=admin, params={"limit": 0}), 400, "invalid_request")


async def test_an_absent_item_is_a_404_problem_and_deleting_is_idempotent(client, admin):
    await stock_shop(client, admin)
    assert_problem(await client.get("/v1/catalog/items/no-such-item", headers=admin), 404)
    assert_problem(await client.get("/v1/catalog/items/no-such-item/similar", headers=admin), 404)

    first = await client.delete("/v1/catalog/items/mat-1", headers=admin)
    again = await client.delete("/v1/catalog/items/mat-1", headers=admin)
    assert (first.status_code, first.content, again.status_code) == (204, b"", 204)
    assert_problem(await client.get("/v1/catalog/items/mat-1", headers=admin), 404)

    bulk = await client.post("/v1/catalog/items/delete", headers=admin,
                             json={"item_ids": ["gel-1", "watch-1", "mat-1", "never-existed"]})
    assert bulk.status_code == 200, bulk.text
    assert bulk.json() == {"deleted": 2}
    listed = (await client.get("/v1/catalog/items", headers=admin)).json()["items"]
    assert {"gel-1", "watch-1", "mat-1"}.isdisjoint(i["id"] for i in listed)
    # a deleted item is never recommended again
    recs = await client.get("/v1/recommendations", headers=admin, params={"count": 50})
    assert {"gel-1", "watch-1", "mat-1"}.isdisjoint(ids(recs.json()))


async def test_catalogue_validation_problems_name_the_field(client, admin):
    item = SHOP[0]

    async def upsert(*items, **body):
        return await client.post("/v1/catalog/items", headers=admin, json=body or {"items": list(items)})

    too_precise = assert_problem(await upsert({**item, "price": "159.001"}), 422, "validation_failed")
    assert [e["pointer"] for e in too_precise["errors"]] == ["#/items/0/price"]
    yen_cents = assert_problem(await upsert({**item, "price": 15.5, "currency": "JPY"}), 422)
    assert yen_cents["errors"][0]["pointer"] == "#/items/0/price"
    no_currency = assert_problem(await upsert({k: v for k, v in item.items() if k != "currency"}), 422)
    assert no_currency["errors"][0]["pointer"] == "#/items/0/price"
    for bad, pointer in (
        ({**item, "price": -1}, "#/items/0/price"),
        ({**item, "currency": "euro"}, "#/items/0/currency"),
        ({**item, "kind": "service"}, "#/items/0/kind"),
        ({**item, "id": ""}, "#/items/0/id"),
        ({**item, "id": "x" * 129}, "#/items/0/id"),
        ({**item, "id": " shoe-a"}, "#/items/0/id"),
        ({**item, "categories": [f"c{n}" for n in range(11)]}, "#/items/0/categories"),
        ({**item, "colour": "red"}, "#/items/0/colour"),
        ({**item, "image_url": "not a url"}, "#/items/0/image_url"),
        ({**item, "title": "a\x00b"}, "#/items/0/title"),
    ):
        body = assert_problem(await upsert(bad), 422, "validation_failed")
        assert pointer in [e["pointer"] for e in body["errors"]], (bad, body)
    assert_problem(await upsert({**item, "starts_at": "2026-12-06T10:00:00Z", "ends_at": "2026-12-06T09:00:00Z"}),
                   422)
    twice = assert_problem(await upsert(item, {**item, "title": "again"}), 422)
    assert twice["errors"][0]["pointer"] == "#/items"
    assert_problem(await upsert(), 422)
    assert_problem(await upsert(items=[{**item, "id": f"i-{n}"} for n in range(1001)]), 422)
    assert_problem(await client.post("/v1/catalog/items/delete", headers=admin, json={"item_ids": []}), 422)
    nul = await client.get("/v1/catalog/items/a%00b", headers=admin)
    assert_problem(nul, 400, "invalid_request")


# ---- scopes --------------------------------------------------------------------------------------


async def test_scopes_are_enforced(client, tenant, db):
    reader = await scoped_key(db, tenant, "recommend:read")
    writer = await scoped_key(db, tenant, "recommend:write")
    other = await scoped_key(db, tenant, "profiles:read", "loyalty:read", "messaging:read")

    assert (await client.post("/v1/catalog/items", headers=writer, json={"items": SHOP})).status_code == 200
    assert (await client.get("/v1/catalog/items/shoe-a", headers=reader)).status_code == 200
    assert (await client.get("/v1/recommendations", headers=reader)).status_code == 200
    assert (await client.get("/v1/recommendations/settings", headers=reader)).status_code == 200

    for method, path, body in (
        ("GET", "/v1/recommendations", None),
        ("GET", "/v1/catalog/items", None),
        ("GET", "/v1/catalog/items/shoe-a", None),
        ("GET", "/v1/catalog/items/shoe-a/similar", None),
        ("GET", "/v1/recommendations/stats", None),
        ("GET", "/v1/recommendations/models/runs/latest", None),
    ):
        problem = assert_problem(await client.request(method, path, headers=other, json=body), 403,
                                 "insufficient_scope")
        assert problem["required_scope"] == "recommend:read"
    for method, path, body in (
        ("POST", "/v1/catalog/items", {"items": SHOP}),
        ("DELETE", "/v1/catalog/items/shoe-a", None),
        ("POST", "/v1/catalog/items/delete", {"item_ids": ["shoe-a"]}),
        ("POST", "/v1/recommendations/feedback",
         {"feedback": [{"event_id": "e", "anonymous_id": "a", "item_id": "shoe-a", "kind": "view"}]}),
        ("POST", "/v1/recommendations/models/retrain", {}),
        ("PUT", "/v1/recommendations/settings", {}),
    ):
        problem = assert_problem(await client.request(method, path, headers=reader, json=body), 403,
                                 "insufficient_scope")
        assert problem["required_scope"] == "recommend:write"
    assert_problem(await client.get("/v1/recommendations", headers=bearer(tenant.write_key)), 403,
                   "secret_key_required")
    assert_problem(await client.get("/v1/recommendations"), 401, "missing_api_key")
    assert (await client.get("/v1/catalog/items/shoe-a", headers=reader)).status_code == 200  # nothing was deleted


# ---- recommendations -----------------------------------------------------------------------------


async def test_an_unknown_person_gets_popular_items_with_their_catalogue_entries(client, admin, recommend_clock):
    await stock_shop(client, admin)
    await crowd(client, admin, recommend_clock)
    unknown_email = f"email:nobody-{uuid.uuid4().hex[:6]}@example.com"

    async def popular_first():  # popularity is refreshed in the background once feedback arrived
        r = await client.get("/v1/recommendations", headers=admin, params={"count": 5})
        assert r.status_code == 200, r.text
        return r.json() if r.json()["items"] and r.json()["items"][0]["item_id"] == "shoe-a" else None

    body = await wait_until(popular_first, timeout=10, message="shoe-a to lead the popular items")
    assert body["cold_start"] is True and body["intent_locked"] is False and body["recommendation_id"]
    assert 0 < len(body["items"]) <= 5 and len(set(ids(body))) == len(body["items"])
    assert body["items"][0]["item_id"] == "shoe-a"  # bought by everyone
    first = body["items"][0]
    assert first["recommender"] in ("popular", "trending") and first["explanation"]
    assert first["item"]["title"] == "Pegasus 40" and first["item"]["price"] == 159.0
    scores = [i["score"] for i in body["items"]]
    assert scores == sorted(scores, reverse=True)

    bare = await client.get("/v1/recommendations", headers=admin, params={"count": 5, "include_items": False})
    assert all(i["item"] is None for i in bare.json()["items"])
    posted = await client.post("/v1/recommendations", headers=admin, json={"count": 5, "scenario": "email"})
    assert posted.status_code == 200, posted.text
    assert posted.json()["cold_start"] is True and posted.json()["items"][0]["item_id"] == "shoe-a"
    assert posted.json()["recommendation_id"] != body["recommendation_id"]

    # an identifier nobody has is served as an unknown person, not refused
    stranger = await client.get("/v1/recommendations", headers=admin, params={"profile": unknown_email})
    assert stranger.status_code == 200, stranger.text
    assert stranger.json()["cold_start"] is True and stranger.json()["items"]
    assert_problem(await client.get("/v1/recommendations", headers=admin, params={"profile": "rachel"}), 400,
                   "invalid_identifier")


async def test_filters_restrict_the_candidates(client, admin, recommend_clock):
    await stock_shop(client, admin)
    await crowd(client, admin, recommend_clock)

    async def recommend(**params) -> list[dict]:
        r = await client.get("/v1/recommendations", headers=admin, params={"count": 50, **params})
        assert r.status_code == 200, r.text
        return r.json()["items"]

    shoes = await recommend(category="running_shoes")
    assert shoes and all("running_shoes" in i["item"]["categories"] for i in shoes)
    no_shoes = await recommend(exclude_category=["running_shoes", "yoga"])
    assert no_shoes and all({"running_shoes", "yoga"}.isdisjoint(i["item"]["categories"]) for i in no_shoes)
    cheap = await recommend(max_price="159.00", currency="EUR", kind="product")
    assert cheap and all(i["item"]["price"] <= 159 for i in cheap)
    assert "shoe-a" in [i["item_id"] for i in cheap] and "watch-1" not in [i["item_id"] for i in cheap]
    dear = await recommend(min_price=100, max_price=200, currency="EUR")
    assert {i["item_id"] for i in dear} <= {"shoe-a", "shoe-b", "shoe-c"}
    in_stock = await recommend(in_stock=True, category="running_shoes")
    assert "shoe-c" not in [i["item_id"] for i in in_stock]
    excluded = await recommend(exclude=["shoe-a", "socks-1"])
    assert {"shoe-a", "socks-1"}.isdisjoint(i["item_id"] for i in excluded)
    activities = await recommend(kind="activity")
    assert [i["item_id"] for i in activities] in ([], ["marathon"])

    posted = await client.post("/v1/recommendations", headers=admin, json={
        "count": 50, "category": "running_shoes", "exclude": ["shoe-a"], "max_price": 179.99, "currency": "EUR"})
    assert posted.status_code == 200, posted.text
    assert {i["item_id"] for i in posted.json()["items"]} <= {"shoe-b", "shoe-c"}


async def test_recommendation_requests_are_validated(client, admin):
    for params, name in (
        ({"count": 0}, "count"),
        ({"count": 101}, "count"),
        ({"scenario": "checkout"}, "scenario"),
        ({"kind": "car"}, "kind"),
        ({"max_price": 10}, "max_price"),
        ({"max_price": "10.001", "currency": "EUR"}, "max_price"),
        ({"min_price": -1, "currency": "EUR"}, "min_price"),
    ):
        body = assert_problem(await client.get("/v1/recommendations", headers=admin, params=params), 400,
                              "invalid_request")
        assert any(e["pointer"].startswith(f"query/{name}") for e in body["errors"]), body
    assert_problem(await client.get("/v1/recommendations", headers=admin, params={"scenario": "product_page"}), 400)
    assert_problem(await client.get("/v1/recommendations", headers=admin,
                                    params={"min_price": 20, "max_price": 10, "currency": "EUR"}), 400)
    for body, pointer in (
        ({"scenario": "product_page"}, "#/"),
        ({"count": "many"}, "#/count"),
        ({"colour": "red"}, "#/colour"),
        ({"context_items": ["x" * 129]}, "#/context_items/0"),
    ):
        problem = assert_problem(await client.post("/v1/recommendations", headers=admin, json=body), 422,
                                 "validation_failed")
        assert pointer in [e["pointer"] for e in problem["errors"]], problem


async def test_feedback_counts_a_repeated_event_once_and_is_validated(client, admin, recommend_clock):
    await stock_shop(client, admin)
    batch = [event("view", "shoe-a", clock=recommend_clock, anon="anon-1"),
             event("add_to_cart", "shoe-a", clock=recommend_clock, anon="anon-1", quantity=1),
             event("dismiss", "mat-1", clock=recommend_clock, anon="anon-1", weight=-3)]
    assert await send(client, admin, *batch) == {"accepted": 3, "duplicates": 0}
    assert await send(client, admin, *batch, event("view", "shoe-b", clock=recommend_clock, anon="anon-1")) == {
        "accepted": 1, "duplicates": 3}

    async def refused(*entries, status=422):
        return assert_problem(await client.post("/v1/recommendations/feedback", headers=admin,
                                                json={"feedback": list(entries)}), status)

    ok = {"event_id": "e-1", "anonymous_id": "anon-1", "item_id": "shoe-a", "kind": "view"}
    assert (await refused({**ok, "anonymous_id": None}))["errors"][0]["pointer"] == "#/feedback/0"
    assert (await refused(ok, {**ok, "kind": "like"}))["errors"][0]["pointer"] == "#/feedback/1/kind"
    assert (await refused({**ok, "event_id": ""}))["errors"][0]["pointer"] == "#/feedback/0/event_id"
    assert (await refused({**ok, "occurred_at": "2026-11-11T10:00:00"}))["errors"][0]["pointer"] == (
        "#/feedback/0/occurred_at")
    assert (await refused({**ok, "quantity": 0}))["errors"][0]["pointer"] == "#/feedback/0/quantity"
    await refused()
    await refused(*[{**ok, "event_id": f"e-{n}"} for n in range(1001)])
    unknown = await refused(ok, {**ok, "profile": "email:nobody@example.com"}, status=404)
    assert unknown["code"] == "profile_not_found" and unknown["errors"][0]["pointer"] == "#/feedback/1/profile"
    assert (await refused({**ok, "profile": "nobody"}, status=400))["code"] == "invalid_identifier"


async def test_what_a_person_just_bought_is_not_recommended_to_them(client, admin, people, recommend_clock):
    await stock_shop(client, admin)
    await crowd(client, admin, recommend_clock)
    rachel_id, rachel = people()

    before = await client.get("/v1/recommendations", headers=admin, params={"profile": rachel, "count": 50})
    assert "shoe-a" in ids(before.json())
    # feedback names her by email; the gateway resolves it to her profile id
    await send(client, admin, event("purchase", "shoe-a", clock=recommend_clock, profile=rachel, quantity=1))

    for who in (rachel, rachel_id):
        after = await client.get("/v1/recommendations", headers=admin, params={"profile": who, "count": 50})
        assert after.status_code == 200, after.text
        assert after.json()["cold_start"] is False
        assert "shoe-a" not in ids(after.json()), after.json()
    # other people still see it
    anyone = await client.get("/v1/recommendations", headers=admin, params={"count": 50})
    assert "shoe-a" in ids(anyone.json())


async def test_items_similar_to_what_a_person_viewed_follow_their_feedback(client, admin, people, recommend_clock):
    await stock_shop(client, admin)
    await crowd(client, admin, recommend_clock)
    trained = await client.post("/v1/recommendations/models/retrain", headers=admin, json={"wait": True})
    assert trained.status_code == 200, trained.text
    assert trained.json()["status"] == "succeeded", trained.json()

    similar = await client.get("/v1/catalog/items/shoe-a/similar", headers=admin, params={"count": 3})
    assert similar.status_code == 200, similar.text
    assert similar.json()["items"][0]["item_id"] == "shoe-b"  # viewed together by everyone
    assert "shoe-a" not in ids(similar.json())
    assert similar.json()["items"][0]["item"]["title"] == "Vomero 17"
    in_stock = await client.get("/v1/catalog/items/shoe-a/similar", headers=admin,
                                params={"in_stock": True, "count": 10, "include_items": False})
    assert "shoe-c" not in ids(in_stock.json()) and all(i["item"] is None for i in in_stock.json()["items"])
    socks_only = await client.get("/v1/catalog/items/shoe-a/similar", headers=admin, params={"category": "socks"})
    assert set(ids(socks_only.json())) <= {"socks-1"}

    page = await client.get("/v1/recommendations", headers=admin,
                            params={"scenario": "product_page", "context_item": "shoe-a", "count": 3})
    assert page.status_code == 200, page.text
    assert "shoe-b" in ids(page.json()) and "shoe-a" not in ids(page.json())

    _, rachel = people()
    await send(client, admin, event("view", "shoe-a", clock=recommend_clock, profile=rachel))
    home = await client.post("/v1/recommendations", headers=admin, json={"profile": rachel, "count": 4})
    assert home.status_code == 200, home.text
    assert home.json()["cold_start"] is False
    assert "shoe-b" in ids(home.json()), home.json()


async def test_intent_locks_after_repeated_views_with_the_item_in_the_cart(client, admin, people, recommend_clock):
    await stock_shop(client, admin)
    _, rachel = people()
    nothing = await client.get("/v1/recommendations/intent", headers=admin, params={"profile": rachel})
    assert nothing.status_code == 200, nothing.text
    assert nothing.json()["locked"] is False and nothing.json()["locked_at"] is None

    minutes = [timedelta(minutes=m) for m in (30, 25, 20, 15)]
    await send(client, admin, event("add_to_cart", "shoe-a", clock=recommend_clock, profile=rachel, ago=minutes[0]),
               *[event("view", "shoe-a", clock=recommend_clock, profile=rachel, ago=m) for m in minutes[1:]])
    r = await client.get("/v1/recommendations/intent", headers=admin, params={"profile": rachel})
    intent = r.json()
    assert intent["locked"] is True, intent
    assert (intent["item_id"], intent["category"]) == ("shoe-a", "running_shoes")
    assert 0 < intent["score"] <= 1 and intent["locked_at"] and intent["expires_at"]
    recs = await client.get("/v1/recommendations", headers=admin, params={"profile": rachel})
    assert recs.json()["intent_locked"] is True

    anonymous = await client.get("/v1/recommendations/intent", headers=admin, params={"anonymous_id": "anon-x"})
    assert anonymous.json()["locked"] is False
    assert_problem(await client.get("/v1/recommendations/intent", headers=admin), 400, "invalid_request")
    assert_problem(await client.get("/v1/recommendations/intent", headers=admin,
                                    params={"profile": "email:nobody@example.com"}), 404)


async def test_retrain_is_idempotent_and_runs_are_readable(client, admin, recommend_clock):
    assert_problem(await client.get("/v1/recommendations/models/runs/latest", headers=admin), 404)
    await stock_shop(client, admin)
    await crowd(client, admin, recommend_clock)

    key = {"Idempotency-Key": f"retrain-{uuid.uuid4()}"}
    first = await client.post("/v1/recommendations/models/retrain", headers={**admin, **key})
    retry = await client.post("/v1/recommendations/models/retrain", headers={**admin, **key}, json={"wait": False})
    assert first.status_code == 202, first.text
    assert retry.status_code == 202 and retry.json()["id"] == first.json()["id"]
    run = first.json()
    assert run["status"] in ("queued", "running", "succeeded") and run["error"] is None

    async def finished():
        r = await client.get(f"/v1/recommendations/models/runs/{run['id']}", headers=admin)
        assert r.status_code == 200, r.text
        return r.json() if r.json()["status"] in ("succeeded", "failed") else None

    done = await wait_until(finished, timeout=60, interval=0.2, message="the training run to finish")
    assert done["status"] == "succeeded" and done["error"] is None, done
    assert done["item_count"] >= 5 and done["interaction_count"] >= 8
    assert done["started_at"] <= done["finished_at"]
    assert all(isinstance(v, float) for v in done["metrics"].values())
    latest = await client.get("/v1/recommendations/models/runs/latest", headers=admin)
    assert latest.json()["id"] == run["id"]
    assert_problem(await client.get(f"/v1/recommendations/models/runs/{uuid.uuid4()}", headers=admin), 404)
    assert_problem(await client.get("/v1/recommendations/models/runs/not%20an%20id", headers=admin), 400)

    waited = await client.post("/v1/recommendations/models/retrain", headers=admin, json={"wait": True})
    assert waited.status_code == 200, waited.text
    assert waited.json()["status"] == "succeeded" and waited.json()["id"] != run["id"]
    assert_problem(await client.post("/v1/recommendations/models/retrain", headers=admin, json={"wait": "soon"}),
                   422)


async def test_settings_round_trip_with_defaults_filled_in(client, admin):
    r = await client.get("/v1/recommendations/settings", headers=admin)
    assert r.status_code == 200, r.text
    defaults = r.json()
    assert defaults["weights"] == {"view": 1, "add_to_cart": 3, "remove_from_cart": -1, "purchase": 5, "click": 2,
                                   "dismiss": -5}
    assert (defaults["intent_min_views"], defaults["intent_window_hours"], defaults["intent_cart_minutes"],
            defaults["intent_ttl_hours"], defaults["exclude_purchased_days"], defaults["replenish_lead_days"],
            defaults["trending_half_life_hours"], defaults["dismiss_days"], defaults["attribution_days"]) == (
        3, 168, 10, 72, 180, 3, 24, 30, 7)
    assert defaults["complements"] == {}

    put = await client.put("/v1/recommendations/settings", headers=admin, json={
        "weights": {"purchase": 8, "dismiss": -10}, "intent_min_views": 2,
        "complements": {"running_shoes": ["socks", "watches"]}, "dismiss_days": 60})
    assert put.status_code == 200, put.text
    now = (await client.get("/v1/recommendations/settings", headers=admin)).json()
    assert now == put.json()
    assert (now["weights"]["purchase"], now["weights"]["dismiss"], now["weights"]["view"]) == (8, -10, 1)
    assert (now["intent_min_views"], now["dismiss_days"], now["intent_cart_minutes"]) == (2, 60, 10)
    assert now["complements"] == {"running_shoes": ["socks", "watches"]} and now["updated_at"]

    # a replace: what is left out goes back to its default
    reset = await client.put("/v1/recommendations/settings", headers=admin, json={})
    assert reset.json()["intent_min_views"] == 3 and reset.json()["complements"] == {}
    for body, pointer in (
        ({"dismiss_days": -1}, "#/dismiss_days"),
        ({"weights": {"view": 1e9}}, "#/weights/view"),
        ({"weights": {"love": 2}}, "#/weights/love"),
        ({"complements": {"running_shoes": [""]}}, "#/complements/running_shoes/0"),
    ):
        problem = assert_problem(await client.put("/v1/recommendations/settings", headers=admin, json=body), 422)
        assert pointer in [e["pointer"] for e in problem["errors"]], problem


async def test_clicks_on_served_recommendations_show_in_the_stats(client, admin, recommend_clock):
    await stock_shop(client, admin)
    await crowd(client, admin, recommend_clock)
    served = (await client.get("/v1/recommendations", headers=admin,
                               params={"anonymous_id": "anon-stats", "count": 3})).json()
    assert served["items"]
    clicked = served["items"][0]["item_id"]

    async def home_rows():
        r = await client.get("/v1/recommendations/stats", headers=admin)
        assert r.status_code == 200, r.text
        return [s for s in r.json()["stats"] if s["scenario"] == "home"]

    # people click what they have been shown: once the impressions are recorded
    shown = await wait_until(home_rows, timeout=10, message="the impressions in the stats")
    assert [(s["recommender"], s["impressions"], s["clicks"]) for s in shown if s["recommender"] == "*"] == [
        ("*", len(served["items"]), 0)]
    await send(client, admin, event("click", clicked, clock=recommend_clock, anon="anon-stats",
                                    recommendation_id=served["recommendation_id"]))

    async def home_total():
        rows = [s for s in await home_rows() if s["recommender"] == "*"]
        return rows[0] if rows and rows[0]["clicks"] >= 1 else None

    total = await wait_until(home_total, timeout=10, message="the click in the stats")
    assert total["impressions"] >= len(served["items"]) and total["clicks"] == 1
    assert total["click_through_rate"] == pytest.approx(1 / total["impressions"])
    by_recommender = [s for s in (await client.get("/v1/recommendations/stats", headers=admin)).json()["stats"]
                      if s["scenario"] == "home" and s["recommender"] == served["items"][0]["recommender"]]
    assert by_recommender and by_recommender[0]["clicks"] == 1

    now = recommend_clock.now()
    empty = await client.get("/v1/recommendations/stats", headers=admin, params={
        "since": (now + timedelta(days=1)).isoformat(), "until": (now + timedelta(days=2)).isoformat()})
    assert empty.status_code == 200 and all(s["impressions"] == 0 for s in empty.json()["stats"])
    assert_problem(await client.get("/v1/recommendations/stats", headers=admin, params={
        "since": now.isoformat(), "until": now.isoformat()}), 400, "invalid_request")
    assert_problem(await client.get("/v1/recommendations/stats", headers=admin, params={"since": "yesterday"}), 400)


async def test_openapi_documents_the_recommend_api(client):
    spec = (await client.get("/openapi.json")).json()
    assert {"catalog", "recommendations"} <= {t["name"] for t in spec["tags"]}
    for path in ("/v1/catalog/items", "/v1/catalog/items/{item_id}", "/v1/catalog/items/{item_id}/similar",
                 "/v1/catalog/items/delete", "/v1/recommendations", "/v1/recommendations/feedback",
                 "/v1/recommendations/intent", "/v1/recommendations/models/retrain",
                 "/v1/recommendations/models/runs/latest", "/v1/recommendations/models/runs/{run_id}",
                 "/v1/recommendations/settings", "/v1/recommendations/stats"):
        assert path in spec["paths"], path
    schemas = spec["components"]["schemas"]
    assert schemas["ItemWrite"]["examples"][0]["price"] == 159.0
    assert "decimal major units" in schemas["ItemWrite"]["properties"]["price"]["description"]
    assert "recommend:read" in spec["info"]["description"]
