"""Revoked coupons keep when, why and by whom.

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-26

The 'revoked' state already exists (0003); RevokeCoupon now records its circumstances. A revoked
coupon is final: the expiry/reminder job only looks at 'issued' and 'reserved' rows, so it never
touches one.
"""

from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None

STATEMENTS = [
    """
    ALTER TABLE coupons
        ADD COLUMN revoked_at timestamptz NULL,
        ADD COLUMN revoke_reason text NOT NULL DEFAULT '',
        ADD COLUMN revoked_by text NOT NULL DEFAULT '',
        ADD CONSTRAINT coupons_revoked_at CHECK (state <> 'revoked' OR revoked_at IS NOT NULL)
    """,
]


def upgrade() -> None:
    for sql in STATEMENTS:
        op.execute(sql)


def downgrade() -> None:
    op.execute("""
        ALTER TABLE coupons
            DROP CONSTRAINT IF EXISTS coupons_revoked_at,
            DROP COLUMN IF EXISTS revoked_by,
            DROP COLUMN IF EXISTS revoke_reason,
            DROP COLUMN IF EXISTS revoked_at
    """)
