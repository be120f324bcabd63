"""Templates through gRPC against a real service and database: versions (changed content makes one,
identical content and name changes do not), idempotent retries, reads at a version, listing, previews
with variables and a profile's data, and errors as INVALID_ARGUMENT with a field / NOT_FOUND."""

from __future__ import annotations

import json
import uuid

import grpc
import pytest
from google.rpc import error_details_pb2, status_pb2

from mcloud.messaging.v1 import messaging_pb2 as pb
from mcloud_common.db import create_pool
from mcloud_common.errors import NotFound
from messaging.repo import templates as template_repo

pytestmark = pytest.mark.without_jobs


def welcome(**kw) -> pb.Template:
    t = pb.Template(name="Welcome", description="first mail", channel=pb.CHANNEL_EMAIL, default_locale="en")
    t.variants.add(locale="en", subject="Welcome {{ profile.first_name | default: 'friend' }}",
                   body_html='<p>Hi {{ profile.first_name }}, use <b>{{ coupon.code }}</b>.</p>'
                             '<p><a href="{{ links.unsubscribe }}">Unsubscribe</a></p>')
    t.variants.add(locale="zh-cn", subject="欢迎 {{ profile.first_name }}", body_text="你好 {{ profile.first_name }}")
    for k, v in kw.items():
        setattr(t, k, v)
    return t


def error_info(exc: grpc.aio.AioRpcError) -> error_details_pb2.ErrorInfo:
    details = dict(exc.trailing_metadata() or ())["grpc-status-details-bin"]
    info = error_details_pb2.ErrorInfo()
    status_pb2.Status.FromString(details).details[0].Unpack(info)
    return info


async def refused(call, status: grpc.StatusCode, reason: str) -> error_details_pb2.ErrorInfo:
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await call
    assert caught.value.code() == status, caught.value.details()
    info = error_info(caught.value)
    assert info.reason == reason, info
    return info


async def upsert(api, template: pb.Template, key: str = "") -> pb.Template:
    return (await api.call("UpsertTemplate", pb.UpsertTemplateRequest(template=template, idempotency_key=key))).template


async def test_create_then_changed_content_makes_a_new_version_and_old_ones_stay_readable(api, clock):
    created = await upsert(api, welcome())
    assert created.id and created.version == 1 and created.latest_version == 1
    assert [v.locale for v in created.variants] == ["en", "zh-CN"]
    assert created.channel == pb.CHANNEL_EMAIL and created.default_locale == "en"

    clock.advance(seconds=5)
    changed = welcome(id=created.id)
    changed.variants[0].subject = "Hello {{ profile.first_name }}"
    v2 = await upsert(api, changed)
    assert (v2.id, v2.version, v2.latest_version) == (created.id, 2, 2)
    assert v2.updated_at.seconds == created.updated_at.seconds + 5

    old = (await api.call("GetTemplate", pb.GetTemplateRequest(template_id=created.id, version=1))).template
    assert old.version == 1 and old.latest_version == 2
    assert old.variants[0].subject.startswith("Welcome")
    latest = (await api.call("GetTemplate", pb.GetTemplateRequest(template_id=created.id))).template
    assert latest.version == 2 and latest.variants[0].subject.startswith("Hello")


async def test_identical_content_keeps_the_version_and_a_rename_changes_only_the_row(api, db, clock):
    created = await upsert(api, welcome())
    clock.advance(seconds=1)
    same = await upsert(api, welcome(id=created.id))
    assert same.version == 1 and same.updated_at == created.updated_at
    # locale case is normalised before hashing: "zh-CN" is the same content as "zh-cn"
    t = welcome(id=created.id)
    t.variants[1].locale = "zh-CN"
    assert (await upsert(api, t)).version == 1

    clock.advance(seconds=1)
    renamed = await upsert(api, welcome(id=created.id, name="Welcome v2", description="renamed"))
    assert (renamed.version, renamed.latest_version, renamed.name) == (1, 1, "Welcome v2")
    assert renamed.updated_at.seconds == created.updated_at.seconds + 2
    assert await db.fetchval("SELECT count(*) FROM template_versions WHERE template_id = $1",
                             uuid.UUID(created.id)) == 1


async def test_a_retried_create_with_the_same_key_makes_one_template(api, db):
    first = await upsert(api, welcome(), key="create-welcome")
    again = await upsert(api, welcome(), key="create-welcome")
    assert again == first
    assert await db.fetchval("SELECT count(*) FROM templates WHERE tenant_id = $1", uuid.UUID(api.tenant)) == 1


async def test_list_pages_newest_updated_first_and_filters_by_channel(api, clock):
    ids = []
    for i in range(3):
        ids.append((await upsert(api, welcome(name=f"mail {i}"))).id)
        clock.advance(seconds=1)
    sms = pb.Template(name="code", channel=pb.CHANNEL_SMS)
    sms.variants.add(locale="en", body_text="Your code {{ code }}")
    sms_id = (await upsert(api, sms)).id
    clock.advance(seconds=1)
    await upsert(api, welcome(id=ids[0], name="mail 0 renamed"))  # now the most recently updated

    page = await api.call("ListTemplates", pb.ListTemplatesRequest(page_size=2))
    assert [t.id for t in page.templates] == [ids[0], sms_id]
    assert page.templates[0].variants and page.templates[0].version == 1
    rest = await api.call("ListTemplates", pb.ListTemplatesRequest(page_size=2, page_token=page.next_page_token))
    assert [t.id for t in rest.templates] == [ids[2], ids[1]] and not rest.next_page_token

    emails = await api.call("ListTemplates", pb.ListTemplatesRequest(channel=pb.CHANNEL_EMAIL))
    assert [t.id for t in emails.templates] == [ids[0], ids[2], ids[1]]
    texts = await api.call("ListTemplates", pb.ListTemplatesRequest(channel=pb.CHANNEL_SMS))
    assert [t.id for t in texts.templates] == [sms_id]
    await refused(api.call("ListTemplates", pb.ListTemplatesRequest(page_token="nope")),
                  grpc.StatusCode.INVALID_ARGUMENT, "invalid_page_token")


async def test_preview_renders_variables_reports_missing_ones_and_escapes_html(api):
    tid = (await upsert(api, welcome())).id
    out = await api.call("PreviewTemplate", pb.PreviewTemplateRequest(
        template_id=tid, variables_json=json.dumps({"profile": {"first_name": "<Rachel>"}})))
    assert out.locale == "en"
    assert out.subject == "Welcome <Rachel>"
    assert "Hi &lt;Rachel&gt;, use <b></b>." in out.body_html
    assert out.body_text.startswith("Hi <Rachel>, use .")
    assert list(out.missing_variables) == ["coupon.code"]

    zh = await api.call("PreviewTemplate", pb.PreviewTemplateRequest(template_id=tid, locale="zh-TW"))
    assert (zh.locale, zh.subject, zh.body_text) == ("zh-CN", "欢迎", "你好")
    assert list(zh.missing_variables) == ["profile.first_name"]


async def test_preview_fills_profile_data_and_takes_the_persons_locale(api, db):
    tid = (await upsert(api, welcome())).id
    person = str(uuid.uuid4())
    await db.execute(
        "INSERT INTO contacts (tenant_id, profile_id, email, locale, traits, synced_at) "
        "VALUES ($1, $2, 'rachel@example.com', 'zh-CN', $3::jsonb, now())",
        uuid.UUID(api.tenant), uuid.UUID(person), json.dumps({"first_name": "瑞秋"}))
    out = await api.call("PreviewTemplate", pb.PreviewTemplateRequest(template_id=tid, profile_id=person))
    assert (out.locale, out.subject, out.body_text) == ("zh-CN", "欢迎 瑞秋", "你好 瑞秋")
    assert not out.missing_variables
    # an explicit locale wins over the person's
    en = await api.call("PreviewTemplate", pb.PreviewTemplateRequest(template_id=tid, profile_id=person,
                                                                     locale="en-US"))
    assert en.locale == "en" and en.subject == "Welcome 瑞秋"
    # someone messaging does not know yet previews without profile data
    unknown = await api.call("PreviewTemplate", pb.PreviewTemplateRequest(template_id=tid,
                                                                          profile_id=str(uuid.uuid4())))
    assert unknown.locale == "en" and unknown.subject == "Welcome friend"


async def test_preview_of_an_older_version(api):
    created = await upsert(api, welcome())
    changed = welcome(id=created.id)
    changed.variants[0].subject = "v2"
    await upsert(api, changed)
    old = await api.call("PreviewTemplate", pb.PreviewTemplateRequest(template_id=created.id, version=1))
    assert old.subject == "Welcome friend"
    new = await api.call("PreviewTemplate", pb.PreviewTemplateRequest(template_id=created.id))
    assert new.subject == "v2"


async def test_get_version_reads_versions_and_the_latest_and_caches_immutable_ones(api, messaging_db):
    created = await upsert(api, welcome())
    changed = welcome(id=created.id)
    changed.variants[0].subject = "v2"
    await upsert(api, changed)
    pool = await create_pool(messaging_db, min_size=1, max_size=1)
    try:
        async with pool.acquire() as conn:
            first = await template_repo.get_version(conn, api.tenant, created.id, 1)
            latest = await template_repo.get_version(conn, api.tenant, created.id)
            assert await template_repo.get_version(conn, api.tenant, created.id, 1) is first
            with pytest.raises(NotFound) as err:
                await template_repo.get_version(conn, api.tenant, created.id, 3)
            assert err.value.code == "template_version_not_found"
            with pytest.raises(NotFound) as err:
                await template_repo.get_version(conn, api.tenant, str(uuid.uuid4()))
            assert err.value.code == "template_not_found"
    finally:
        await pool.close()
    assert (first.version, latest.version) == (1, 2)
    assert first.variants[1].locale == "zh-CN" and first.channel == "email" and first.default_locale == "en"
    assert latest.variants[0].subject == "v2"


@pytest.mark.parametrize(
    ("change", "field", "code"),
    [
        (lambda t: setattr(t, "name", ""), "name", "name_required"),
        (lambda t: setattr(t, "channel", pb.CHANNEL_BEST), "channel", "invalid_channel"),
        (lambda t: setattr(t, "default_locale", "fr"), "default_locale", "invalid_default_locale"),
        (lambda t: setattr(t.variants[1], "locale", "EN"), "variants[1].locale", "duplicate_locale"),
        (lambda t: setattr(t.variants[1], "locale", "chinese"), "variants[1].locale", "invalid_locale"),
        (lambda t: setattr(t.variants[0], "subject", ""), "variants[0].subject", "subject_required"),
        (lambda t: setattr(t.variants[0], "data_json", "{"), "variants[0].data_json", "invalid_data_json"),
        (lambda t: setattr(t.variants[1], "body_text", "{% if x %}"), "variants[1].body_text",
         "template_syntax_error"),
        (lambda t: setattr(t.variants[0], "body_html", "{% include 'secrets' %}"), "variants[0].body_html",
         "template_syntax_error"),
    ],
)
async def test_invalid_templates_are_refused_with_the_field(api, change, field, code):
    t = welcome()
    change(t)
    info = await refused(api.call("UpsertTemplate", pb.UpsertTemplateRequest(template=t)),
                         grpc.StatusCode.INVALID_ARGUMENT, code)
    assert info.metadata["field"] == field


async def test_errors_for_unknown_templates_versions_and_bad_input(api):
    missing = str(uuid.uuid4())
    await refused(api.call("GetTemplate", pb.GetTemplateRequest(template_id=missing)),
                  grpc.StatusCode.NOT_FOUND, "template_not_found")
    await refused(api.call("UpsertTemplate", pb.UpsertTemplateRequest(template=welcome(id=missing))),
                  grpc.StatusCode.NOT_FOUND, "template_not_found")
    tid = (await upsert(api, welcome())).id
    await refused(api.call("GetTemplate", pb.GetTemplateRequest(template_id=tid, version=7)),
                  grpc.StatusCode.NOT_FOUND, "template_version_not_found")
    await refused(api.call("PreviewTemplate", pb.PreviewTemplateRequest(template_id=tid, version=7)),
                  grpc.StatusCode.NOT_FOUND, "template_version_not_found")
    info = await refused(api.call("GetTemplate", pb.GetTemplateRequest(template_id="nope")),
                         grpc.StatusCode.INVALID_ARGUMENT, "invalid_template_id")
    assert info.metadata["field"] == "template_id"
    for bad in ("[1]", "not json"):
        info = await refused(api.call("PreviewTemplate", pb.PreviewTemplateRequest(template_id=tid,
                                                                                   variables_json=bad)),
                             grpc.StatusCode.INVALID_ARGUMENT, "invalid_variables_json")
        assert info.metadata["field"] == "variables_json"
    sms = welcome(id=tid, channel=pb.CHANNEL_SMS)
    for v in sms.variants:
        v.body_text = "text"
    await refused(api.call("UpsertTemplate", pb.UpsertTemplateRequest(template=sms)),
                  grpc.StatusCode.FAILED_PRECONDITION, "channel_immutable")


async def test_a_preview_that_fails_to_render_is_invalid_argument(api):
    t = pb.Template(name="loop", channel=pb.CHANNEL_SMS)
    t.variants.add(locale="en", body_text="{% for i in (1..n) %}x{% endfor %}")
    tid = (await upsert(api, t)).id
    await refused(api.call("PreviewTemplate", pb.PreviewTemplateRequest(template_id=tid,
                                                                        variables_json='{"n": 100000000}')),
                  grpc.StatusCode.INVALID_ARGUMENT, "template_error")


async def test_templates_are_private_to_their_tenant(api, messaging):
    tid = (await upsert(api, welcome())).id
    other = type(api)(messaging[0], str(uuid.uuid4()))
    await refused(other.call("GetTemplate", pb.GetTemplateRequest(template_id=tid)),
                  grpc.StatusCode.NOT_FOUND, "template_not_found")
    assert not (await other.call("ListTemplates", pb.ListTemplatesRequest())).templates
