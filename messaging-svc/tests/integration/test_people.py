"""People over real gRPC, PostgreSQL and Valkey: preferences (merge rule, validation, opt-out events),
suppressions (idempotent by content, one event), Unsubscribe (by profile and by signed link, once),
the in-app inbox (paging, unread count, expiry, first read = open) and channel configuration (secrets
write-only)."""

from __future__ import annotations

import uuid
from datetime import timedelta

import grpc
import pytest

from mcloud.events.v1 import messaging_events_pb2 as ev
from mcloud.messaging.v1 import messaging_pb2 as pb
from mcloud_common.bus import decode
from mcloud_common.db import create_pool
from mcloud_common.ids import new_id_str
from mcloud_common.testing.services import wait_until
from messaging.domain.tracking import Links
from messaging.repo import channels as channel_repo
from messaging.repo import contacts, inbox, suppressions
from messaging.settings import MessagingSettings

pytestmark = pytest.mark.without_jobs
T0_KEY = "mcloud-error-code"


@pytest.fixture
async def pool(messaging_db):
    p = await create_pool(messaging_db)
    yield p
    await p.close()


def error_code(exc: grpc.aio.AioRpcError) -> str:
    return dict(exc.trailing_metadata() or ()).get(T0_KEY, "")


async def refused(api, method: str, request) -> str:
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await api.call(method, request)
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT, info.value
    return error_code(info.value)


async def events_of(redis, db, tenant: str, type_: str) -> list:
    """The messaging events of `type_` for `tenant` on the bus, once the outbox has drained."""
    await wait_until(lambda: db.fetchval("SELECT count(*) = 0 FROM outbox WHERE tenant_id = $1", tenant),
                     message="outbox drained")
    out = []
    async for stream in redis.scan_iter(match="events.messaging.*"):
        for _, fields in await redis.xrange(stream):
            event = decode(fields)
            if event.tenant_id == tenant and event.type == type_:
                out.append(event)
    return out


def prefs(profile_id: str, **kw) -> pb.SetPreferencesRequest:
    return pb.SetPreferencesRequest(preferences=pb.Preferences(profile_id=profile_id, **kw))


# ---------------------------------------------------------------------------------------------- preferences

async def test_set_preferences_replaces_listed_channels_and_leaves_unset_fields_unchanged(api):
    pid = str(uuid.uuid4())
    first = (await api.call("SetPreferences", prefs(
        pid, channels=[pb.ChannelPreference(channel=pb.CHANNEL_EMAIL, opted_in=False),
                       pb.ChannelPreference(channel=pb.CHANNEL_SMS, opted_in=True)],
        locale="zh-CN", timezone="Asia/Shanghai", quiet_hours=pb.QuietHours(enabled=True, start_minute=1320,
                                                                            end_minute=480),
        preferred_channel=pb.CHANNEL_SMS))).preferences
    assert {c.channel: c.opted_in for c in first.channels} == {pb.CHANNEL_EMAIL: False, pb.CHANNEL_SMS: True}

    second = (await api.call("SetPreferences", prefs(
        pid, channels=[pb.ChannelPreference(channel=pb.CHANNEL_SMS, opted_in=False)]))).preferences
    assert {c.channel: c.opted_in for c in second.channels} == {pb.CHANNEL_EMAIL: False, pb.CHANNEL_SMS: False}
    assert (second.locale, second.timezone, second.preferred_channel) == ("zh-CN", "Asia/Shanghai", pb.CHANNEL_SMS)
    assert (second.quiet_hours.enabled, second.quiet_hours.start_minute, second.quiet_hours.end_minute) == (
        True, 1320, 480)

    third = (await api.call("SetPreferences", prefs(pid, quiet_hours=pb.QuietHours(enabled=False),
                                                    preferred_channel=pb.CHANNEL_BEST))).preferences
    assert not third.quiet_hours.enabled and third.preferred_channel == pb.CHANNEL_UNSPECIFIED
    got = (await api.call("GetPreferences", pb.GetPreferencesRequest(profile_id=pid))).preferences
    assert got == third


async def test_bad_preferences_are_refused_with_a_stable_code(api):
    pid = str(uuid.uuid4())
    assert await refused(api, "SetPreferences", prefs(pid, timezone="Mars/Olympus")) == "invalid_timezone"
    assert await refused(api, "SetPreferences", prefs(pid, locale="not a locale")) == "invalid_locale"
    assert await refused(api, "SetPreferences", prefs(pid, quiet_hours=pb.QuietHours(
        enabled=True, start_minute=1440, end_minute=0))) == "invalid_minute"
    assert await refused(api, "SetPreferences", prefs(pid, channels=[pb.ChannelPreference(
        channel=pb.CHANNEL_BEST)])) == "invalid_channel"
    assert await refused(api, "SetPreferences", prefs("nope")) == "invalid_profile_id"
    assert await refused(api, "GetPreferences", pb.GetPreferencesRequest(profile_id="x")) == "invalid_profile_id"


async def test_defaults_come_from_the_contact_and_every_channel_is_opted_in(api, pool, clock):
    pid = str(uuid.uuid4())
    async with pool.acquire() as conn:
        await contacts.upsert_from_traits(conn, api.tenant, pid, {"locale": "de-DE", "timezone": "Europe/Berlin"},
                                          clock.now())
    got = (await api.call("GetPreferences", pb.GetPreferencesRequest(profile_id=pid))).preferences
    assert (got.profile_id, got.locale, got.timezone, list(got.channels)) == (pid, "de-DE", "Europe/Berlin", [])


async def test_an_opt_out_emits_message_unsubscribed_once(api, db, redis):
    pid = str(uuid.uuid4())
    out = prefs(pid, channels=[pb.ChannelPreference(channel=pb.CHANNEL_EMAIL, opted_in=False)])
    await api.call("SetPreferences", out)
    await api.call("SetPreferences", out)  # already out: nothing new
    events = await events_of(redis, db, api.tenant, "message.unsubscribed")
    assert len(events) == 1
    payload = ev.MessageUnsubscribed()
    events[0].payload.Unpack(payload)
    assert (payload.profile_id, payload.channel, payload.source) == (pid, "email", "preferences")


# ---------------------------------------------------------------------------------------------- suppressions

async def test_suppress_is_idempotent_by_content_and_emits_one_event(api, db, redis):
    pid = str(uuid.uuid4())
    request = pb.SuppressRequest(channel=pb.CHANNEL_EMAIL, address="Rachel@Example.com", profile_id=pid,
                                 reason=pb.SUPPRESSION_REASON_UNSUBSCRIBE, detail="asked by phone")
    first = (await api.call("Suppress", request)).suppression
    request.address = "rachel@example.COM"
    second = (await api.call("Suppress", request)).suppression
    assert first.id == second.id and first.reason == pb.SUPPRESSION_REASON_UNSUBSCRIBE
    assert first.channel == pb.CHANNEL_EMAIL and first.profile_id == pid
    events = await events_of(redis, db, api.tenant, "message.unsubscribed")
    assert len(events) == 1 and events[0].profile_id == pid

    manual = (await api.call("Suppress", pb.SuppressRequest(profile_id=pid, idempotency_key="k1"))).suppression
    assert manual.channel == pb.CHANNEL_UNSPECIFIED and manual.reason == pb.SUPPRESSION_REASON_MANUAL
    again = (await api.call("Suppress", pb.SuppressRequest(profile_id=pid, idempotency_key="k1"))).suppression
    assert again == manual
    assert await refused(api, "Suppress", pb.SuppressRequest(channel=pb.CHANNEL_SMS)) == "missing_target"
    assert await refused(api, "Suppress", pb.SuppressRequest(address="a@b.c", profile_id="x")) == "invalid_profile_id"


async def test_suppressed_matches_addresses_case_insensitively_profiles_and_all_channels(api, pool, clock):
    pid, other = str(uuid.uuid4()), str(uuid.uuid4())
    async with pool.acquire() as conn:
        await suppressions.add_suppression(conn, api.tenant, channel="email", address="Bounce@Example.com",
                                           reason="hard_bounce", now=clock.now())
        await suppressions.add_suppression(conn, api.tenant, channel="all", profile_id=pid, reason="unsubscribe",
                                           now=clock.now())
        found = await suppressions.suppressed(conn, api.tenant, [
            (other, "email", "bounce@example.COM"), (other, "sms", "bounce@example.com"),
            (pid, "push", "token-1"), (other, "email", "fine@example.com")])
    assert found == {(other, "email", "bounce@example.COM"): "hard_bounce", (pid, "push", "token-1"): "unsubscribe"}


# ---------------------------------------------------------------------------------------------- unsubscribe

async def test_unsubscribing_twice_emits_one_event_and_says_already(api, db, redis):
    pid = str(uuid.uuid4())
    first = await api.call("Unsubscribe", pb.UnsubscribeRequest(profile_id=pid))
    second = await api.call("Unsubscribe", pb.UnsubscribeRequest(profile_id=pid))
    assert (first.already, second.already, first.channel) == (False, True, pb.CHANNEL_UNSPECIFIED)
    got = (await api.call("GetPreferences", pb.GetPreferencesRequest(profile_id=pid))).preferences
    assert {c.channel for c in got.channels if not c.opted_in} == {
        pb.CHANNEL_EMAIL, pb.CHANNEL_SMS, pb.CHANNEL_PUSH, pb.CHANNEL_IN_APP, pb.CHANNEL_WEBHOOK}
    events = await events_of(redis, db, api.tenant, "message.unsubscribed")
    assert len(events) == 1
    payload = ev.MessageUnsubscribed()
    events[0].payload.Unpack(payload)
    assert (payload.channel, payload.source) == ("all", "api")


async def test_unsubscribe_from_a_signed_link_opts_out_of_the_links_channel(api, db, redis):
    pid = str(uuid.uuid4())
    settings = MessagingSettings(database_url="postgresql://unused/unused")
    links = Links(settings.tracking_secret.get_secret_value().encode(), settings.public_url)
    token = links.unsubscribe(api.tenant, pid, new_id_str(), "email").rsplit("/", 1)[1]
    done = await api.call("Unsubscribe", pb.UnsubscribeRequest(token=token, source="one_click"))
    assert (done.profile_id, done.channel, done.already) == (pid, pb.CHANNEL_EMAIL, False)
    got = (await api.call("GetPreferences", pb.GetPreferencesRequest(profile_id=pid))).preferences
    assert [(c.channel, c.opted_in) for c in got.channels] == [(pb.CHANNEL_EMAIL, False)]
    assert (await api.call("Unsubscribe", pb.UnsubscribeRequest(token=token))).already
    events = await events_of(redis, db, api.tenant, "message.unsubscribed")
    assert len(events) == 1
    assert await refused(api, "Unsubscribe", pb.UnsubscribeRequest(token=token[:-2] + "xx")) == "invalid_token"
    other_tenant = links.unsubscribe(str(uuid.uuid4()), pid, "", "email").rsplit("/", 1)[1]
    assert await refused(api, "Unsubscribe", pb.UnsubscribeRequest(token=other_tenant)) == "invalid_token"
    assert await refused(api, "Unsubscribe", pb.UnsubscribeRequest()) == "missing_target"


# ---------------------------------------------------------------------------------------------- inbox

async def _sent_message(conn, tenant: str, profile_id: str, now) -> str:
    mid = new_id_str()
    await conn.execute(
        """
        INSERT INTO messages (tenant_id, id, profile_id, requested_channel, channel, template_id, status,
                              idempotency_key, due_at, queued_at, sent_at)
        VALUES ($1, $2, $3, 'in_app', 'in_app', $4, 'sent', $5, $6, $6, $6)
        """, tenant, mid, profile_id, uuid.uuid4(), f"test-{mid}", now)
    return mid


async def test_inbox_lists_newest_first_in_pages_and_counts_unread(api, pool, clock, db):
    pid = str(uuid.uuid4())
    async with pool.acquire() as conn:
        mids = []
        for i in range(5):
            mid = await _sent_message(conn, api.tenant, pid, clock.now())
            mids.append(mid)
            row = await inbox.add(conn, api.tenant, message_id=mid, profile_id=pid, title=f"t{i}", body="b",
                                  image_url="", link_url="https://shop.example/x", data={"k": i},
                                  now=clock.now() + timedelta(seconds=i),
                                  expires_at=clock.now() + timedelta(days=1) if i == 0 else None)
        again = await inbox.add(conn, api.tenant, message_id=mids[-1], profile_id=pid, title="dup", now=clock.now())
        assert again["id"] == row["id"] and again["title"] == "t4"

    page = await api.call("ListInbox", pb.ListInboxRequest(profile_id=pid, page_size=2))
    assert [m.title for m in page.messages] == ["t4", "t3"] and page.unread_count == 5 and page.next_page_token
    rest = await api.call("ListInbox", pb.ListInboxRequest(profile_id=pid, page_size=10,
                                                           page_token=page.next_page_token))
    assert [m.title for m in rest.messages] == ["t2", "t1", "t0"] and not rest.next_page_token
    assert rest.messages[0].data_json == '{"k":2}'

    done = await api.call("MarkInboxRead", pb.MarkInboxReadRequest(profile_id=pid,
                                                                   inbox_message_ids=[page.messages[0].id]))
    assert (done.marked, done.unread_count) == (1, 4)
    again = await api.call("MarkInboxRead", pb.MarkInboxReadRequest(profile_id=pid,
                                                                    inbox_message_ids=[page.messages[0].id]))
    assert (again.marked, again.unread_count) == (0, 4)
    # the first read counted as an open of its message
    assert await db.fetchval("SELECT status FROM messages WHERE id = $1", uuid.UUID(mids[-1])) == "opened"
    assert await db.fetchval("SELECT count(*) FROM message_events WHERE message_id = $1 AND kind = 'opened'",
                             uuid.UUID(mids[-1])) == 1

    unread = await api.call("ListInbox", pb.ListInboxRequest(profile_id=pid, unread_only=True))
    assert [m.title for m in unread.messages] == ["t3", "t2", "t1", "t0"]
    clock.advance(timedelta(days=2))  # t0 expired: hidden and not counted
    try:
        listed = await api.call("ListInbox", pb.ListInboxRequest(profile_id=pid))
        assert [m.title for m in listed.messages] == ["t4", "t3", "t2", "t1"] and listed.unread_count == 3
        everything = await api.call("MarkInboxRead", pb.MarkInboxReadRequest(profile_id=pid, all=True))
        assert (everything.marked, everything.unread_count) == (3, 0)
    finally:
        clock.set(clock.now() - timedelta(days=2))
    assert await refused(api, "MarkInboxRead", pb.MarkInboxReadRequest(profile_id=pid, inbox_message_ids=["x"])
                         ) == "invalid_inbox_message_id"
    assert await refused(api, "ListInbox", pb.ListInboxRequest(profile_id=pid, page_token="garbage")
                         ) == "invalid_page_token"


# ---------------------------------------------------------------------------------------------- channels

SMTP = '{"host": "smtp.example.com", "port": 587, "from_email": "shop@example.com", "start_tls": true}'


async def test_channel_secrets_are_write_only_and_kept_when_left_empty(api, pool):
    config = pb.ChannelConfig(channel=pb.CHANNEL_EMAIL, provider="smtp", enabled=True, settings_json=SMTP,
                              secrets_json='{"username": "u", "password": "p"}', rate_limit_per_second=10,
                              frequency_caps=[pb.FrequencyCap(max_messages=3, window_hours=24)],
                              fallbacks=[pb.ProviderConfig(provider="log")])
    stored = (await api.call("ConfigureChannel", pb.ConfigureChannelRequest(config=config))).config
    assert stored.secrets_json == "" and stored.provider == "smtp" and stored.enabled
    assert [(c.max_messages, c.window_hours) for c in stored.frequency_caps] == [(3, 24)]
    assert [f.provider for f in stored.fallbacks] == ["log"]

    config.secrets_json = ""
    config.rate_limit_per_second = 20
    again = (await api.call("ConfigureChannel", pb.ConfigureChannelRequest(config=config))).config
    assert again.rate_limit_per_second == 20 and again.secrets_json == ""
    async with pool.acquire() as conn:
        row = await channel_repo.get_channel(conn, api.tenant, "email", fresh=True)
    assert row.secrets == {"username": "u", "password": "p"} and row.rate_limit_per_second == 20
    assert row.caps[0].max_messages == 3 and row.fallbacks[0]["provider"] == "log"
    assert row.setup().primary.provider == "smtp"

    in_app = (await api.call("ConfigureChannel", pb.ConfigureChannelRequest(
        config=pb.ChannelConfig(channel=pb.CHANNEL_IN_APP, enabled=True)))).config
    assert in_app.provider == "in_app"


async def test_bad_channel_configs_are_refused(api):
    def config(**kw):
        base = {"channel": pb.CHANNEL_EMAIL, "provider": "smtp", "enabled": True, "settings_json": SMTP}
        return pb.ConfigureChannelRequest(config=pb.ChannelConfig(**{**base, **kw}))

    assert await refused(api, "ConfigureChannel", config(frequency_caps=[pb.FrequencyCap(
        max_messages=0, window_hours=24)])) == "invalid_frequency_cap"
    assert await refused(api, "ConfigureChannel", config(frequency_caps=[pb.FrequencyCap(
        max_messages=1, window_hours=721)])) == "invalid_frequency_cap"
    assert await refused(api, "ConfigureChannel", config(settings_json="[1]")) == "invalid_json"
    assert await refused(api, "ConfigureChannel", config(channel=pb.CHANNEL_BEST)) == "invalid_channel"
    assert await refused(api, "ConfigureChannel", config(provider="carrier-pigeon")) == "invalid_channel_config"
    assert await refused(api, "ConfigureChannel", config(rate_limit_per_second=-1)) == "invalid_rate_limit"
