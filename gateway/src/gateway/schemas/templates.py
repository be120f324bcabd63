"""Template API shapes: versioned, localised message templates (one channel each, one variant per
locale) and previews. Content uses Liquid placeholders (`{{ profile.first_name }}`, see
messaging-svc/README.md); a variant's `data` (push data, in-app extras, the webhook body) is a JSON
object whose string values may hold placeholders. Channels are lower-case strings."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

import orjson
from pydantic import AfterValidator, BaseModel, ConfigDict, Field

from gateway.schemas.journeys import ProfileRef
from gateway.schemas.loyalty import INT32_MAX, Description, Name, text

TemplateChannel = Literal["email", "sms", "push", "in_app", "webhook"]
MAX_DATA_BYTES = 64 * 1024  # messaging-svc's limit on a variant's data
MAX_VARIABLES_BYTES = 256 * 1024


def _json_object(limit: int) -> Any:
    def check(value: dict[str, Any]) -> dict[str, Any]:
        try:
            encoded = orjson.dumps(value)
        except TypeError as exc:  # orjson.JSONEncodeError: integers beyond 64 bits, text that is not Unicode
            raise ValueError(f"must be encodable as JSON: {exc}") from None
        if b"\\u0000" in encoded:
            raise ValueError("must not contain NUL characters")
        if len(encoded) > limit:
            raise ValueError(f"must be at most {limit} bytes as JSON")
        return value

    return Annotated[dict[str, Any], AfterValidator(check)]


Locale = text(35, min_length=2)
OptionalLocale = text(35)
ShortText = text(1000)
BodyText = text(256 * 1024)
BodyHtml = text(512 * 1024)
Data = _json_object(MAX_DATA_BYTES)
Variables = _json_object(MAX_VARIABLES_BYTES)

TEMPLATE_EXAMPLE: dict[str, Any] = {
    "name": "Welcome",
    "description": "first email after sign-up",
    "channel": "email",
    "default_locale": "en",
    "variants": [
        {
            "locale": "en",
            "subject": "Welcome, {{ profile.first_name | default: 'friend' }}",
            "body_html": "<p>Hi {{ profile.first_name }}, here is {{ coupon.code }}.</p>"
            '<p><a href="{{ links.unsubscribe }}">Unsubscribe</a></p>',
        },
        {"locale": "zh-CN", "subject": "欢迎 {{ profile.first_name }}", "body_text": "你好 {{ profile.first_name }}"},
    ],
}


class TemplateVariantWrite(BaseModel):
    """A template's content in one locale."""

    model_config = ConfigDict(extra="forbid")

    locale: Locale = Field(description="BCP 47, e.g. en or zh-CN")
    subject: ShortText = Field("", description="email subject (required for email)")
    body_text: BodyText = Field(
        "", description="plain text: SMS, push, in-app, and the email text part (derived from body_html when empty)"
    )
    body_html: BodyHtml = Field("", description="email HTML body; placeholders are HTML-escaped")
    title: ShortText = Field("", description="push and in-app title")
    data: Data | None = Field(None, description="push data, in-app extras or the webhook JSON body")


class TemplateVariantRead(BaseModel):
    locale: str
    subject: str
    body_text: str
    body_html: str
    title: str
    data: dict[str, Any] | None = None


class TemplateWrite(BaseModel):
    """The whole template; a PUT replaces every field. Changed content becomes a new version."""

    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [TEMPLATE_EXAMPLE]})

    name: Name
    description: Description = ""
    channel: TemplateChannel
    default_locale: OptionalLocale = Field("", description="used when the person's locale has no variant; "
                                     "default: the first variant's")
    variants: list[TemplateVariantWrite] = Field(min_length=1, max_length=50)


class TemplateRead(BaseModel):
    id: str
    name: str
    description: str
    channel: str
    default_locale: str
    variants: list[TemplateVariantRead]
    version: int = Field(description="version of this content (versions are immutable)")
    latest_version: int
    created_at: datetime | None = None
    updated_at: datetime | None = None


class TemplatePage(BaseModel):
    templates: list[TemplateRead] = Field(description="at their latest version, most recently updated first")
    next_cursor: str | None = Field(None, description="pass as `cursor` for the next page; null at the end")


class TemplatePreviewRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    version: int | None = Field(None, ge=1, le=INT32_MAX, description="default: the latest")
    locale: OptionalLocale | None = Field(
        None, description="default: the profile's locale, then the template's default"
    )
    variables: Variables | None = Field(None, description="top-level template variables")
    profile_id: ProfileRef | None = Field(
        None, description="fill `profile` placeholders from this person (profile id or type:value)"
    )


class TemplatePreviewRead(BaseModel):
    locale: str = Field(description="the locale actually used")
    subject: str
    body_text: str
    body_html: str
    title: str
    data: dict[str, Any] | None = None
    missing_variables: list[str] = Field(description="placeholders that had no value (rendered empty)")
