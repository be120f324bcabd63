"""Public links inside messages and providers' delivery webhooks. No API key: a link's signed token
names its tenant (read here without checking, only to route the call; the messaging service verifies
the signature before trusting anything in it), and webhooks carry the tenant in their URL and are
checked by the provider's signature.

- GET  /t/o/{token}.gif  open pixel: always a 1x1 transparent GIF, whatever happened
- GET  /t/c/{token}      click: 302 to the signed target (400 problem for a bad token; never an open redirect)
- GET  /u/{token}        unsubscribe page with a confirm button
- POST /u/{token}        unsubscribe (RFC 8058 one-click: List-Unsubscribe=One-Click, or the page's button)
- GET  /p/{token}        preference page: channel opt-ins
- POST /p/{token}        save the preference page
- POST /v1/webhooks/messaging/{tenant_id}/{provider}  SendGrid / Mailgun / Postmark event webhooks
"""

from __future__ import annotations

import base64
import html
import uuid
from typing import Annotated
from urllib.parse import parse_qs, urlsplit

import grpc
from fastapi import APIRouter, Path, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from gateway.errors import ProblemError
from gateway.resources import MessagingDep
from mcloud.messaging.v1 import messaging_pb2 as pb
from mcloud_common.grpc_client import tenant_metadata
from mcloud_common.logs import get_logger

log = get_logger(__name__)

router = APIRouter(tags=["message tracking"])

# the smallest transparent GIF (43 bytes)
PIXEL = base64.b64decode("R0lGODlhAQABAIAAAAAAAP///yH5BAEAAAAALAAAAAABAAEAAAIBRAA7")
NO_STORE = {"Cache-Control": "no-store, no-cache, must-revalidate, max-age=0", "Pragma": "no-cache"}
PAGE_HEADERS = {**NO_STORE, "Referrer-Policy": "no-referrer", "X-Frame-Options": "DENY",
                "Content-Security-Policy": "default-src 'none'; style-src 'unsafe-inline'; form-action 'self'"}
CHANNEL_LABELS = {pb.CHANNEL_EMAIL: ("email", "Email"), pb.CHANNEL_SMS: ("sms", "Text messages (SMS)"),
                  pb.CHANNEL_PUSH: ("push", "Push notifications"), pb.CHANNEL_IN_APP: ("in_app", "In-app messages"),
                  pb.CHANNEL_WEBHOOK: ("webhook", "Webhooks")}
PAGE_CHANNELS = (pb.CHANNEL_EMAIL, pb.CHANNEL_SMS, pb.CHANNEL_PUSH)
MAX_FORM_BYTES = 16_384

Token = Annotated[str, Path(description="the signed link token", max_length=4096)]


def tenant_of_token(token: str) -> str | None:
    """The tenant a token claims, unverified (same format as messaging.domain.tracking): routing only."""
    import orjson

    try:
        part = token.split(".", 1)[0]
        data = orjson.loads(base64.urlsafe_b64decode(part + "=" * (-len(part) % 4)))
        tenant = data.get("t") if isinstance(data, dict) else None
    except (ValueError, TypeError):
        return None
    if not isinstance(tenant, str):
        return None
    try:
        return str(uuid.UUID(tenant))
    except ValueError:
        return None


def _bad_token() -> ProblemError:
    return ProblemError("invalid_token", "The link is invalid or was altered.", status=400, title="Invalid link")


def _page(title: str, body: str, status: int = 200) -> HTMLResponse:
    doc = (
        "<!doctype html><html><head><meta charset=\"utf-8\">"
        "<meta name=\"viewport\" content=\"width=device-width,initial-scale=1\">"
        f"<title>{html.escape(title)}</title><style>body{{font-family:system-ui,sans-serif;max-width:32rem;"
        "margin:3rem auto;padding:0 1rem;color:#222}button{font-size:1rem;padding:.5rem 1.2rem}"
        "label{display:block;margin:.5rem 0}</style></head><body>"
        f"<h1>{html.escape(title)}</h1>{body}</body></html>"
    )
    return HTMLResponse(doc, status_code=status, headers=PAGE_HEADERS)


def _invalid_page() -> HTMLResponse:
    return _page("Link not valid", "<p>This link is invalid or was altered. Please use the link from your "
                 "latest message.</p>", status=400)


async def _form(request: Request) -> dict[str, list[str]]:
    body = await request.body()
    if len(body) > MAX_FORM_BYTES:
        raise ProblemError("payload_too_large", f"The form exceeds {MAX_FORM_BYTES} bytes.")
    try:
        return parse_qs(body.decode("utf-8"), keep_blank_values=True)
    except UnicodeDecodeError:
        return {}


# ---- open pixel and click -------------------------------------------------------------------------------


@router.get(
    "/t/o/{token}.gif",
    summary="Open pixel",
    description="Records an open of the message and answers a 1x1 transparent GIF, even for a bad token or "
    "when the service is down (a tracking pixel never shows an error).",
    response_class=Response,
    responses={200: {"content": {"image/gif": {}}, "description": "a 1x1 transparent GIF"}},
)
async def open_pixel(token: Token, request: Request, messaging: MessagingDep) -> Response:
    tenant = tenant_of_token(token)
    if tenant is not None:
        try:
            await messaging.RecordMessageEvent(
                pb.RecordMessageEventRequest(tracking_token=token,
                                             user_agent=request.headers.get("user-agent", "")[:500]),
                metadata=tenant_metadata(tenant),
            )
        except grpc.aio.AioRpcError as exc:
            log.info("open not recorded", grpc_status=exc.code().name)
        except Exception as exc:  # never fail a pixel
            log.warning("open not recorded", error=repr(exc))
    return Response(PIXEL, media_type="image/gif", headers=NO_STORE)


@router.get(
    "/t/c/{token}",
    summary="Click redirect",
    description="Records the click and redirects (302) to the link's signed target. A bad token is a 400 "
    "problem `invalid_token`: the gateway never redirects anywhere the service did not sign.",
    status_code=302,
    response_class=RedirectResponse,
    responses={302: {"description": "to the link target"}, 400: {"description": "invalid token"}},
)
async def click(token: Token, request: Request, messaging: MessagingDep) -> RedirectResponse:
    tenant = tenant_of_token(token)
    if tenant is None:
        raise _bad_token()
    result = await messaging.RecordMessageEvent(
        pb.RecordMessageEventRequest(tracking_token=token, user_agent=request.headers.get("user-agent", "")[:500]),
        metadata=tenant_metadata(tenant),
    )
    target = result.redirect_url
    if urlsplit(target).scheme not in ("http", "https") or not urlsplit(target).netloc:
        raise _bad_token()
    return RedirectResponse(target, status_code=302, headers=NO_STORE)


# ---- unsubscribe --------------------------------------------------------------------------------------


async def _verify(messaging, token: str) -> tuple[str, pb.VerifyLinkTokenResponse] | None:
    """(tenant, who) for a genuine unsubscribe/preferences token, None for a bad one."""
    tenant = tenant_of_token(token)
    if tenant is None:
        return None
    try:
        who = await messaging.VerifyLinkToken(pb.VerifyLinkTokenRequest(token=token),
                                              metadata=tenant_metadata(tenant))
    except grpc.aio.AioRpcError as exc:
        if exc.code() == grpc.StatusCode.INVALID_ARGUMENT:
            return None
        raise
    return tenant, who


@router.get("/u/{token}", summary="Unsubscribe page", response_class=HTMLResponse,
            description="A page asking to confirm; the button POSTs to the same address.")
async def unsubscribe_page(token: Token, messaging: MessagingDep) -> HTMLResponse:
    verified = await _verify(messaging, token)
    if verified is None:
        return _invalid_page()
    label = CHANNEL_LABELS.get(verified[1].channel, ("", "these messages"))[1]
    return _page("Unsubscribe", f"<p>Stop receiving <strong>{html.escape(label.lower())}</strong> from us?</p>"
                 '<form method="post"><button type="submit" name="confirm" value="1">Unsubscribe</button></form>')


@router.post(
    "/u/{token}",
    summary="Unsubscribe (RFC 8058 one-click)",
    response_class=HTMLResponse,
    description="Mail clients POST `List-Unsubscribe=One-Click` here without showing a page (RFC 8058); the "
    "unsubscribe page's button posts here too. Idempotent.",
)
async def unsubscribe(token: Token, request: Request, messaging: MessagingDep) -> HTMLResponse:
    tenant = tenant_of_token(token)
    if tenant is None:
        return _invalid_page()
    form = await _form(request)
    source = "one_click" if form.get("List-Unsubscribe") == ["One-Click"] else "link"
    try:
        await messaging.Unsubscribe(pb.UnsubscribeRequest(token=token, source=source),
                                    metadata=tenant_metadata(tenant))
    except grpc.aio.AioRpcError as exc:
        if exc.code() == grpc.StatusCode.INVALID_ARGUMENT:
            return _invalid_page()
        raise
    return _page("Unsubscribed", "<p>You are unsubscribed. It may take a moment for messages already on "
                 "their way to stop.</p>")


# ---- preferences --------------------------------------------------------------------------------------


def _preferences_form(prefs: pb.Preferences, *, saved: bool = False) -> HTMLResponse:
    opted = {c.channel: c.opted_in for c in prefs.channels}
    channels = list(PAGE_CHANNELS) + [c for c in opted if c not in PAGE_CHANNELS and c in CHANNEL_LABELS]
    rows = []
    for channel in channels:
        name, label = CHANNEL_LABELS[channel]
        checked = " checked" if opted.get(channel, True) else ""
        rows.append(f'<label><input type="checkbox" name="channel" value="{name}"{checked}> '
                    f"{html.escape(label)}</label>")
    note = "<p><strong>Your preferences are saved.</strong></p>" if saved else ""
    return _page("Your message preferences",
                 f"{note}<p>Choose how we may contact you.</p><form method=\"post\">{''.join(rows)}"
                 '<input type="hidden" name="submitted" value="1">'
                 '<p><button type="submit">Save</button></p></form>')


@router.get("/p/{token}", summary="Preference page", response_class=HTMLResponse,
            description="The person's channel opt-ins as a form that POSTs to the same address.")
async def preferences_page(token: Token, messaging: MessagingDep) -> HTMLResponse:
    verified = await _verify(messaging, token)
    if verified is None:
        return _invalid_page()
    tenant, who = verified
    result = await messaging.GetPreferences(pb.GetPreferencesRequest(profile_id=who.profile_id),
                                            metadata=tenant_metadata(tenant))
    return _preferences_form(result.preferences)


@router.post("/p/{token}", summary="Save the preference page", response_class=HTMLResponse,
             description="Form fields: `channel` once per channel to stay opted in to (email, sms, push); the "
             "channels shown and not sent are opted out.")
async def save_preferences(token: Token, request: Request, messaging: MessagingDep) -> HTMLResponse:
    verified = await _verify(messaging, token)
    if verified is None:
        return _invalid_page()
    tenant, who = verified
    chosen = set((await _form(request)).get("channel", []))
    prefs = pb.Preferences(profile_id=who.profile_id)
    for channel in PAGE_CHANNELS:
        prefs.channels.add(channel=channel, opted_in=CHANNEL_LABELS[channel][0] in chosen)
    result = await messaging.SetPreferences(pb.SetPreferencesRequest(preferences=prefs),
                                            metadata=tenant_metadata(tenant))
    return _preferences_form(result.preferences, saved=True)


# ---- provider webhooks --------------------------------------------------------------------------------


@router.post(
    "/v1/webhooks/messaging/{tenant_id}/{provider}",
    summary="Email provider event webhook",
    description="Point SendGrid's Event Webhook (signed; public key in the email channel's secrets as "
    "`webhook_public_key`), Mailgun's webhooks (`webhook_signing_key`) or Postmark's webhooks (a shared "
    "`webhook_secret`, as basic-auth password or header `X-Mcloud-Webhook-Secret`) here. Answers the counts of "
    "recorded, duplicate and unknown events; a bad signature is a 403 problem `invalid_signature`.",
    responses={400: {"description": "malformed body"}, 403: {"description": "bad signature"}},
)
async def provider_webhook(
    tenant_id: uuid.UUID,
    provider: Annotated[str, Path(pattern="^(sendgrid|mailgun|postmark)$")],
    request: Request,
    messaging: MessagingDep,
) -> dict[str, int]:
    headers = {name.lower(): value for name, value in request.headers.items()}
    result = await messaging.HandleProviderWebhook(
        pb.HandleProviderWebhookRequest(provider=provider, headers=headers, body=await request.body()),
        metadata=tenant_metadata(str(tenant_id)),
    )
    return {"recorded": result.recorded, "duplicates": result.duplicates, "unknown": result.unknown}
