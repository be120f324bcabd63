"""profile features: the index the lifecycle pass scans (customers with at least one order).

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-25
"""

from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

STATEMENTS: list[str] = [
    # The hourly churn / RFM-recency pass looks only at live customers who have ordered; most
    # profiles (anonymous visitors, potential customers) stay out of this index.
    """
    CREATE INDEX profiles_customers ON profiles (id)
    WHERE merged_into IS NULL AND erased_at IS NULL AND lifecycle_stage <> 'potential'
    """,
]


def upgrade() -> None:
    for sql in STATEMENTS:
        op.execute(sql)


def downgrade() -> None:
    op.execute("DROP INDEX IF EXISTS profiles_customers")
