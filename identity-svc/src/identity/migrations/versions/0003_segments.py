"""Segments: rule versions (a backfill knows whether it evaluated the current rules), an events index
for behaviour conditions, and a timestamp reader for date conditions on JSON values.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-25
"""

from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

STATEMENTS: list[str] = [
    # rules_version grows when the rules change; evaluated_version is the version last fully evaluated.
    # A segment with evaluated_version < rules_version is stale: the worker backfills it.
    "ALTER TABLE segments ADD COLUMN rules_version bigint NOT NULL DEFAULT 1",
    "ALTER TABLE segments ADD COLUMN evaluated_version bigint NOT NULL DEFAULT 0",
    # Behaviour conditions: events of one profile with one name in a time window.
    "CREATE INDEX events_profile_name ON events (tenant_id, profile_id, name, timestamp)",
    # A JSON string holding an ISO-8601 date or timestamp as timestamptz (no offset: UTC); NULL for
    # anything else, never an error (one bad trait value must not fail a whole segment).
    r"""
    CREATE FUNCTION segment_timestamp(v jsonb) RETURNS timestamptz LANGUAGE sql STABLE PARALLEL SAFE AS $$
        SELECT CASE
            WHEN jsonb_typeof(v) IS DISTINCT FROM 'string' OR (v #>> '{}') !~ '^\d{4}-\d\d-\d\d' THEN NULL
            WHEN (jsonb_path_query_first(v, '$.datetime()', '{}', true) #>> '{}') ~ '[+-]\d\d:\d\d(:\d\d)?$'
                THEN (jsonb_path_query_first(v, '$.datetime()', '{}', true) #>> '{}')::timestamptz
            ELSE (jsonb_path_query_first(v, '$.datetime()', '{}', true) #>> '{}')::timestamp AT TIME ZONE 'UTC'
        END
    $$
    """,
]


def upgrade() -> None:
    for sql in STATEMENTS:
        op.execute(sql)


def downgrade() -> None:
    op.execute("DROP FUNCTION IF EXISTS segment_timestamp(jsonb)")
    op.execute("DROP INDEX IF EXISTS events_profile_name")
    op.execute("ALTER TABLE segments DROP COLUMN IF EXISTS evaluated_version")
    op.execute("ALTER TABLE segments DROP COLUMN IF EXISTS rules_version")
