"""Bulk import of customer files (CRM / POS exports): how a header maps to identifiers and traits,
and how one row becomes an identify call, cleaned like any other.

Columns are matched by a key (trimmed, lower case, camelCase and spaces/dashes to snake_case: "User
ID", "userId" and "user-id" are all user_id). `user_id` and `anonymous_id` become the call's ids; a
column named like another identifier type of the tenant (email, phone, member_id, crm_id, pos_card,
wechat_openid, wechat_unionid, device_id, custom types) is an identifier, carried as a trait under
its type name; every other column is a trait under its header. Empty cells are left out.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

import orjson

from identity.domain.calls import Call, Rejected
from identity.domain.normalise import InvalidIdentifier, normalise
from identity.domain.resolution import Key
from identity.domain.settings import TenantSettings
from mcloud_common.errors import InvalidArgument

SOURCES = ("crm", "pos")
MAX_COLUMNS = 500
MAX_COLUMN_NAME = 128
MAX_CELL = 4096
MAX_IMPORT_ID = 200
_IMPORT_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:\-]*$")
_CAMEL = re.compile(r"(?<=[a-z0-9])(?=[A-Z])")
_SEPARATORS = re.compile(r"[\s\-]+")
_CALL_IDS = ("user_id", "anonymous_id")


def column_key(name: str) -> str:
    return _SEPARATORS.sub("_", _CAMEL.sub("_", name.strip())).lower()


@dataclass(frozen=True)
class ColumnMap:
    """Where each column goes: (column index, identifier type) or (column index, trait name)."""

    identifiers: tuple[tuple[int, str], ...]
    traits: tuple[tuple[int, str], ...]
    width: int


def check_start(import_id: str, source: str, columns: Sequence[str]) -> None:
    """InvalidArgument (stable code) unless the import can start with this id, source and header."""
    if not import_id or len(import_id) > MAX_IMPORT_ID or not _IMPORT_ID.match(import_id):
        raise InvalidArgument(f"import_id must be 1 to {MAX_IMPORT_ID} characters of letters, digits and . _ : -",
                              code="invalid_import_id")
    if source not in SOURCES:
        raise InvalidArgument(f"source must be one of {', '.join(SOURCES)}", code="invalid_source")
    if not columns:
        raise InvalidArgument("columns (the file's header) are required", code="missing_columns")
    if len(columns) > MAX_COLUMNS:
        raise InvalidArgument(f"at most {MAX_COLUMNS} columns", code="too_many_columns")
    seen: dict[str, str] = {}
    for name in columns:
        if len(name) > MAX_COLUMN_NAME or "\x00" in name:
            raise InvalidArgument(f"column name {name[:40]!r} is too long or holds a NUL", code="invalid_column")
        key = column_key(name)
        if key and key in seen:
            raise InvalidArgument(f"columns {seen[key]!r} and {name!r} are the same column", code="duplicate_column")
        seen[key] = name


def map_columns(columns: Sequence[str], settings: TenantSettings) -> ColumnMap:
    identifiers: list[tuple[int, str]] = []
    traits: list[tuple[int, str]] = []
    for i, name in enumerate(columns):
        key = column_key(name)
        if not key:
            continue  # a column without a header is not imported
        if settings.rule(key) is not None:
            identifiers.append((i, key))
        else:
            traits.append((i, name.strip()))
    return ColumnMap(tuple(identifiers), tuple(traits), len(columns))


def has_identifier_column(columns: Sequence[str], settings: TenantSettings) -> bool:
    return bool(map_columns(columns, settings).identifiers)


def row_call(cells: Sequence[str], columns: ColumnMap, settings: TenantSettings, *, import_id: str, source: str,
             number: int, now: datetime) -> tuple[Call, list[Key]]:
    """The identify call for one row (identifiers as written, trimmed) and its normalised identifiers;
    Rejected with a stable code when the row cannot be imported: too many cells, a NUL or overlong
    value, an identifier value that is not valid for its type (the normaliser's code: invalid_email,
    invalid_phone, blocked_identifier, ...), or no identifier at all (no_identifier)."""
    if len(cells) > columns.width:
        raise Rejected("column_count_mismatch", f"the row has {len(cells)} cells, the header {columns.width}")
    for cell in cells:
        if len(cell) > MAX_CELL:
            raise Rejected("value_too_long", f"a cell is longer than {MAX_CELL} characters")
        if "\x00" in cell:
            raise Rejected("invalid_character", "a cell contains a NUL character")
    width = len(cells)
    ids: dict[str, str] = {}
    keys: list[Key] = []
    for i, type_ in columns.identifiers:
        raw = cells[i].strip() if i < width else ""
        if not raw:
            continue
        try:
            keys.append((type_, normalise(settings, type_, raw)))
        except InvalidIdentifier as exc:
            raise Rejected(exc.code, f"{type_}: {exc.detail}") from None
        # as written in the file, like a live identify call: ingest normalises it again (a cache hit)
        ids[type_] = raw
    if not keys:
        raise Rejected("no_identifier", "the row has no identifier value (user_id, email, phone, ...)")
    traits = {name: cells[i].strip() for i, name in columns.traits if i < width and cells[i].strip()}
    traits.update((t, v) for t, v in ids.items() if t not in _CALL_IDS)  # identifiers travel as traits
    traits_json = orjson.dumps(traits).decode()
    call = Call(
        type="identify", message_id=f"import:{import_id}:{number}", anonymous_id=ids.get("anonymous_id", ""),
        user_id=ids.get("user_id", ""), name="", properties_json="{}", traits=traits, traits_json=traits_json,
        context_json=orjson.dumps({"import": {"id": import_id, "row": number}}).decode(), previous_id="",
        group_id="", timestamp=now, received_at=now, channel=source,
    )
    return call, keys
