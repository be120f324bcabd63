"""Templates as stored: the `templates` row (name, description, channel, latest version) and immutable
`template_versions` (default locale + variants, with a content hash so an unchanged upsert makes no new
version). Versions never change once written, so they are cached in-process."""

from __future__ import annotations

import dataclasses
import hashlib
import uuid
from collections import OrderedDict
from datetime import datetime

import asyncpg
import orjson

from mcloud.messaging.v1 import messaging_pb2 as pb
from mcloud_common import paging
from mcloud_common.errors import FailedPrecondition, InvalidArgument, NotFound
from mcloud_common.ids import new_id, parse_uuid
from mcloud_common.timestamps import set_timestamp
from messaging.domain import templates as rules
from messaging.domain.names import CHANNEL_ENUM, CHANNEL_OF

_COLUMNS = "t.id, t.name, t.description, t.channel, t.latest_version, t.created_at, t.updated_at"
_VERSION_COLUMNS = "v.version, v.default_locale, v.variants"
CACHE_SIZE = 4096

_versions: OrderedDict[tuple[str, str, int], rules.TemplateVersion] = OrderedDict()


def template_uuid(value: str, field: str = "template_id") -> uuid.UUID:
    parsed = parse_uuid(value)
    if parsed is None:
        raise InvalidArgument(f"{field} must be a UUID", code=f"invalid_{field}", field=field)
    return parsed


def content_hash(default_locale: str, variants: tuple[rules.Variant, ...]) -> str:
    doc = {"default_locale": default_locale, "variants": [dataclasses.asdict(v) for v in variants]}
    return hashlib.sha256(orjson.dumps(doc, option=orjson.OPT_SORT_KEYS)).hexdigest()


def _variants(stored: list[dict]) -> tuple[rules.Variant, ...]:
    fields = {f.name for f in dataclasses.fields(rules.Variant)}
    return tuple(rules.Variant(**{k: v for k, v in item.items() if k in fields}) for item in stored)


def message(row: asyncpg.Record, version: asyncpg.Record | None) -> pb.Template:
    """The template row (and a version's content) as the API returns it."""
    t = pb.Template(id=str(row["id"]), name=row["name"], description=row["description"],
                    channel=CHANNEL_ENUM[row["channel"]], latest_version=row["latest_version"])
    if version is not None:
        t.version = version["version"]
        t.default_locale = version["default_locale"]
        for v in _variants(version["variants"]):
            t.variants.add(**dataclasses.asdict(v))
    set_timestamp(t.created_at, row["created_at"])
    set_timestamp(t.updated_at, row["updated_at"])
    return t


async def _row(conn: asyncpg.Connection, tenant: str, tid: uuid.UUID, *, lock: bool = False) -> asyncpg.Record:
    row = await conn.fetchrow(f"SELECT {_COLUMNS} FROM templates t WHERE t.tenant_id = $1 AND t.id = $2"
                              + (" FOR UPDATE" if lock else ""), tenant, tid)
    if row is None:
        raise NotFound(f"template {tid} not found", code="template_not_found")
    return row


async def _version_row(conn: asyncpg.Connection, tenant: str, tid: uuid.UUID, number: int) -> asyncpg.Record:
    row = await conn.fetchrow(
        f"SELECT {_VERSION_COLUMNS}, v.content_hash FROM template_versions v "
        "WHERE v.tenant_id = $1 AND v.template_id = $2 AND v.version = $3", tenant, tid, number)
    if row is None:
        raise NotFound(f"template {tid} has no version {number}", code="template_version_not_found")
    return row


async def upsert(conn: asyncpg.Connection, tenant: str, template: pb.Template, *, now: datetime) -> pb.Template:
    """Create (empty id) or update a checked template: changed content becomes the next version, identical
    content keeps the current one; name and description change in place. Returns it at that version."""
    variants = rules.variants_of(template)
    default = rules.default_locale_of(template)
    digest = content_hash(default, variants)
    channel = CHANNEL_OF[template.channel]
    doc = [dataclasses.asdict(v) for v in variants]
    async with conn.transaction():
        if not template.id:
            tid = new_id()
            row = await conn.fetchrow(
                f"""
                INSERT INTO templates AS t (tenant_id, id, name, description, channel, latest_version, created_at,
                                            updated_at)
                VALUES ($1, $2, $3, $4, $5, 1, $6, $6) RETURNING {_COLUMNS}
                """, tenant, tid, template.name.strip(), template.description, channel, now)
            number = 1
        else:
            tid = template_uuid(template.id, "id")
            row = await _row(conn, tenant, tid, lock=True)
            if row["channel"] != channel:
                raise FailedPrecondition(f"template {tid} is a {row['channel']} template; its channel cannot change",
                                         code="channel_immutable", field="channel")
            current = await _version_row(conn, tenant, tid, row["latest_version"])
            number = row["latest_version"] if current["content_hash"] == digest else row["latest_version"] + 1
            if number != row["latest_version"] or row["name"] != template.name.strip() \
                    or row["description"] != template.description:
                row = await conn.fetchrow(
                    f"""
                    UPDATE templates AS t SET name = $3, description = $4, latest_version = $5, updated_at = $6
                    WHERE t.tenant_id = $1 AND t.id = $2 RETURNING {_COLUMNS}
                    """, tenant, tid, template.name.strip(), template.description, number, now)
            if number == current["version"]:
                return message(row, current)
        version = await conn.fetchrow(
            f"""
            INSERT INTO template_versions AS v (tenant_id, template_id, version, default_locale, variants, content_hash,
                                                created_at)
            VALUES ($1, $2, $3, $4, $5, $6, $7) RETURNING {_VERSION_COLUMNS}
            """, tenant, tid, number, default, doc, digest, now)
    return message(row, version)


async def get(conn: asyncpg.Connection, tenant: str, template_id: str, version: int = 0) -> pb.Template:
    """The template at `version` (0 = latest); NOT_FOUND template_not_found / template_version_not_found."""
    tid = template_uuid(template_id)
    row = await _row(conn, tenant, tid)
    return message(row, await _version_row(conn, tenant, tid, version or row["latest_version"]))


async def get_version(conn: asyncpg.Connection, tenant_id: str, template_id: str,
                      version: int = 0) -> rules.TemplateVersion:
    """A version's content for rendering (0 = latest). Versions are immutable: cached after the first read
    (a latest lookup still reads the templates row, to learn which version is latest)."""
    tid = template_uuid(template_id)
    if version < 0:
        raise InvalidArgument("version cannot be negative", code="invalid_version", field="version")
    name = None
    if not version:
        row = await _row(conn, tenant_id, tid)
        version, name = row["latest_version"], row["name"]
    key = (str(tenant_id), str(tid), version)
    found = _versions.get(key)
    if found is None:
        if name is None:
            row = await _row(conn, tenant_id, tid)
        stored = await _version_row(conn, tenant_id, tid, version)
        found = rules.TemplateVersion(template_id=str(tid), version=version, channel=row["channel"], name=row["name"],
                                      default_locale=stored["default_locale"], variants=_variants(stored["variants"]))
        _versions[key] = found
        if len(_versions) > CACHE_SIZE:
            _versions.popitem(last=False)
    else:
        _versions.move_to_end(key)
    if name is not None and name != found.name:
        found = dataclasses.replace(found, name=name)
    return found


async def page(conn: asyncpg.Connection, tenant: str, channel: str | None, size: int, token: str
               ) -> tuple[list[pb.Template], str]:
    """Templates at their latest version, most recently updated first, optionally of one channel."""
    size = paging.page_size(size)
    at, last = paging.after(token)
    rows = await conn.fetch(
        f"""
        SELECT {_COLUMNS}, {_VERSION_COLUMNS} FROM templates t
        JOIN template_versions v ON v.tenant_id = t.tenant_id AND v.template_id = t.id AND v.version = t.latest_version
        WHERE t.tenant_id = $1 AND ($2::text IS NULL OR t.channel = $2)
          AND ($3::timestamptz IS NULL OR (t.updated_at, t.id) < ($3, $4))
        ORDER BY t.updated_at DESC, t.id DESC LIMIT $5
        """, tenant, channel, at, last, size + 1)
    rows, token = paging.cut(rows, size, "updated_at")
    return [message(r, r) for r in rows], token
