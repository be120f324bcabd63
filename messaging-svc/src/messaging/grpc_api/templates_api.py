"""Templates: UpsertTemplate, GetTemplate, ListTemplates, PreviewTemplate (TestSendTemplate lives with the
sends).

Errors callers can rely on (the `mcloud-error-code` trailer): INVALID_ARGUMENT with a `field` for a bad
template (name_required, invalid_channel, variants_required, invalid_locale, duplicate_locale,
invalid_default_locale, subject_required, body_required, invalid_data_json, template_syntax_error, ...),
invalid_variables_json and template_error (a preview that fails to render); NOT_FOUND template_not_found /
template_version_not_found; FAILED_PRECONDITION channel_immutable.
"""

from __future__ import annotations

from typing import Any

from mcloud.messaging.v1 import messaging_pb2 as pb
from mcloud_common.errors import InvalidArgument
from mcloud_common.grpc_server import tenant_id
from mcloud_common.idempotency import once
from messaging.domain import templates as rules
from messaging.domain.names import CHANNEL_OF
from messaging.grpc_api.base import Context, ServicerBase, require_uuid
from messaging.grpc_api.sends_api import variables_of
from messaging.repo import templates as template_repo
from messaging.repo.contacts import load_contacts
from messaging.repo.preferences import load_preferences

# one per process: compiled templates are cached by (template, version, locale, part)
RENDERER = rules.Renderer()
PREVIEW_LINKS = {"unsubscribe": "#unsubscribe", "preferences": "#preferences"}


def _version(value: int) -> int:
    if value < 0:
        raise InvalidArgument("version cannot be negative (0 = latest)", code="invalid_version", field="version")
    return value


async def _person(conn, tenant: str, profile_id: str) -> tuple[dict[str, Any], str | None]:
    """The profile variables and locale of a person messaging knows ({"id"} and None when it does not)."""
    profile: dict[str, Any] = {"id": profile_id}
    contact = (await load_contacts(conn, tenant, [profile_id])).get(profile_id)
    if contact is None or contact.erased:
        return profile, None
    locale = contact.locale
    prefs = (await load_preferences(conn, tenant, [profile_id])).get(profile_id)
    if prefs is not None and prefs.locale:
        locale = prefs.locale
    profile = {**contact.traits, "email": contact.email or "", "phone": contact.phone or "", "id": profile_id}
    return profile, locale


class TemplatesApi(ServicerBase):
    async def UpsertTemplate(self, request: pb.UpsertTemplateRequest, context: Context):
        tenant = tenant_id(context)
        rules.check_template(request.template)
        if request.template.id:
            template_repo.template_uuid(request.template.id, "id")
        async with self._pool.acquire() as conn:
            async def run() -> pb.UpsertTemplateResponse:
                saved = await template_repo.upsert(conn, tenant, request.template, now=self._clock.now())
                return pb.UpsertTemplateResponse(template=saved)

            return await once(conn, tenant, "UpsertTemplate", request.idempotency_key, pb.UpsertTemplateResponse, run)

    async def GetTemplate(self, request: pb.GetTemplateRequest, context: Context):
        tenant = tenant_id(context)
        require_uuid(request.template_id, "template_id")
        async with self._pool.acquire() as conn:
            template = await template_repo.get(conn, tenant, request.template_id, _version(request.version))
        return pb.GetTemplateResponse(template=template)

    async def ListTemplates(self, request: pb.ListTemplatesRequest, context: Context):
        tenant = tenant_id(context)
        channel = None
        if request.channel != pb.CHANNEL_UNSPECIFIED:
            channel = CHANNEL_OF.get(request.channel)
            if channel is None or channel == "best":
                raise InvalidArgument("channel must be one of email, sms, push, in_app, webhook",
                                      code="invalid_channel", field="channel")
        async with self._pool.acquire() as conn:
            templates, token = await template_repo.page(conn, tenant, channel, request.page_size, request.page_token)
        return pb.ListTemplatesResponse(templates=templates, next_page_token=token)

    async def PreviewTemplate(self, request: pb.PreviewTemplateRequest, context: Context):
        tenant = tenant_id(context)
        require_uuid(request.template_id, "template_id")
        version_number = _version(request.version)
        variables = variables_of(request.variables_json)
        locale = None
        if request.locale:
            locale = rules.normalize_locale(request.locale)
            if locale is None:
                raise InvalidArgument(f"locale {request.locale!r} is not a locale such as en or zh-CN",
                                      code="invalid_locale", field="locale")
        if request.profile_id:
            require_uuid(request.profile_id, "profile_id")
        async with self._pool.acquire() as conn:
            version = await template_repo.get_version(conn, tenant, request.template_id, version_number)
            if request.profile_id:
                profile, profile_locale = await _person(conn, tenant, request.profile_id)
                given = variables.get("profile")
                variables["profile"] = {**profile, **given} if isinstance(given, dict) else profile
                locale = locale or profile_locale
        variables.setdefault("links", dict(PREVIEW_LINKS))
        variables.setdefault("message", {"id": "preview"})
        variant = rules.choose_variant(version, locale)
        try:
            out = RENDERER.render(version, variant, variables)
        except rules.TemplateError as exc:
            raise InvalidArgument(f"the template does not render: {exc}", code="template_error") from None
        return pb.PreviewTemplateResponse(locale=out.locale, subject=out.subject, body_text=out.body_text,
                                          body_html=out.body_html, title=out.title, data_json=out.data_json,
                                          missing_variables=list(out.missing))
