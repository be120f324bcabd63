"""Test helpers shared by recommend's suites (and the gateway's): a sports-brand catalogue in which
Rachel's story plays, and feedback builders."""

from __future__ import annotations

import uuid
from datetime import datetime

from mcloud.events.v1 import event_pb2
from mcloud.recommend.v1 import recommend_pb2 as pb
from mcloud_common.bus import decode
from mcloud_common.testing.services import wait_until
from mcloud_common.timestamps import to_timestamp

P, A = pb.ITEM_KIND_PRODUCT, pb.ITEM_KIND_ACTIVITY


def item(item_id: str, categories: list[str], *, title: str = "", price: int = 0, tags: tuple[str, ...] = (),
         kind: int = P, in_stock: bool = True, replenish: int = 0, brand: str = "", currency: str = "EUR",
         starts_at: datetime | None = None, ends_at: datetime | None = None) -> pb.Item:
    out = pb.Item(id=item_id, kind=kind, title=title or item_id, categories=categories, price_minor=price,
                  currency=currency if price else "", in_stock=in_stock, tags=tags, replenish_after_days=replenish,
                  brand=brand)
    if starts_at:
        out.starts_at.CopyFrom(to_timestamp(starts_at))
    if ends_at:
        out.ends_at.CopyFrom(to_timestamp(ends_at))
    return out


SHOES = ["sports", "running", "running_shoes"]


def sports_catalogue() -> list[pb.Item]:
    """Running shoes, socks, watches, energy gels (a consumable), apparel, a yoga mat, and activities."""
    return [
        item("pegasus-40", SHOES, title="Pegasus 40", price=15900, tags=("running", "road"), brand="Nike"),
        item("vomero-17", SHOES, title="Vomero 17", price=17900, tags=("running", "cushioned"), brand="Nike"),
        item("ghost-15", SHOES, title="Ghost 15", price=14900, tags=("running", "road"), brand="Brooks"),
        item("clifton-9", SHOES, title="Clifton 9", price=14500, tags=("running",), brand="Hoka"),
        item("run-socks", ["sports", "running", "socks"], title="Run socks", price=1500, tags=("running",)),
        item("merino-socks", ["sports", "running", "socks"], title="Merino socks", price=2200, tags=("running",)),
        item("forerunner-265", ["sports", "running", "watches"], title="Forerunner 265", price=44900,
             tags=("running", "gps")),
        item("gel-pack", ["sports", "nutrition", "energy_gels"], title="Energy gels x12", price=2400,
             tags=("running", "marathon"), replenish=30),
        item("electrolytes", ["sports", "nutrition", "drinks"], title="Electrolytes", price=1200, replenish=20),
        item("run-tee", ["sports", "apparel", "tops"], title="Dri-FIT tee", price=3500, tags=("running",)),
        item("rain-jacket", ["sports", "apparel", "jackets"], title="Rain jacket", price=9900, in_stock=False),
        item("yoga-mat", ["sports", "yoga", "mats"], title="Yoga mat", price=3900, tags=("yoga",)),
        item("city-marathon", ["events", "running_events"], title="City Marathon 2026", kind=A,
             tags=("running", "marathon")),
        item("yoga-retreat", ["events", "yoga_events"], title="Yoga retreat", kind=A, tags=("yoga",)),
    ]


def feedback(person: str, item_id: str, kind: int, at: datetime | None = None, *, anonymous: bool = False,
             recommendation_id: str = "", event_id: str = "") -> pb.Feedback:
    out = pb.Feedback(event_id=event_id or str(uuid.uuid4()), item_id=item_id, kind=kind,
                      recommendation_id=recommendation_id)
    if anonymous:
        out.anonymous_id = person
    else:
        out.profile_id = person
    if at is not None:
        out.occurred_at.CopyFrom(to_timestamp(at))
    return out


async def published(redis, tenant: str, type_: str) -> list[event_pb2.Event]:
    """The recommend events of `type_` for `tenant` on the bus (empty while none)."""
    out = []
    async for stream in redis.scan_iter(match="events.recommend.*"):
        for _, fields in await redis.xrange(stream):
            event = decode(fields)
            if event.tenant_id == tenant and event.type == type_:
                out.append(event)
    return out


async def wait_published(redis, tenant: str, type_: str, count: int = 1) -> list[event_pb2.Event]:
    async def probe():
        events = await published(redis, tenant, type_)
        return events if len(events) >= count else None

    return await wait_until(probe, timeout=10, message=f"{count} {type_}")
