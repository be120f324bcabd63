"""Rewards catalogue and redemption orders.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-25

`rewards.stock` only ever moves through conditional UPDATEs (`... WHERE stock >= qty`) in the
transaction that debits the points, so it cannot go below zero however many members redeem at once
(the CHECK is the second wall). A redemption keeps what it was at the time (kind, points, quantity),
so later edits of the reward never change an order already placed. Shipping addresses are personal
data: profile.erased deletes the person's redemptions.
"""

from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

STATEMENTS = [
    """
    CREATE TABLE rewards (
        tenant_id uuid NOT NULL,
        id uuid NOT NULL,
        program_id uuid NOT NULL,
        name text NOT NULL,
        description text NOT NULL DEFAULT '',
        image_url text NOT NULL DEFAULT '',
        kind text NOT NULL CHECK (kind IN ('gift', 'coupon', 'digital')),
        points_cost bigint NOT NULL CHECK (points_cost > 0),
        stock bigint NOT NULL DEFAULT 0 CHECK (stock >= 0),
        unlimited_stock boolean NOT NULL DEFAULT false,
        min_tier_code text NOT NULL DEFAULT '',
        coupon_campaign_id uuid NULL,
        enabled boolean NOT NULL DEFAULT true,
        created_at timestamptz NOT NULL,
        updated_at timestamptz NOT NULL,
        PRIMARY KEY (tenant_id, id),
        CHECK ((kind = 'coupon') = (coupon_campaign_id IS NOT NULL))
    )
    """,
    "CREATE INDEX rewards_catalogue ON rewards (tenant_id, program_id, points_cost, id)",
    """
    CREATE TABLE reward_redemptions (
        tenant_id uuid NOT NULL,
        id uuid NOT NULL,
        program_id uuid NOT NULL,
        profile_id uuid NOT NULL,
        reward_id uuid NOT NULL,
        kind text NOT NULL CHECK (kind IN ('gift', 'coupon', 'digital')),
        quantity int NOT NULL CHECK (quantity > 0),
        points bigint NOT NULL CHECK (points > 0),
        status text NOT NULL CHECK (status IN ('pending', 'fulfilled', 'shipped', 'delivered', 'cancelled')),
        ledger_entry_id uuid NOT NULL,
        refund_entry_id uuid NULL,
        coupon_code text NOT NULL DEFAULT '',
        shipping_address jsonb NULL,
        tracking_number text NOT NULL DEFAULT '',
        cancel_reason text NOT NULL DEFAULT '',
        idempotency_key text NOT NULL DEFAULT '',
        created_at timestamptz NOT NULL,
        updated_at timestamptz NOT NULL,
        PRIMARY KEY (tenant_id, id),
        FOREIGN KEY (tenant_id, reward_id) REFERENCES rewards (tenant_id, id)
    )
    """,
    "CREATE INDEX reward_redemptions_member ON reward_redemptions "
    "(tenant_id, program_id, profile_id, created_at DESC, id DESC)",
    "CREATE INDEX reward_redemptions_profile ON reward_redemptions (tenant_id, profile_id)",
    "CREATE INDEX reward_redemptions_reward ON reward_redemptions (tenant_id, reward_id)",
    # a second wall behind the idempotency table: one redemption per request key
    "CREATE UNIQUE INDEX reward_redemptions_key ON reward_redemptions (tenant_id, program_id, idempotency_key) "
    "WHERE idempotency_key <> ''",
]

TABLES = ("reward_redemptions", "rewards")


def upgrade() -> None:
    for sql in STATEMENTS:
        op.execute(sql)


def downgrade() -> None:
    for table in TABLES:
        op.execute(f"DROP TABLE IF EXISTS {table}")
