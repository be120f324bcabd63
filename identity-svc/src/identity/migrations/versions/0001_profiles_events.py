"""Profiles, identifiers, merges, time-partitioned events, message-id dedupe, bus tables.

Revision ID: 0001
Revises:
Create Date: 2026-11-25
"""

from alembic import op

from mcloud_common.bus import create_bus_tables, drop_bus_tables

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

STATEMENTS = [
    """
    CREATE TABLE profiles (
        id uuid PRIMARY KEY,
        tenant_id uuid NOT NULL,
        traits jsonb NOT NULL DEFAULT '{}',
        tags text[] NOT NULL DEFAULT '{}',
        lifecycle_stage text NOT NULL DEFAULT 'potential',
        computed jsonb NOT NULL DEFAULT '{}',
        merged_into uuid REFERENCES profiles (id),
        created_at timestamptz NOT NULL DEFAULT now(),
        updated_at timestamptz NOT NULL DEFAULT now()
    )
    """,
    "CREATE INDEX profiles_tenant ON profiles (tenant_id, id)",
    """
    CREATE TABLE identifiers (
        tenant_id uuid NOT NULL,
        type text NOT NULL,
        value text NOT NULL,
        profile_id uuid NOT NULL REFERENCES profiles (id),
        created_at timestamptz NOT NULL DEFAULT now(),
        PRIMARY KEY (tenant_id, type, value)
    )
    """,
    "CREATE INDEX identifiers_profile ON identifiers (tenant_id, profile_id)",
    """
    CREATE TABLE merges (
        id bigserial PRIMARY KEY,
        tenant_id uuid NOT NULL,
        from_profile uuid NOT NULL,
        into_profile uuid NOT NULL,
        reason text NOT NULL,
        actor text NOT NULL DEFAULT 'system',
        created_at timestamptz NOT NULL DEFAULT now()
    )
    """,
    "CREATE INDEX merges_into ON merges (tenant_id, into_profile)",
    # Client message ids seen, for dedupe (Segment messageId). Unpartitioned so the key is global.
    """
    CREATE TABLE message_ids (
        tenant_id uuid NOT NULL,
        message_id text NOT NULL,
        received_at timestamptz NOT NULL DEFAULT now(),
        PRIMARY KEY (tenant_id, message_id)
    )
    """,
    # Append-only event log, range-partitioned by month of receipt; a default partition catches the rest.
    """
    CREATE TABLE events (
        id uuid NOT NULL,
        tenant_id uuid NOT NULL,
        profile_id uuid NOT NULL,
        message_id text NOT NULL,
        type text NOT NULL,
        name text NOT NULL DEFAULT '',
        anonymous_id text NOT NULL DEFAULT '',
        user_id text NOT NULL DEFAULT '',
        properties jsonb NOT NULL DEFAULT '{}',
        traits jsonb NOT NULL DEFAULT '{}',
        context jsonb NOT NULL DEFAULT '{}',
        channel text NOT NULL DEFAULT '',
        timestamp timestamptz NOT NULL,
        received_at timestamptz NOT NULL,
        PRIMARY KEY (received_at, id)
    ) PARTITION BY RANGE (received_at)
    """,
    "CREATE TABLE events_default PARTITION OF events DEFAULT",
    "CREATE INDEX events_profile ON events (tenant_id, profile_id, timestamp DESC)",
    """
    CREATE FUNCTION ensure_event_partitions(months_ahead int) RETURNS void LANGUAGE plpgsql AS $$
    DECLARE
        m date := date_trunc('month', now())::date;
        i int;
        part text;
    BEGIN
        FOR i IN 0..months_ahead LOOP
            part := 'events_' || to_char(m, 'YYYYMM');
            IF to_regclass(part) IS NULL THEN
                EXECUTE format('CREATE TABLE %I PARTITION OF events FOR VALUES FROM (%L) TO (%L)',
                               part, m, (m + interval '1 month')::date);
            END IF;
            m := (m + interval '1 month')::date;
        END LOOP;
    END $$
    """,
    "SELECT ensure_event_partitions(2)",
]


def upgrade() -> None:
    for sql in STATEMENTS:
        op.execute(sql)
    create_bus_tables(op)


def downgrade() -> None:
    drop_bus_tables(op)
    for table in ("events", "message_ids", "merges", "identifiers", "profiles"):
        op.execute(f"DROP TABLE IF EXISTS {table} CASCADE")
    op.execute("DROP FUNCTION IF EXISTS ensure_event_partitions(int)")
