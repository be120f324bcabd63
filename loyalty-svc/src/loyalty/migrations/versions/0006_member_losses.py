"""Members lost: one anonymous row per membership erased (profile.erased), so the program report can
count members lost per period after the person's data is gone.

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-07
"""

from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None

STATEMENTS = [
    """
    CREATE TABLE member_losses (
        tenant_id uuid NOT NULL,
        program_id uuid NOT NULL,
        tier_code text NOT NULL,
        reason text NOT NULL CHECK (reason IN ('erased')),
        lost_at timestamptz NOT NULL
    )
    """,
    "CREATE INDEX member_losses_period ON member_losses (tenant_id, program_id, lost_at)",
]


def upgrade() -> None:
    for statement in STATEMENTS:
        op.execute(statement)


def downgrade() -> None:
    op.execute("DROP TABLE IF EXISTS member_losses")
