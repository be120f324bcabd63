"""The bus tables every service keeps in its own database: the outbox it publishes from, the
processed-event ledger its consumers dedupe on, and the dead letters they give up on.

Use from an Alembic migration: `create_bus_tables(op)` in upgrade, `drop_bus_tables(op)` in downgrade.
"""

from __future__ import annotations

from typing import Any

NOTIFY_CHANNEL = "mcloud_outbox"

BUS_DDL: list[str] = [
    """
    CREATE TABLE IF NOT EXISTS outbox (
        id bigserial PRIMARY KEY,
        stream text NOT NULL,
        event_id uuid NOT NULL,
        type text NOT NULL DEFAULT '',
        tenant_id text NOT NULL DEFAULT '',
        payload bytea NOT NULL,
        created_at timestamptz NOT NULL DEFAULT now()
    )
    """,
    # one NOTIFY per inserting statement (not per row); Postgres delivers it on commit only
    f"""
    CREATE OR REPLACE FUNCTION mcloud_outbox_notify() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
        PERFORM pg_notify('{NOTIFY_CHANNEL}', '');
        RETURN NULL;
    END
    $$
    """,
    """
    CREATE OR REPLACE TRIGGER outbox_notify AFTER INSERT ON outbox
        FOR EACH STATEMENT EXECUTE FUNCTION mcloud_outbox_notify()
    """,
    """
    CREATE TABLE IF NOT EXISTS processed_events (
        consumer text NOT NULL,
        event_id uuid NOT NULL,
        processed_at timestamptz NOT NULL DEFAULT now(),
        PRIMARY KEY (consumer, event_id)
    )
    """,
    """
    CREATE TABLE IF NOT EXISTS dead_letters (
        id bigserial PRIMARY KEY,
        consumer text NOT NULL,
        stream text NOT NULL,
        message_id text NOT NULL,
        event_id uuid NULL,
        payload bytea NULL,
        error text NOT NULL,
        deliveries int NOT NULL,
        created_at timestamptz NOT NULL DEFAULT now()
    )
    """,
]

DROP_BUS_DDL: list[str] = [
    "DROP TABLE IF EXISTS dead_letters",
    "DROP TABLE IF EXISTS processed_events",
    "DROP TABLE IF EXISTS outbox",
    "DROP FUNCTION IF EXISTS mcloud_outbox_notify()",
]


def create_bus_tables(op: Any) -> None:
    """Create the bus tables (idempotent); `op` is alembic.op or anything with `execute(sql)`."""
    for sql in BUS_DDL:
        op.execute(sql)


def drop_bus_tables(op: Any) -> None:
    """Drop the bus tables and the notify trigger function."""
    for sql in DROP_BUS_DDL:
        op.execute(sql)
