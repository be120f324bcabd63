"""Journeys, their immutable published versions, and idempotent responses.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-25

`journeys.draft` is the editable definition text (stored even when invalid); publishing freezes it
as `journey_versions(version)`, which is never updated.
"""

from alembic import op

from mcloud_common.idempotency import IDEMPOTENCY_DDL

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

STATEMENTS = [
    """
    CREATE TABLE journeys (
        tenant_id uuid NOT NULL,
        id uuid NOT NULL,
        name text NOT NULL,
        description text NOT NULL DEFAULT '',
        status text NOT NULL DEFAULT 'draft',
        draft text NOT NULL,
        published_version int NOT NULL DEFAULT 0,
        created_at timestamptz NOT NULL,
        updated_at timestamptz NOT NULL,
        published_at timestamptz NULL,
        PRIMARY KEY (tenant_id, id)
    )
    """,
    "CREATE INDEX journeys_updated ON journeys (tenant_id, updated_at DESC, id DESC)",
    """
    CREATE TABLE journey_versions (
        tenant_id uuid NOT NULL,
        journey_id uuid NOT NULL,
        version int NOT NULL,
        definition text NOT NULL,
        entry_type text NOT NULL,
        entry_event text NOT NULL DEFAULT '',
        published_at timestamptz NOT NULL,
        PRIMARY KEY (tenant_id, journey_id, version)
    )
    """,
    """
    CREATE FUNCTION journey_versions_immutable() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
        RAISE EXCEPTION 'published journey versions are immutable: publish a new version'
            USING ERRCODE = 'restrict_violation';
    END
    $$
    """,
    """
    CREATE TRIGGER journey_versions_immutable BEFORE UPDATE ON journey_versions
        FOR EACH ROW EXECUTE FUNCTION journey_versions_immutable()
    """,
    IDEMPOTENCY_DDL,
]


def upgrade() -> None:
    for sql in STATEMENTS:
        op.execute(sql)


def downgrade() -> None:
    for table in ("idempotency", "journey_versions", "journeys"):
        op.execute(f"DROP TABLE IF EXISTS {table}")
    op.execute("DROP FUNCTION IF EXISTS journey_versions_immutable()")
