"""Keyset pagination for listings ordered by (a timestamp, an id) descending: opaque page tokens that
carry the last row's key, and the page size rule every list RPC follows."""

from __future__ import annotations

import base64
import uuid
from collections.abc import Sequence
from datetime import datetime
from typing import Any

import orjson

from mcloud_common.errors import InvalidArgument

DEFAULT_PAGE = 50
MOST_PAGE = 500


def page_size(size: int, *, default: int = DEFAULT_PAGE, most: int = MOST_PAGE) -> int:
    """The requested size clamped to 1..most; 0 (unset) means `default`."""
    return min(max(size or default, 1), most)


def after(token: str) -> tuple[datetime | None, uuid.UUID | None]:
    """The key (timestamp, id) a page token continues after; (None, None) for the first page.
    INVALID_ARGUMENT "invalid_page_token" for a token this code did not make."""
    if not token:
        return None, None
    try:
        at, row_id = orjson.loads(base64.urlsafe_b64decode(token.encode()))
        return datetime.fromisoformat(at), uuid.UUID(row_id)
    except (ValueError, TypeError, orjson.JSONDecodeError):
        raise InvalidArgument("page_token is not valid", code="invalid_page_token", field="page_token") from None


def cut(rows: Sequence[Any], size: int, at_column: str, id_column: str = "id") -> tuple[Sequence[Any], str]:
    """`rows` fetched with LIMIT size + 1: the page and the token of the next one ("" when last)."""
    if len(rows) <= size:
        return rows, ""
    rows = rows[:size]
    last = rows[-1]
    token = base64.urlsafe_b64encode(orjson.dumps([last[at_column].isoformat(), str(last[id_column])])).decode()
    return rows, token
