"""The catalogue, settings, training runs, online stats and the bus: behaviour events and merges or
erasures from identity, clicks from messaging, intent.locked from the sweep, recommendation events."""

from __future__ import annotations

import uuid
from datetime import timedelta

import grpc
import orjson
import pytest

from mcloud.events.v1 import event_pb2, identity_events_pb2, messaging_events_pb2
from mcloud.events.v1 import recommend_events_pb2 as rev
from mcloud.recommend.v1 import recommend_pb2 as pb
from mcloud_common.bus import publish, streams_of
from mcloud_common.db import create_pool
from mcloud_common.ids import new_id_str
from mcloud_common.timestamps import to_timestamp
from recommend.background.consumer import make_consumer
from recommend.serving import Serving
from recommend.settings import RecommendSettings
from recommend.testing import feedback, item, wait_published

SHARDS = 4
VIEW, CART, BUY, CLICK = (pb.FEEDBACK_KIND_VIEW, pb.FEEDBACK_KIND_ADD_TO_CART, pb.FEEDBACK_KIND_PURCHASE,
                          pb.FEEDBACK_KIND_CLICK)


async def expect_invalid(call, field: str) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await call
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert field in str(err.value.trailing_metadata()) or field in (err.value.details() or ""), err.value


async def test_catalogue_upsert_read_page_and_delete(api):
    items = [item(f"sku-{n:02d}", ["shoes"] if n % 2 else ["socks"], price=1000 + n) for n in range(7)]
    assert (await api.call("UpsertItems", pb.UpsertItemsRequest(items=items))).upserted == 7
    again = item("sku-01", ["shoes", "trail"], title="Trail shoe", price=2000, tags=("trail",))
    await api.call("UpsertItems", pb.UpsertItemsRequest(items=[again]))
    got = (await api.call("GetItem", pb.GetItemRequest(item_id="sku-01"))).item
    assert got.title == "Trail shoe" and list(got.categories) == ["shoes", "trail"] and got.price_minor == 2000

    page = await api.call("ListItems", pb.ListItemsRequest(category="shoes", page_size=2))
    seen = [i.id for i in page.items]
    while page.next_page_token:
        page = await api.call("ListItems", pb.ListItemsRequest(category="shoes", page_size=2,
                                                                page_token=page.next_page_token))
        seen += [i.id for i in page.items]
    assert seen == ["sku-01", "sku-03", "sku-05"]

    assert (await api.call("DeleteItems", pb.DeleteItemsRequest(item_ids=["sku-01", "nope"]))).deleted == 1
    assert (await api.call("DeleteItems", pb.DeleteItemsRequest(item_ids=["sku-01"]))).deleted == 0
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await api.call("GetItem", pb.GetItemRequest(item_id="sku-01"))
    assert err.value.code() == grpc.StatusCode.NOT_FOUND
    r = await api.call("Recommend", pb.RecommendRequest(count=20))
    assert "sku-01" not in [i.item_id for i in r.items] and len(r.items) == 6


async def test_catalogue_rejects_bad_items(api):
    await expect_invalid(api.call("UpsertItems", pb.UpsertItemsRequest(items=[item("a", []), item("a", [])])),
                         "items[1].id")
    await expect_invalid(api.call("UpsertItems", pb.UpsertItemsRequest(
        items=[pb.Item(id="b", price_minor=100, currency="euro")])), "items[0].currency")
    await expect_invalid(api.call("UpsertItems", pb.UpsertItemsRequest(
        items=[pb.Item(id="c", attributes_json="[1]")])), "items[0].attributes_json")
    await expect_invalid(api.call("UpsertItems", pb.UpsertItemsRequest()), "items")


async def test_settings_defaults_update_and_validation(api):
    s = (await api.call("GetRecommendSettings", pb.GetRecommendSettingsRequest())).settings
    assert s.intent_min_views == 3 and s.intent_cart_minutes == 10 and s.weights.purchase == 5
    new = pb.RecommendSettings(weights=pb.FeedbackWeights(purchase=8), intent_min_views=4,
                               complements=[pb.CategoryComplements(category="shoes", complements=["socks"])])
    a = (await api.call("UpdateRecommendSettings", pb.UpdateRecommendSettingsRequest(settings=new))).settings
    b = (await api.call("UpdateRecommendSettings", pb.UpdateRecommendSettingsRequest(settings=new))).settings
    assert a.weights.purchase == 8 and a.weights.view == 1 and a.intent_min_views == 4
    assert a.updated_at == b.updated_at  # a retry changes nothing
    await expect_invalid(api.call("UpdateRecommendSettings", pb.UpdateRecommendSettingsRequest(
        settings=pb.RecommendSettings(weights=pb.FeedbackWeights(dismiss=3)))), "weights.dismiss")
    await expect_invalid(api.call("UpdateRecommendSettings", pb.UpdateRecommendSettingsRequest(
        settings=pb.RecommendSettings(complements=[pb.CategoryComplements(category="x")]))), "complements[0]")


async def test_training_runs_are_idempotent_and_report_metrics(shop, clock):
    fb = []
    for n in range(30):
        p = str(uuid.uuid4())
        fb += [feedback(p, "pegasus-40", BUY, clock.now()), feedback(p, "run-socks", BUY, clock.now()),
               feedback(p, "gel-pack" if n % 2 else "forerunner-265", VIEW, clock.now())]
    await shop.call("RecordFeedback", pb.RecordFeedbackRequest(feedback=fb))
    first = (await shop.call("RetrainModel", pb.RetrainModelRequest(wait=True, idempotency_key="k1"))).run
    assert first.status == pb.TRAINING_STATUS_SUCCEEDED and first.interaction_count == 90
    assert first.item_count == 14
    names = {m.name for m in first.metrics}
    assert {"precision@10", "recall@10", "popular_precision@10", "seconds"} <= names
    again = (await shop.call("RetrainModel", pb.RetrainModelRequest(idempotency_key="k1"))).run
    assert again.id == first.id
    latest = (await shop.call("GetTrainingRun", pb.GetTrainingRunRequest())).run
    assert latest.id == first.id
    with pytest.raises(grpc.aio.AioRpcError) as bad:
        await shop.call("GetTrainingRun", pb.GetTrainingRunRequest(run_id="not-a-run"))
    assert bad.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    similar = await shop.call("GetSimilarItems", pb.GetSimilarItemsRequest(item_id="pegasus-40", count=2))
    assert similar.items[0].item_id == "run-socks"  # bought together by everyone


async def test_clicks_and_conversions_per_scenario_and_recommender(shop, clock, redis):
    me = str(uuid.uuid4())
    await shop.call("RecordFeedback", pb.RecordFeedbackRequest(feedback=[feedback(me, "pegasus-40", VIEW)]))
    served = await shop.call("Recommend", pb.RecommendRequest(profile_id=me, count=4))
    clicked = served.items[1]
    click = feedback(me, clicked.item_id, CLICK, recommendation_id=served.recommendation_id)
    await shop.call("RecordFeedback", pb.RecordFeedbackRequest(feedback=[click]))
    retry = await shop.call("RecordFeedback", pb.RecordFeedbackRequest(feedback=[click]))
    assert retry.accepted == 0 and retry.duplicates == 1
    await shop.call("RecordFeedback", pb.RecordFeedbackRequest(feedback=[feedback(me, clicked.item_id, BUY)]))
    stats = (await shop.call("GetRecommendationStats", pb.GetRecommendationStatsRequest())).stats
    rows = {(s.scenario, s.recommender): s for s in stats}
    row = rows[("home", clicked.recommender)]
    assert row.clicks == 1 and row.conversions == 1 and row.conversion_rate == 1.0
    total = rows[("home", "*")]
    assert total.impressions == 4 and total.clicks == 1 and total.click_through_rate == 0.25

    assert await wait_published(redis, shop.tenant, "recommendation.served")
    [ev] = await wait_published(redis, shop.tenant, "recommendation.clicked")
    payload = rev.RecommendationClicked()
    ev.payload.Unpack(payload)
    assert payload.position == 1 and payload.item_id == clicked.item_id and payload.scenario == "home"


@pytest.fixture
async def bus(recommend_db, redis, clock, recommend):
    """send(*events) puts identity/messaging events on the bus and a fresh consumer applies them."""
    pool = await create_pool(recommend_db)
    group = f"recommend-test-{uuid.uuid4().hex[:8]}"
    for producer in ("identity", "messaging"):
        for stream in streams_of(producer, SHARDS):
            await redis.xgroup_create(stream, group, id="$", mkstream=True)
    settings = RecommendSettings(database_url=recommend_db, redis_url="redis://x", stream_shards=SHARDS)
    consumer = make_consumer(pool, redis, Serving(pool, redis, clock, settings, None), SHARDS, group=group)
    consumer.block_ms = 0

    async def send(producer: str, *events: event_pb2.Event) -> None:
        await publish(redis, events, producer, SHARDS)
        while await consumer.run_once():
            pass

    yield send
    await pool.close()


def track(tenant: str, profile_id: str, name: str, props: dict, clock, anonymous_id: str = "") -> event_pb2.Event:
    return event_pb2.Event(id=new_id_str(), tenant_id=tenant, type="track", name=name, profile_id=profile_id,
                           anonymous_id=anonymous_id, properties_json=orjson.dumps(props).decode(),
                           occurred_at=to_timestamp(clock.now()))


async def test_a_storefront_knowing_only_the_device_id_gets_the_profiles_recommendations(shop, bus, clock):
    t, profile, device = shop.tenant, str(uuid.uuid4()), f"device-{uuid.uuid4()}"
    cold = await shop.call("Recommend", pb.RecommendRequest(anonymous_id=device, count=4))
    assert cold.cold_start
    await bus("identity", track(t, profile, "Product Viewed", {"product_id": "ghost-15"}, clock, anonymous_id=device))
    warm = await shop.call("Recommend", pb.RecommendRequest(anonymous_id=device, count=4))  # the cache was dropped
    assert not warm.cold_start and warm.items[0].recommender == "session"
    assert "Ghost 15" in warm.items[0].explanation


async def test_behaviour_events_feed_recommendations_merges_and_erasure(shop, bus, clock, db):
    t = shop.tenant
    anon_profile, known = str(uuid.uuid4()), str(uuid.uuid4())
    await bus("identity", *(track(t, anon_profile, "Product Viewed", {"product_id": "pegasus-40"}, clock)
                            for _ in range(3)),
              track(t, anon_profile, "Product Added", {"product_id": "pegasus-40"}, clock),
              track(t, known, "Order Completed", {"order_id": "o1", "products": [
                  {"product_id": "gel-pack", "quantity": 2}, {"product_id": "run-tee"}]}, clock),
              event_pb2.Event(id=new_id_str(), tenant_id=t, type="page", profile_id=known,
                              properties_json='{"product_id": "yoga-mat"}', occurred_at=to_timestamp(clock.now())))
    kinds = {(r["person"], r["item_id"], r["kind"]) for r in await db.fetch(
        "SELECT person, item_id, kind FROM interactions WHERE tenant_id = $1", uuid.UUID(t))}
    assert (known, "gel-pack", BUY) in kinds and (known, "run-tee", BUY) in kinds and (known, "yoga-mat", VIEW) in kinds
    assert await db.fetchval("SELECT count(*) FROM carts WHERE person = $1", anon_profile) == 1

    # she signs up: identity merges her anonymous profile into the known one
    merged = identity_events_pb2.ProfileMerged(from_profile_id=anon_profile, into_profile_id=known)
    ev = event_pb2.Event(id=new_id_str(), tenant_id=t, type="profile.merged", profile_id=known)
    ev.payload.Pack(merged)
    await bus("identity", ev)
    clock.advance(timedelta(minutes=11))
    intent = (await shop.call("GetIntent", pb.GetIntentRequest(profile_id=known))).intent
    assert intent.locked and intent.item_id == "pegasus-40"  # her anonymous views and cart count
    r = await shop.call("Recommend", pb.RecommendRequest(profile_id=known, count=14))
    assert r.intent_locked and "gel-pack" not in [i.item_id for i in r.items]

    # a click in an email on a recommended item
    clicked = messaging_events_pb2.MessageClicked(item_id=r.items[0].item_id,
                                                  recommendation_id=r.recommendation_id)
    ev = event_pb2.Event(id=new_id_str(), tenant_id=t, type="message.clicked", profile_id=known,
                         occurred_at=to_timestamp(clock.now()))
    ev.payload.Pack(clicked)
    await shop.call("GetRecommendationStats", pb.GetRecommendationStatsRequest())  # flushes the served list
    await bus("messaging", ev)
    assert await db.fetchval("SELECT count(*) FROM clicks WHERE person = $1", known) == 1

    erased = identity_events_pb2.ProfileErased(profile_id=known)
    ev = event_pb2.Event(id=new_id_str(), tenant_id=t, type="profile.erased", profile_id=known)
    ev.payload.Pack(erased)
    await bus("identity", ev)
    for table in ("interactions", "carts", "intents", "clicks", "served"):
        assert await db.fetchval(f"SELECT count(*) FROM {table} WHERE person = ANY($1::text[])",
                                 [known, anon_profile]) == 0, table
    after = await shop.call("Recommend", pb.RecommendRequest(profile_id=known, count=3))
    assert after.cold_start and not after.intent_locked


@pytest.mark.with_jobs
async def test_the_sweep_locks_intent_as_cart_time_passes_and_tells_the_bus(shop, clock, redis):
    me = str(uuid.uuid4())
    fb = [feedback(me, "ghost-15", VIEW) for _ in range(3)] + [feedback(me, "ghost-15", CART)]
    await shop.call("RecordFeedback", pb.RecordFeedbackRequest(feedback=fb))
    clock.advance(timedelta(minutes=15))

    [ev] = await wait_published(redis, shop.tenant, "intent.locked")
    payload = rev.IntentLocked()
    ev.payload.Unpack(payload)
    assert payload.profile_id == me and payload.item_id == "ghost-15" and payload.category == "running_shoes"
    assert ev.profile_id == me
