"""Identifiers: UUIDv7 (time-ordered, so B-tree inserts stay local and ids sort by creation)."""

from __future__ import annotations

import uuid

from uuid_utils.compat import uuid7 as _uuid7


def new_id() -> uuid.UUID:
    """A fresh UUIDv7 as a standard `uuid.UUID`."""
    return _uuid7()


def new_id_str() -> str:
    return str(_uuid7())


def parse_uuid(value: str) -> uuid.UUID | None:
    """The UUID in `value`, or None when it is not one."""
    try:
        return uuid.UUID(value)
    except (ValueError, AttributeError, TypeError):
        return None
