"""Indexes for serving a person: their latest interactions read from the index alone (item, kind and
weight carried in it), and their purchases and dismissals found without reading the rest of their log.

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-07
"""

from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute("CREATE INDEX interactions_person_covering ON interactions (tenant_id, person, occurred_at DESC) "
               "INCLUDE (item_id, kind, weight)")
    op.execute("DROP INDEX interactions_person")
    # purchases (4) and dismissals (6): what serving excludes, a small share of anyone's log
    op.execute("CREATE INDEX interactions_marks ON interactions (tenant_id, person, item_id, kind, occurred_at) "
               "WHERE kind IN (4, 6)")


def downgrade() -> None:
    op.execute("DROP INDEX interactions_marks")
    op.execute("CREATE INDEX interactions_person ON interactions (tenant_id, person, occurred_at DESC)")
    op.execute("DROP INDEX interactions_person_covering")
