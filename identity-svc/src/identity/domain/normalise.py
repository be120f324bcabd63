"""Identifier cleaning before matching: trimming, case folding, e-mail syntax, phones to E.164."""

from __future__ import annotations

from functools import lru_cache

import phonenumbers
from email_validator import EmailNotValidError, validate_email

from identity.domain.settings import TenantSettings
from mcloud_common.tracking_spec import MAX_EMAIL_LENGTH, MAX_ID_LENGTH


class InvalidIdentifier(ValueError):
    """The value cannot be an identifier of its type (reported, never matched)."""

    def __init__(self, code: str, detail: str) -> None:
        super().__init__(detail)
        self.code = code
        self.detail = detail


@lru_cache(maxsize=65536)
def normalise_email(value: str) -> str:
    text = value.strip()
    if len(text) > MAX_EMAIL_LENGTH:
        raise InvalidIdentifier("invalid_email", "email longer than 254 characters")
    try:
        checked = validate_email(text, check_deliverability=False, allow_smtputf8=True)
    except EmailNotValidError as exc:
        raise InvalidIdentifier("invalid_email", f"not an email address: {exc}") from exc
    return checked.normalized.lower()


@lru_cache(maxsize=65536)
def normalise_phone(value: str, region: str) -> str:
    text = value.strip()
    try:
        number = phonenumbers.parse(text, region)
    except phonenumbers.NumberParseException as exc:
        raise InvalidIdentifier("invalid_phone", f"not a phone number: {exc}") from exc
    if not phonenumbers.is_valid_number(number):
        raise InvalidIdentifier("invalid_phone", f"{text!r} is not a valid number for region {region}")
    return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)


def normalise(settings: TenantSettings, type_: str, value: str) -> str:
    """The value as stored and matched; InvalidIdentifier when it is junk, malformed or blocked."""
    rule = settings.rule(type_)
    kind = rule.normalise if rule is not None else "trim"
    if kind == "email":
        out = normalise_email(value)
    elif kind == "phone":
        out = normalise_phone(value, settings.default_region)
    elif kind == "lower":
        out = value.strip().lower()
    elif kind == "trim":
        out = value.strip()
    else:
        out = value
    if not out:
        raise InvalidIdentifier("empty_identifier", f"{type_} is empty")
    if len(out) > MAX_ID_LENGTH:
        raise InvalidIdentifier("id_too_long", f"{type_} longer than {MAX_ID_LENGTH} characters")
    if settings.is_blocked(type_, out):
        raise InvalidIdentifier("blocked_identifier", f"{type_} value {out!r} is on the blocked list")
    return out
