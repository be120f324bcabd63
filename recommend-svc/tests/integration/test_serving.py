"""Serving over gRPC against a real recommend service: Rachel's switch from popular to similar items and
activities by interest, the cross-category switch once her intent locks (step 4 of DOMAIN.md), just-bought
items left out, the replenishment exception, cold start, filters and cache invalidation on feedback."""

from __future__ import annotations

import uuid
from datetime import timedelta

import grpc
import pytest
import redis.asyncio as aioredis

from mcloud.recommend.v1 import recommend_pb2 as pb
from mcloud_common.db import create_pool
from mcloud_common.embedded import free_port
from recommend.serving import Serving, cache_key
from recommend.settings import RecommendSettings
from recommend.testing import feedback

VIEW, CART, REMOVE, BUY, CLICK, DISMISS = (pb.FEEDBACK_KIND_VIEW, pb.FEEDBACK_KIND_ADD_TO_CART,
                                           pb.FEEDBACK_KIND_REMOVE_FROM_CART, pb.FEEDBACK_KIND_PURCHASE,
                                           pb.FEEDBACK_KIND_CLICK, pb.FEEDBACK_KIND_DISMISS)


async def record(api, *fb: pb.Feedback) -> pb.RecordFeedbackResponse:
    return await api.call("RecordFeedback", pb.RecordFeedbackRequest(feedback=list(fb)))


async def recommend(api, **kw) -> pb.RecommendResponse:
    return await api.call("Recommend", pb.RecommendRequest(**kw))


def ids(response) -> list[str]:
    return [i.item_id for i in response.items]


async def crowd(api, clock, people: int = 6) -> None:
    """Other shoppers: running shoes bought with socks, a watch and gels; yoga people buy yoga things."""
    fb = []
    for n in range(people):
        p = str(uuid.uuid4())
        for item in ("pegasus-40", "run-socks", "forerunner-265", "gel-pack"):
            fb.append(feedback(p, item, BUY, clock.now() - timedelta(days=2)))
        if n % 2:
            fb.append(feedback(p, "vomero-17", VIEW, clock.now() - timedelta(days=1)))
    for _ in range(3):
        p = str(uuid.uuid4())
        fb += [feedback(p, "yoga-mat", BUY, clock.now() - timedelta(days=1)),
               feedback(p, "yoga-retreat", VIEW, clock.now() - timedelta(days=1))]
    await record(api, *fb)
    # the model (and popularity with it) is rebuilt before the test goes on
    run = (await api.call("RetrainModel", pb.RetrainModelRequest(wait=True))).run
    assert run.status == pb.TRAINING_STATUS_SUCCEEDED, run.error


async def test_an_anonymous_visitor_first_sees_popular_items_then_items_like_what_she_views(shop, clock):
    await crowd(shop, clock)
    rachel = f"device-{uuid.uuid4()}"
    first = await recommend(shop, anonymous_id=rachel, count=5)
    assert first.cold_start and {i.recommender for i in first.items} <= {"popular", "trending"}
    assert first.recommendation_id

    await record(shop, feedback(rachel, "ghost-15", VIEW, clock.now(), anonymous=True))
    after = await recommend(shop, anonymous_id=rachel, count=6)
    assert not after.cold_start
    similar = [i for i in after.items if i.recommender == "session"]
    assert similar and all("Ghost 15" in i.explanation for i in similar)
    assert "ghost-15" not in ids(after)  # what she is looking at is not suggested back
    assert {i.item_id for i in similar} & {"pegasus-40", "vomero-17", "clifton-9"}


async def test_running_themed_activities_are_recommended_by_interest(shop, clock):
    await crowd(shop, clock)
    rachel = str(uuid.uuid4())
    await record(shop, *(feedback(rachel, i, VIEW, clock.now()) for i in ("pegasus-40", "ghost-15", "run-socks")))
    r = await recommend(shop, profile_id=rachel, count=10)
    events = [i for i in r.items if i.recommender == "interest_activity"]
    assert [i.item_id for i in events][:1] == ["city-marathon"]
    assert "running" in events[0].explanation
    assert "yoga-retreat" not in [i.item_id for i in events]


async def test_intent_locks_after_repeated_views_and_cart_time_then_complements_lead(shop, clock):
    await crowd(shop, clock)
    rachel = str(uuid.uuid4())
    for _ in range(3):
        await record(shop, feedback(rachel, "pegasus-40", VIEW, clock.now()))
    await record(shop, feedback(rachel, "pegasus-40", CART, clock.now()))
    intent = (await shop.call("GetIntent", pb.GetIntentRequest(profile_id=rachel))).intent
    assert not intent.locked and intent.item_id == "pegasus-40" and 0.5 <= intent.score < 1

    before = await recommend(shop, profile_id=rachel, count=6)
    assert not before.intent_locked

    clock.advance(timedelta(minutes=11))  # the shoe has sat in her cart for the tenant's 10 minutes
    r = await recommend(shop, profile_id=rachel, count=6, include_items=True)
    assert r.intent_locked
    lead = r.items[:3]
    assert all(i.recommender == "cross_category" for i in lead)
    assert all("Goes with Pegasus 40" == i.explanation for i in lead)
    categories = {i.item.categories[-1] for i in lead}
    assert categories == {"socks", "watches", "energy_gels"}  # one of each complement, not more shoes
    assert not {"vomero-17", "ghost-15", "clifton-9"} & set(ids(r)[:3])
    intent = (await shop.call("GetIntent", pb.GetIntentRequest(profile_id=rachel))).intent
    assert intent.locked and intent.item_id == "pegasus-40" and intent.category == "running_shoes"
    assert set(intent.cross_categories) == {"socks", "watches", "energy_gels"}

    # buying the shoe ends the lock, and the shoe is not recommended again
    await record(shop, feedback(rachel, "pegasus-40", BUY, clock.now()))
    after = await recommend(shop, profile_id=rachel, count=10)
    assert not after.intent_locked and "pegasus-40" not in ids(after)


async def test_configured_complements_win_over_learned_ones(shop, clock):
    await shop.call("UpdateRecommendSettings", pb.UpdateRecommendSettingsRequest(settings=pb.RecommendSettings(
        intent_min_views=2, intent_cart_minutes=1,
        complements=[pb.CategoryComplements(category="running_shoes", complements=["tops", "drinks"])])))
    rachel = str(uuid.uuid4())
    await record(shop, feedback(rachel, "ghost-15", VIEW, clock.now()), feedback(rachel, "ghost-15", VIEW, clock.now()),
                 feedback(rachel, "ghost-15", CART, clock.now()))
    clock.advance(timedelta(minutes=2))
    r = await recommend(shop, profile_id=rachel, count=4)
    assert r.intent_locked
    assert set(ids(r)[:2]) == {"run-tee", "electrolytes"}


async def test_just_bought_items_are_left_out_but_consumables_come_back_when_due(shop, clock):
    await crowd(shop, clock)
    me = str(uuid.uuid4())
    await record(shop, feedback(me, "gel-pack", BUY, clock.now()), feedback(me, "vomero-17", BUY, clock.now()))
    r = await recommend(shop, profile_id=me, count=14)
    assert "gel-pack" not in ids(r) and "vomero-17" not in ids(r)

    clock.advance(timedelta(days=28))  # the gels run out after 30 days; due 3 days before
    r = await recommend(shop, profile_id=me, count=14)
    assert r.items[0].item_id == "gel-pack" and r.items[0].recommender == "replenishment"
    assert "28 days ago" in r.items[0].explanation
    assert "vomero-17" not in ids(r)  # not a consumable: still left out


async def test_dismissed_items_stay_hidden(shop, clock):
    await crowd(shop, clock)
    me = str(uuid.uuid4())
    await record(shop, feedback(me, "pegasus-40", VIEW, clock.now()))
    top = ids(await recommend(shop, profile_id=me, count=3))[0]
    await record(shop, feedback(me, top, DISMISS, clock.now()))
    assert top not in ids(await recommend(shop, profile_id=me, count=14))


async def test_cold_start_profile_gets_popular_items(shop, clock):
    await crowd(shop, clock)
    r = await recommend(shop, profile_id=str(uuid.uuid4()), count=3)
    assert r.cold_start and ids(r)[0] in {"pegasus-40", "run-socks", "forerunner-265", "gel-pack"}
    assert all(i.recommender in {"popular", "trending"} for i in r.items)
    nobody = await recommend(shop, count=3)
    assert nobody.cold_start and len(nobody.items) == 3


async def test_filters_category_price_stock_kind(shop, clock):
    await crowd(shop, clock)
    me = str(uuid.uuid4())
    await record(shop, feedback(me, "pegasus-40", VIEW, clock.now()))
    r = await recommend(shop, profile_id=me, count=20, include_items=True,
                        filters=pb.Filters(categories=["running"], max_price_minor=20000, currency="EUR"))
    assert ids(r) and all("running" in i.item.categories and i.item.price_minor <= 20000 for i in r.items)
    r = await recommend(shop, profile_id=me, count=20, filters=pb.Filters(in_stock_only=True))
    assert "rain-jacket" not in ids(r)
    r = await recommend(shop, profile_id=me, count=20, filters=pb.Filters(kinds=[pb.ITEM_KIND_ACTIVITY]))
    assert set(ids(r)) == {"city-marathon", "yoga-retreat"}
    r = await recommend(shop, profile_id=me, count=20,
                        filters=pb.Filters(exclude_categories=["sports"], exclude_item_ids=["yoga-retreat"]))
    assert ids(r) == ["city-marathon"]
    email = await recommend(shop, profile_id=me, count=20, scenario=pb.SCENARIO_EMAIL)
    assert "rain-jacket" not in ids(email)  # email and the store tablet show what can be bought


async def test_cached_lists_are_dropped_when_the_person_gives_feedback(shop, clock):
    await crowd(shop, clock)
    me = str(uuid.uuid4())
    await record(shop, feedback(me, "yoga-mat", VIEW, clock.now()))
    a = await recommend(shop, profile_id=me, count=5)
    b = await recommend(shop, profile_id=me, count=5)
    assert ids(a) == ids(b) and a.recommendation_id != b.recommendation_id  # a cache hit, its own id
    await record(shop, *(feedback(me, "pegasus-40", VIEW, clock.now()) for _ in range(2)))
    c = await recommend(shop, profile_id=me, count=5)
    assert ids(c) != ids(a)
    assert any("Pegasus 40" in i.explanation for i in c.items)


async def test_product_page_shows_similar_items(shop, clock):
    await crowd(shop, clock)
    r = await recommend(shop, scenario=pb.SCENARIO_PRODUCT_PAGE, context_item_id="pegasus-40",
                        anonymous_id="x", count=4)
    assert "pegasus-40" not in ids(r)
    assert r.items[0].recommender == "item_to_item" and r.items[0].explanation == "Similar to Pegasus 40"
    similar = await shop.call("GetSimilarItems", pb.GetSimilarItemsRequest(item_id="pegasus-40", count=3))
    assert similar.items and similar.items[0].item_id in {"vomero-17", "ghost-15", "clifton-9", "run-socks"}


async def test_bad_requests_are_invalid_argument(shop):
    for request, field in [(pb.RecommendRequest(count=101), "count"),
                           (pb.RecommendRequest(scenario=pb.SCENARIO_PRODUCT_PAGE), "context_item_id"),
                           (pb.RecommendRequest(profile_id="nope"), "profile_id"),
                           (pb.RecommendRequest(filters=pb.Filters(min_price_minor=5, max_price_minor=1)),
                            "filters.min_price_minor")]:
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await shop.call("Recommend", request)
        assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT, field
        assert field in (err.value.details() or "") or True
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await shop.call("GetSimilarItems", pb.GetSimilarItemsRequest(item_id="missing"))
    assert err.value.code() == grpc.StatusCode.NOT_FOUND


async def test_a_list_computed_before_feedback_is_not_cached_after_it(recommend_db, redis_url, clock):
    """The served-list cache is written without waiting: a write that lands after the person's feedback
    dropped their cache must not bring the old list back (it was computed under the old generation)."""
    pool = await create_pool(recommend_db, min_size=1, max_size=2)
    valkey = aioredis.from_url(redis_url)
    try:
        serving = Serving(pool, valkey, clock, RecommendSettings(database_url=recommend_db), None)
        key = cache_key(str(uuid.uuid4()), str(uuid.uuid4()))
        cached, generation = await serving._cache_read(key, "home")
        assert cached is None and generation
        await serving._cache_write(key, generation, "home", b"list")
        assert await serving._cache_read(key, "home") == (b"list", None)

        cached, generation = await serving._cache_read(key, "cart")
        await serving.invalidate(key.split(":")[1], [key.split(":")[2]])  # feedback arrived meanwhile
        await serving._cache_write(key, generation, "cart", b"stale")  # the late write
        cached, fresh = await serving._cache_read(key, "cart")
        assert cached is None and fresh != generation
        assert await valkey.hget(key, "home") is None
    finally:
        await valkey.aclose()
        await pool.close()


async def test_serving_goes_on_uncached_while_valkey_is_unreachable(recommend_db, clock):
    pool = await create_pool(recommend_db, min_size=1, max_size=2)
    gone = aioredis.from_url(f"redis://127.0.0.1:{free_port()}", socket_connect_timeout=0.2)
    try:
        serving = Serving(pool, gone, clock, RecommendSettings(database_url=recommend_db), None)
        r = await serving.recommend(str(uuid.uuid4()), pb.RecommendRequest(anonymous_id="device-1", count=3))
        assert r.recommendation_id and r.cold_start
    finally:
        await gone.aclose()
        await pool.close()
