"""The Segment Tracking API vocabulary that the gateway (HTTP edge) and identity (store of record)
must agree on: one definition, so their limits cannot drift apart."""

from __future__ import annotations

CALL_TYPES = ("track", "identify", "alias", "page", "screen", "group")
CHANNELS = frozenset({"web", "app", "mini_program", "pos", "crm", "ads", "server"})
# Longest userId / anonymousId / previousId / groupId / messageId / identifier value accepted.
MAX_ID_LENGTH = 1024
# RFC 5321: an address longer than this is not an email, so it never becomes an identifier.
MAX_EMAIL_LENGTH = 254
