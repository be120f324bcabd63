"""The bus tables: DDL for migrations, idempotent, and the outbox NOTIFY trigger."""

from __future__ import annotations

from mcloud_common.bus import BUS_DDL, NOTIFY_CHANNEL, create_bus_tables, drop_bus_tables


class RecordingOp:
    def __init__(self) -> None:
        self.statements: list[str] = []

    def execute(self, sql: str) -> None:
        self.statements.append(sql)


def test_create_and_drop_execute_every_statement_through_op():
    op = RecordingOp()
    create_bus_tables(op)
    assert op.statements == BUS_DDL
    op = RecordingOp()
    drop_bus_tables(op)
    assert any("DROP TABLE IF EXISTS outbox" in s for s in op.statements)


async def test_ddl_is_idempotent_and_drop_removes_everything(bus_pool):
    async with bus_pool.acquire() as conn:
        for sql in BUS_DDL:
            await conn.execute(sql)
        tables = {r["tablename"] for r in await conn.fetch("SELECT tablename FROM pg_tables")}
        assert {"outbox", "processed_events", "dead_letters"} <= tables
        op = RecordingOp()
        drop_bus_tables(op)
        for sql in op.statements:
            await conn.execute(sql)
        tables = {r["tablename"] for r in await conn.fetch("SELECT tablename FROM pg_tables")}
        assert not {"outbox", "processed_events", "dead_letters"} & tables


async def test_outbox_insert_notifies_once_per_statement_on_commit(bus_pool, wait_until):
    got: list[str] = []
    async with bus_pool.acquire() as listener, bus_pool.acquire() as writer:
        def on_notify(*args) -> None:
            got.append(args[2])

        await listener.add_listener(NOTIFY_CHANNEL, on_notify)
        async with writer.transaction():
            await writer.execute(
                "INSERT INTO outbox (stream, event_id, payload) "
                "SELECT 's', gen_random_uuid(), '\\x00'::bytea FROM generate_series(1, 50)"
            )
            await listener.fetchval("SELECT 1")  # a round trip: any NOTIFY sent so far is in by now
            assert got == []
        await wait_until(lambda: got)
        await listener.fetchval("SELECT 1")
        assert got == [NOTIFY_CHANNEL]
        await listener.remove_listener(NOTIFY_CHANNEL, on_notify)
