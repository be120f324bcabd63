"""The catalogue: items in bulk (upsert by id, delete), reads, and the per-tenant version every write
bumps so each replica reloads its in-memory copy."""

from __future__ import annotations

import base64
from collections.abc import Sequence
from datetime import datetime

import asyncpg
import orjson

from mcloud.recommend.v1 import recommend_pb2 as pb
from mcloud_common.errors import InvalidArgument, NotFound
from mcloud_common.timestamps import from_timestamp, set_timestamp

MAX_BATCH = 1000
_COLUMNS = ("id, kind, title, categories, brand, price_minor, currency, in_stock, tags, image_url, url, "
            "replenish_after_days, starts_at, ends_at, attributes, updated_at")


def _ts(ts) -> datetime | None:
    return from_timestamp(ts) if ts.seconds or ts.nanos else None


def validate(items: Sequence[pb.Item]) -> None:
    if not items:
        raise InvalidArgument("items must not be empty", code="no_items", field="items")
    if len(items) > MAX_BATCH:
        raise InvalidArgument(f"at most {MAX_BATCH} items per call", code="too_many_items", field="items")
    seen: set[str] = set()
    for n, item in enumerate(items):
        f = f"items[{n}]"
        if not 1 <= len(item.id) <= 128 or item.id.strip() != item.id:
            raise InvalidArgument("an item id is 1..128 characters without surrounding spaces", code="invalid_item_id",
                                  field=f"{f}.id")
        if item.id in seen:
            raise InvalidArgument(f"item {item.id!r} appears twice", code="duplicate_item", field=f"{f}.id")
        seen.add(item.id)
        if item.kind not in (pb.ITEM_KIND_UNSPECIFIED, pb.ITEM_KIND_PRODUCT, pb.ITEM_KIND_ACTIVITY,
                             pb.ITEM_KIND_CONTENT):
            raise InvalidArgument("unknown item kind", code="invalid_kind", field=f"{f}.kind")
        if item.price_minor < 0:
            raise InvalidArgument("price must not be negative", code="invalid_price", field=f"{f}.price_minor")
        if item.price_minor and not (len(item.currency) == 3 and item.currency.isalpha() and item.currency.isupper()):
            raise InvalidArgument("a priced item needs an ISO 4217 currency such as EUR", code="invalid_currency",
                                  field=f"{f}.currency")
        if item.replenish_after_days < 0 or item.replenish_after_days > 3650:
            raise InvalidArgument("replenish_after_days must be within 0..3650", code="invalid_replenish",
                                  field=f"{f}.replenish_after_days")
        if any(not c.strip() for c in item.categories) or len(item.categories) > 10:
            raise InvalidArgument("categories: up to 10 non-empty names", code="invalid_categories",
                                  field=f"{f}.categories")
        starts, ends = _ts(item.starts_at), _ts(item.ends_at)
        if starts and ends and ends <= starts:
            raise InvalidArgument("ends_at must be after starts_at", code="invalid_window", field=f"{f}.ends_at")
        if item.attributes_json:
            try:
                attrs = orjson.loads(item.attributes_json)
            except orjson.JSONDecodeError:
                attrs = None
            if not isinstance(attrs, dict):
                raise InvalidArgument("attributes_json must be a JSON object", code="invalid_attributes",
                                      field=f"{f}.attributes_json")


async def upsert(conn: asyncpg.Connection, tenant: str, items: Sequence[pb.Item], now: datetime) -> int:
    validate(items)
    await conn.execute(
        f"""
        INSERT INTO items (tenant_id, {_COLUMNS})
        SELECT $1, u.id, u.kind, u.title, array(SELECT jsonb_array_elements_text(u.cats::jsonb)), u.brand, u.price,
               u.currency, u.in_stock, array(SELECT jsonb_array_elements_text(u.tags::jsonb)), u.image_url, u.url,
               u.replenish, u.starts_at, u.ends_at, u.attrs, $2
        FROM unnest($3::text[], $4::smallint[], $5::text[], $6::text[], $7::text[], $8::bigint[], $9::text[],
                    $10::bool[], $11::text[], $12::text[], $13::text[], $14::int[], $15::timestamptz[],
                    $16::timestamptz[], $17::jsonb[])
             AS u(id, kind, title, cats, brand, price, currency, in_stock, tags, image_url, url, replenish,
                  starts_at, ends_at, attrs)
        ON CONFLICT (tenant_id, id) DO UPDATE SET
            kind = EXCLUDED.kind, title = EXCLUDED.title, categories = EXCLUDED.categories, brand = EXCLUDED.brand,
            price_minor = EXCLUDED.price_minor, currency = EXCLUDED.currency, in_stock = EXCLUDED.in_stock,
            tags = EXCLUDED.tags, image_url = EXCLUDED.image_url, url = EXCLUDED.url,
            replenish_after_days = EXCLUDED.replenish_after_days, starts_at = EXCLUDED.starts_at,
            ends_at = EXCLUDED.ends_at, attributes = EXCLUDED.attributes, updated_at = EXCLUDED.updated_at
        """,
        tenant, now, [i.id for i in items], [i.kind or pb.ITEM_KIND_PRODUCT for i in items],
        [i.title for i in items], [orjson.dumps([c.strip() for c in i.categories]).decode() for i in items],
        [i.brand for i in items], [i.price_minor for i in items], [i.currency for i in items],
        [i.in_stock for i in items], [orjson.dumps(list(dict.fromkeys(i.tags))).decode() for i in items],
        [i.image_url for i in items], [i.url for i in items], [i.replenish_after_days for i in items],
        [_ts(i.starts_at) for i in items], [_ts(i.ends_at) for i in items],
        [orjson.loads(i.attributes_json or "{}") for i in items])
    await bump(conn, tenant)
    return len(items)


async def delete(conn: asyncpg.Connection, tenant: str, item_ids: Sequence[str]) -> int:
    if not item_ids:
        raise InvalidArgument("item_ids must not be empty", code="no_items", field="item_ids")
    if len(item_ids) > MAX_BATCH:
        raise InvalidArgument(f"at most {MAX_BATCH} item ids per call", code="too_many_items", field="item_ids")
    deleted = await conn.fetchval(
        "WITH d AS (DELETE FROM items WHERE tenant_id = $1 AND id = ANY($2::text[]) RETURNING 1) "
        "SELECT count(*) FROM d", tenant, list(item_ids))
    if deleted:
        await bump(conn, tenant)
    return deleted


async def bump(conn: asyncpg.Connection, tenant: str) -> None:
    await conn.execute(
        "INSERT INTO catalog_versions (tenant_id, version) VALUES ($1, 1) "
        "ON CONFLICT (tenant_id) DO UPDATE SET version = catalog_versions.version + 1", tenant)


async def version(conn: asyncpg.Connection | asyncpg.Pool, tenant: str) -> int:
    return await conn.fetchval("SELECT version FROM catalog_versions WHERE tenant_id = $1", tenant) or 0


def item_pb(r: asyncpg.Record) -> pb.Item:
    item = pb.Item(id=r["id"], kind=r["kind"], title=r["title"], categories=r["categories"], brand=r["brand"],
                   price_minor=r["price_minor"], currency=r["currency"], in_stock=r["in_stock"], tags=r["tags"],
                   image_url=r["image_url"], url=r["url"], replenish_after_days=r["replenish_after_days"])
    attrs = r["attributes"]
    if attrs:
        item.attributes_json = orjson.dumps(attrs).decode()
    for name in ("starts_at", "ends_at", "updated_at"):
        if r[name] is not None:
            set_timestamp(getattr(item, name), r[name])
    return item


async def get(conn: asyncpg.Connection | asyncpg.Pool, tenant: str, item_id: str) -> pb.Item:
    r = await conn.fetchrow(f"SELECT {_COLUMNS} FROM items WHERE tenant_id = $1 AND id = $2", tenant, item_id)
    if r is None:
        raise NotFound(f"no item {item_id!r} in the catalogue", code="item_not_found")
    return item_pb(r)


async def load(conn: asyncpg.Connection | asyncpg.Pool, tenant: str) -> list[pb.Item]:
    rows = await conn.fetch(f"SELECT {_COLUMNS} FROM items WHERE tenant_id = $1 ORDER BY id", tenant)
    return [item_pb(r) for r in rows]


def _token(item_id: str) -> str:
    return base64.urlsafe_b64encode(item_id.encode()).decode()


async def page(conn: asyncpg.Connection | asyncpg.Pool, tenant: str, request: pb.ListItemsRequest
               ) -> tuple[list[pb.Item], str]:
    size = request.page_size or 50
    if not 1 <= size <= 500:
        raise InvalidArgument("page_size must be within 1..500", code="invalid_page_size", field="page_size")
    try:
        after = base64.urlsafe_b64decode(request.page_token.encode()).decode() if request.page_token else ""
    except (ValueError, UnicodeDecodeError):
        raise InvalidArgument("page_token is not one this service gave", code="invalid_page_token",
                              field="page_token") from None
    rows = await conn.fetch(
        f"SELECT {_COLUMNS} FROM items WHERE tenant_id = $1 AND id > $2 "
        "AND ($3 = '' OR $3 = ANY(categories)) AND ($4 = 0 OR kind = $4) ORDER BY id LIMIT $5",
        tenant, after, request.category, request.kind, size + 1)
    more = len(rows) > size
    rows = rows[:size]
    return [item_pb(r) for r in rows], _token(rows[-1]["id"]) if more else ""
