"""The trace of what an enrollment's next step continues (W3C traceparent of the entry or of the
awaited event, '' when tracing does not export): the worker's step span links to it.

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-07
"""

from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # a constant default: no table rewrite
    op.execute("ALTER TABLE enrollments ADD COLUMN traceparent text NOT NULL DEFAULT ''")


def downgrade() -> None:
    op.execute("ALTER TABLE enrollments DROP COLUMN traceparent")
