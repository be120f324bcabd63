"""Send policies, checked for each message at send time (not when it is queued, so a person who
unsubscribes meanwhile is respected): erased people, suppressed addresses and profiles, consent and
opt-outs, a missing address, quiet hours in the person's time zone, frequency caps in the person's
calendar. Each block is explained with a reason and a detail. Transactional messages skip opt-outs,
quiet hours and caps, but never suppression of a bad address or an erased person.

Pure: the caller loads the person (Contact, Preferences), what is suppressed, and how many marketing
messages were sent in each cap window.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, time, timedelta
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

# consent states that allow marketing: an explicit denial or withdrawal blocks, no record allows
# (soft opt-in, as Braze's "subscribed" default); tenants needing double opt-in use preferences
_DENIED = frozenset({"denied", "withdrawn"})


@dataclass(frozen=True, slots=True)
class Contact:
    """What messaging knows of a person from identity: addresses, locale, time zone, consent per
    channel ({"email": "granted"}), traits for personalisation."""

    profile_id: str
    email: str | None = None
    phone: str | None = None
    push_tokens: tuple[str, ...] = ()
    webhook_url: str | None = None
    locale: str | None = None
    timezone: str | None = None
    traits: Mapping[str, object] = field(default_factory=dict)
    consent: Mapping[str, str] = field(default_factory=dict)
    erased: bool = False

    def address(self, channel: str) -> str | None:
        """Where a message on `channel` goes ("" for in-app, which needs none), or None."""
        if channel == "email":
            return self.email or None
        if channel == "sms":
            return self.phone or None
        if channel == "push":
            return self.push_tokens[0] if self.push_tokens else None
        if channel == "webhook":
            return self.webhook_url or None
        return ""


@dataclass(frozen=True, slots=True)
class QuietHours:
    """A daily window in local time; start > end spans midnight (1320..480 is 22:00-08:00)."""

    start_minute: int
    end_minute: int

    def contains(self, minute: int) -> bool:
        if self.start_minute == self.end_minute:
            return False
        if self.start_minute < self.end_minute:
            return self.start_minute <= minute < self.end_minute
        return minute >= self.start_minute or minute < self.end_minute


@dataclass(frozen=True, slots=True)
class Preferences:
    """What the person chose in messaging; None means "not set" (fall back to the contact/tenant)."""

    profile_id: str
    channels: Mapping[str, bool] = field(default_factory=dict)
    locale: str | None = None
    timezone: str | None = None
    quiet_hours: QuietHours | None = None
    preferred_channel: str | None = None


@dataclass(frozen=True, slots=True)
class Cap:
    max_messages: int
    window_hours: int


@dataclass(frozen=True, slots=True)
class Decision:
    """`send` (at `now`), `hold` (until `until`), or `block` with a status ('suppressed' or 'dropped'),
    a reason (a block_reason name) and a human detail."""

    action: str
    status: str = ""
    reason: str = ""
    detail: str = ""
    until: datetime | None = None


SEND = Decision("send")


def zone_named(*names: str | None) -> ZoneInfo:
    """The first valid IANA zone among `names`, else UTC."""
    for name in names:
        if name:
            try:
                return ZoneInfo(name)
            except (ZoneInfoNotFoundError, ValueError):
                continue
    return ZoneInfo("UTC")


def zone_of(contact: Contact | None, prefs: Preferences | None, default: str = "UTC") -> ZoneInfo:
    """The person's time zone: their messaging preference, then identity's trait, then `default`."""
    return zone_named(prefs.timezone if prefs else None, contact.timezone if contact else None, default)


def locale_of(contact: Contact | None, prefs: Preferences | None) -> str | None:
    return (prefs.locale if prefs and prefs.locale else None) or (contact.locale if contact else None)


def cap_window_start(now: datetime, zone: ZoneInfo, window_hours: int) -> datetime:
    """Start of a cap window in the person's calendar: a 24 h cap counts since local midnight, a
    168 h cap since local Monday midnight; other windows are rolling."""
    local = now.astimezone(zone)
    if window_hours == 24:
        return datetime.combine(local.date(), time(0), zone)
    if window_hours == 168:
        return datetime.combine(local.date() - timedelta(days=local.weekday()), time(0), zone)
    return now - timedelta(hours=window_hours)


def quiet_end(now: datetime, zone: ZoneInfo, quiet: QuietHours) -> datetime | None:
    """When the quiet window around `now` ends (in UTC terms), or None when `now` is not quiet."""
    local = now.astimezone(zone)
    minute = local.hour * 60 + local.minute
    if not quiet.contains(minute):
        return None
    end = datetime.combine(local.date(), time(quiet.end_minute // 60, quiet.end_minute % 60), zone)
    if quiet.end_minute <= minute:
        end = datetime.combine(local.date() + timedelta(days=1), time(quiet.end_minute // 60, quiet.end_minute % 60),
                               zone)
    return end


def decide(*, channel: str, transactional: bool, quiet_behavior: str, now: datetime,
           contact: Contact | None, prefs: Preferences | None, suppression: str | None,
           caps: Sequence[Cap] = (), sent_in_window: Mapping[int, int] | None = None,
           default_timezone: str = "UTC", tenant_quiet: QuietHours | None = None) -> Decision:
    """What to do with one message now. `suppression` is the reason the address or profile is
    suppressed on this channel (None when not); `sent_in_window[window_hours]` counts the person's
    marketing messages on this channel in the current window of each cap."""
    if contact is not None and contact.erased:
        return Decision("block", "suppressed", "profile_erased", "the person's data was erased")
    if suppression is not None:
        return Decision("block", "suppressed", "unsubscribed" if suppression == "unsubscribe" else "suppressed",
                        f"suppressed on {channel}: {suppression}")
    if not transactional:
        if prefs is not None and prefs.channels.get(channel) is False:
            return Decision("block", "suppressed", "unsubscribed", f"opted out of {channel}")
        state = (contact.consent.get(channel) if contact else None) or (contact.consent.get("all") if contact else None)
        if state in _DENIED:
            return Decision("block", "suppressed", "no_consent", f"{channel} consent is {state}")
    address = contact.address(channel) if contact is not None else None
    if address is None:
        return Decision("block", "suppressed", "no_address", f"no {channel} address for the person")
    if transactional:
        return SEND
    zone = zone_of(contact, prefs, default_timezone)
    quiet = prefs.quiet_hours if prefs is not None and prefs.quiet_hours is not None else tenant_quiet
    if quiet is not None and channel != "in_app":
        end = quiet_end(now, zone, quiet)
        if end is not None:
            if quiet_behavior == "drop":
                return Decision("block", "dropped", "quiet_hours", f"inside quiet hours until {end.isoformat()}")
            return Decision("hold", until=end, reason="quiet_hours")
    counts = sent_in_window or {}
    for cap in caps:
        if cap.max_messages > 0 and counts.get(cap.window_hours, 0) >= cap.max_messages:
            return Decision("block", "dropped", "frequency_cap",
                            f"{cap.max_messages} {channel} messages per {cap.window_hours} h already sent")
    return SEND


def best_channel(*, candidates: Sequence[str], contact: Contact | None, prefs: Preferences | None,
                 engagement: Mapping[str, int] | None = None) -> str | None:
    """The channel to use for CHANNEL_BEST: the person's explicit preference when usable, else the
    usable channel they engage with most, else the first usable of `candidates` (tenant order).
    Usable = has an address, not opted out, consent not denied."""

    def usable(channel: str) -> bool:
        if contact is None or contact.address(channel) is None:
            return False
        if prefs is not None and prefs.channels.get(channel) is False:
            return False
        return contact.consent.get(channel) not in _DENIED

    ok = [c for c in candidates if usable(c)]
    if not ok:
        return None
    if prefs is not None and prefs.preferred_channel in ok:
        return prefs.preferred_channel
    scores = engagement or {}
    return max(ok, key=lambda c: (scores.get(c, 0), -ok.index(c)))
