"""Revenue attribution and the channel report through the real service (PostgreSQL, Valkey streams):
an order on identity's stream is credited to the message the person last clicked within the window
(once, however often the event or the order is replayed), not after the window, a click beats a
later open, costs come from the channel configuration, and bad windows and settings are refused."""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta

import grpc
import orjson
import pytest

from mcloud.events.v1 import event_pb2
from mcloud.messaging.v1 import messaging_pb2 as pb
from mcloud_common.ids import new_id_str
from mcloud_common.timestamps import to_timestamp
from messaging.domain.tracking import Links
from messaging.settings import MessagingSettings

pytestmark = pytest.mark.without_jobs


def links() -> Links:
    settings = MessagingSettings(database_url="postgresql://x/y", redis_url="redis://x")
    return Links(settings.tracking_secret.get_secret_value().encode(), settings.public_url)


def token_of(url: str) -> str:
    return url.rsplit("/", 1)[1].removesuffix(".gif")


async def sent_message(db, tenant: str, profile_id: str, at: datetime, *, channel: str = "email",
                       journey_id: str = "journey-1") -> str:
    """A message as the senders leave it once the provider accepted it."""
    message_id = str(uuid.uuid4())
    await db.execute(
        "INSERT INTO messages (tenant_id, id, profile_id, requested_channel, channel, template_id, status, "
        "idempotency_key, journey_id, address, due_at, queued_at, sent_at, attempts, provider) "
        "VALUES ($1, $2, $3, $4, $4, $5, 'sent', $6, $7, 'r@example.com', $8, $8, $8, 1, 'log')",
        tenant, message_id, profile_id, channel, str(uuid.uuid4()), f"key-{message_id}", journey_id, at)
    return message_id


async def click(api, message_id: str) -> None:
    url = links().click(api.tenant, message_id, "https://shop.example.com/p/shoe-1")
    await api.call("RecordMessageEvent", pb.RecordMessageEventRequest(tracking_token=token_of(url)))


async def open_(api, message_id: str) -> None:
    url = links().open_pixel(api.tenant, message_id)
    await api.call("RecordMessageEvent", pb.RecordMessageEventRequest(tracking_token=token_of(url)))


def order(tenant: str, profile_id: str, at: datetime, *, event_id: str | None = None, **props) -> event_pb2.Event:
    event = event_pb2.Event(id=event_id or new_id_str(), tenant_id=tenant, type="track", name="Order Completed",
                            profile_id=profile_id, source="identity", properties_json=orjson.dumps(props).decode())
    event.occurred_at.CopyFrom(to_timestamp(at))
    return event


async def report(api, since: datetime, until: datetime) -> pb.GetChannelReportResponse:
    request = pb.GetChannelReportRequest()
    request.since.CopyFrom(to_timestamp(since))
    request.until.CopyFrom(to_timestamp(until))
    return await api.call("GetChannelReport", request)


async def test_an_order_after_a_click_is_credited_once_with_its_revenue_cost_and_roi(api, db, feed, clock):
    await api.call("ConfigureChannel", pb.ConfigureChannelRequest(config=pb.ChannelConfig(
        channel=pb.CHANNEL_EMAIL, provider="log", enabled=True, cost_per_message_minor=5, cost_currency="eur")))
    rachel, monica = str(uuid.uuid4()), str(uuid.uuid4())
    start = clock.now()
    mail = await sent_message(db, api.tenant, rachel, start)
    await sent_message(db, api.tenant, monica, start)  # sent, never clicked
    await click(api, mail)

    ordered = start + timedelta(days=2)
    first = order(api.tenant, rachel, ordered, order_id="A-1", total=120.5, currency="EUR")
    await feed(first)
    await feed(first)  # the same event again (at-least-once delivery)
    await feed(order(api.tenant, rachel, ordered, order_id="A-1", total=120.5, currency="EUR"))  # resent order
    await feed(order(api.tenant, monica, ordered, order_id="B-1", total=99))  # no touch: not credited
    rows = await db.fetch("SELECT * FROM attributions WHERE tenant_id = $1", uuid.UUID(api.tenant))
    assert [(r["order_id"], str(r["message_id"]), r["touch"], r["revenue_minor"], r["currency"]) for r in rows] == [
        ("A-1", mail, "clicked", 12050, "EUR")]

    got = await report(api, start - timedelta(days=1), start + timedelta(days=10))
    [email] = got.channels
    assert (email.channel, email.sent, email.opened, email.clicked) == (pb.CHANNEL_EMAIL, 2, 1, 1)
    assert [(r.currency, r.orders, r.revenue_minor) for r in email.revenue] == [("EUR", 1, 12050)]
    assert (email.attributed_orders, email.cost_minor, email.cost_currency) == (1, 10, "EUR")
    assert email.HasField("roi") and email.roi == pytest.approx((12050 - 10) / 10)
    assert email.click_rate == 0.5
    assert [(s.journey_id, s.orders, s.revenue_minor) for s in got.sources] == [("journey-1", 1, 12050)]
    assert (got.attribution.window_hours, got.attribution.count_opens) == (168, True)

    # a window that ends before the order: the cost of the two sends and no revenue, a negative ROI
    earlier = await report(api, start - timedelta(days=1), start + timedelta(days=1))
    assert earlier.channels[0].attributed_orders == 0 and earlier.channels[0].roi < 0


async def test_an_order_eight_days_after_the_click_is_not_credited_unless_the_window_is_longer(api, db, feed, clock):
    rachel = str(uuid.uuid4())
    start = clock.now()
    mail = await sent_message(db, api.tenant, rachel, start)
    await click(api, mail)
    await feed(order(api.tenant, rachel, start + timedelta(days=8), order_id="late-1", total=50))
    assert await db.fetchval("SELECT count(*) FROM attributions WHERE tenant_id = $1", uuid.UUID(api.tenant)) == 0

    set_to = await api.call("SetAttributionSettings", pb.SetAttributionSettingsRequest(
        settings=pb.AttributionSettings(window_hours=240, count_opens=True, default_currency="cny")))
    assert (set_to.settings.window_hours, set_to.settings.default_currency) == (240, "CNY")
    await feed(order(api.tenant, rachel, start + timedelta(days=8), order_id="late-2", total=50))
    row = await db.fetchrow("SELECT order_id, revenue_minor, currency FROM attributions WHERE tenant_id = $1",
                            uuid.UUID(api.tenant))
    assert tuple(row) == ("late-2", 5000, "CNY")  # no currency on the order: the tenant's default


async def test_a_click_beats_a_later_open_and_opens_can_be_left_out(api, db, feed, clock):
    rachel = str(uuid.uuid4())
    start = clock.now()
    sms = await sent_message(db, api.tenant, rachel, start, channel="sms", journey_id="")
    email = await sent_message(db, api.tenant, rachel, start)
    await click(api, sms)
    clock.advance(hours=20)
    await open_(api, email)
    await feed(order(api.tenant, rachel, start + timedelta(days=1), order_id="C-1", total=10))
    assert await db.fetchval("SELECT channel FROM attributions WHERE tenant_id = $1 AND order_id = 'C-1'",
                             uuid.UUID(api.tenant)) == "sms"

    other = str(uuid.uuid4())
    opened_only = await sent_message(db, api.tenant, other, clock.now())
    await open_(api, opened_only)
    await api.call("SetAttributionSettings", pb.SetAttributionSettingsRequest(
        settings=pb.AttributionSettings(window_hours=168, count_opens=False, default_currency="USD")))
    await feed(order(api.tenant, other, clock.now() + timedelta(hours=1), order_id="D-1", total=10))
    assert await db.fetchval("SELECT count(*) FROM attributions WHERE tenant_id = $1 AND order_id = 'D-1'",
                             uuid.UUID(api.tenant)) == 0


async def test_erasure_and_merges_keep_the_revenue_in_the_totals(api, db, feed, clock):
    from messaging.repo import people

    rachel, survivor = str(uuid.uuid4()), str(uuid.uuid4())
    mail = await sent_message(db, api.tenant, rachel, clock.now())
    await click(api, mail)
    await feed(order(api.tenant, rachel, clock.now() + timedelta(hours=1), order_id="E-1", total=30))
    await people.merge(db, api.tenant, rachel, survivor, clock.now())
    assert str(await db.fetchval("SELECT profile_id FROM attributions WHERE order_id = 'E-1'")) == survivor
    await people.erase(db, api.tenant, survivor, clock.now())
    assert await db.fetchval("SELECT profile_id FROM attributions WHERE order_id = 'E-1'") is None
    got = await report(api, clock.now() - timedelta(days=1), clock.now() + timedelta(days=1))
    [email] = got.channels
    assert (email.sent, email.attributed_orders) == (0, 1)  # the history went, the revenue stays


async def fails(call, code: str) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await call
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT, info.value.details()
    assert dict(info.value.trailing_metadata() or ()).get("mcloud-error-code") == code


async def test_bad_windows_costs_and_settings_are_refused(api, clock):
    now = clock.now()
    await fails(report(api, now, now - timedelta(days=1)), "invalid_window")
    await fails(report(api, now - timedelta(days=800), now), "window_too_long")
    await fails(api.call("SetAttributionSettings", pb.SetAttributionSettingsRequest(
        settings=pb.AttributionSettings(window_hours=0, default_currency="USD"))), "invalid_attribution_window")
    await fails(api.call("SetAttributionSettings", pb.SetAttributionSettingsRequest(
        settings=pb.AttributionSettings(window_hours=24, default_currency="euro"))), "invalid_currency")
    await fails(api.call("ConfigureChannel", pb.ConfigureChannelRequest(config=pb.ChannelConfig(
        channel=pb.CHANNEL_EMAIL, provider="log", cost_per_message_minor=3))), "invalid_currency")
    defaults = await api.call("GetChannelReport", pb.GetChannelReportRequest())
    assert list(defaults.channels) == [] and defaults.attribution.window_hours == 168
