"""The bus tables (outbox, processed events, dead letters) in journey's own database.

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


def upgrade() -> None:
    create_bus_tables(op)


def downgrade() -> None:
    drop_bus_tables(op)
