"""Test support for loyalty (used by its tests and the gateway's): a sports-brand program, setup, and
the ledger invariant check."""

from __future__ import annotations

import uuid

import asyncpg

from mcloud.loyalty.v1 import loyalty_pb2 as pb


def sports_program(**overrides) -> pb.Program:
    """Normal / Silver at 1,000 / Gold at 6,000 qualifying points; an order earns 100 points plus 1
    point per currency unit; 14-day return window; points valid 365 days."""
    program = pb.Program(
        name="Runners Club", currency="EUR", enabled=True, pending_days=14, points_validity_days=365,
        expiry_reminder_days=30, tier_window_months=12,
        tiers=[pb.Tier(code="normal", name="Normal", rank=0),
               pb.Tier(code="silver", name="Silver", rank=1, threshold_points=1000, points_multiplier=1.25,
                       discount_percent=5, benefits=[pb.Benefit(code="early_access", name="Early access")]),
               pb.Tier(code="gold", name="Gold", rank=2, threshold_points=6000, points_multiplier=1.5,
                       discount_percent=10, free_shipping=True)],
        earn_rules=[pb.EarnRule(id="per-order", name="An order earns 100 points", trigger="order", points=100,
                                enabled=True),
                    pb.EarnRule(id="per-euro", name="1 point per euro", trigger="order", points_per_unit=1,
                                unit_minor=100, enabled=True),
                    pb.EarnRule(id="signup", name="Welcome", trigger="signup", points=50, enabled=True),
                    pb.EarnRule(id="review", name="Reviews", trigger="review", points=20, enabled=True,
                                cap_points=40, cap_window_days=30)],
    )
    for key, value in overrides.items():
        if isinstance(value, list):
            program.ClearField(key)
            getattr(program, key).extend(value)
        else:
            setattr(program, key, value)
    return program


def order(order_id: str, total_minor: int, *lines: tuple[str, str, int]) -> pb.Order:
    return pb.Order(order_id=order_id, total_minor=total_minor, currency="EUR",
                    lines=[pb.OrderLine(item_id=i, category=c, quantity=1, amount_minor=a) for i, c, a in lines])


async def setup(api, program: pb.Program | None = None) -> tuple[str, str]:
    """A saved program and an enrolled member: (program_id, profile_id)."""
    saved = (await api.call("UpsertProgram", pb.UpsertProgramRequest(program=program or sports_program()))).program
    profile = str(uuid.uuid4())
    await api.call("EnrollMember", pb.EnrollMemberRequest(program_id=saved.id, profile_id=profile, source="web"))
    return saved.id, profile


async def assert_reconciles(db: asyncpg.Connection, tenant: str, program_id: str) -> None:
    """For every member: the ledger sum equals open lots minus debt, no lot is negative, and the
    balance_after of the newest entry is the available balance it implied."""
    rows = await db.fetch(
        """
        SELECT m.profile_id, m.debt,
               (SELECT coalesce(sum(points), 0) FROM ledger_entries e
                 WHERE (e.tenant_id, e.program_id, e.profile_id) = (m.tenant_id, m.program_id, m.profile_id)) AS ledger,
               (SELECT coalesce(sum(remaining), 0) FROM lots l
                 WHERE (l.tenant_id, l.program_id, l.profile_id) = (m.tenant_id, m.program_id, m.profile_id)) AS lots
        FROM members m WHERE m.tenant_id = $1 AND m.program_id = $2
        """, uuid.UUID(tenant), uuid.UUID(program_id))
    for r in rows:
        assert r["ledger"] == r["lots"] - r["debt"], dict(r)
    negative = await db.fetchval("SELECT count(*) FROM lots WHERE tenant_id = $1 AND remaining < 0", uuid.UUID(tenant))
    assert negative == 0


async def published(redis, tenant: str, profile_id: str, type_: str, *, shards: int = 4) -> list:
    """The loyalty events of `type_` about `profile_id` on the bus so far (decoded envelopes)."""
    from mcloud_common.bus import decode, shard_of

    entries = await redis.xrange(f"events.loyalty.{shard_of(profile_id, shards)}")
    events = [decode(fields) for _, fields in entries]
    return [e for e in events if e.tenant_id == tenant and e.profile_id == profile_id and e.type == type_]


async def wait_published(redis, tenant: str, profile_id: str, type_: str, count: int = 1, wait: float = 10.0):
    """Wait until `count` events of `type_` about `profile_id` are on the bus; return them."""
    from mcloud_common.testing.services import wait_until

    async def enough():
        found = await published(redis, tenant, profile_id, type_)
        return found if len(found) >= count else None

    return await wait_until(enough, timeout=wait, message=f"{count} {type_} event(s)")
