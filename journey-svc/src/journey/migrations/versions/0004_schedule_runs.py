"""Occurrences of scheduled journeys already fanned out (each exactly once, whichever replica runs it).

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-25
"""

from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute("""
    CREATE TABLE schedule_runs (
        tenant_id uuid NOT NULL,
        journey_id uuid NOT NULL,
        occurrence date NOT NULL,
        version int NOT NULL,
        entered bigint NOT NULL DEFAULT 0,
        started_at timestamptz NOT NULL,
        finished_at timestamptz NULL,
        PRIMARY KEY (tenant_id, journey_id, occurrence)
    )
    """)


def downgrade() -> None:
    op.execute("DROP TABLE IF EXISTS schedule_runs")
