"""Coupon campaigns and coupons.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-25

One `coupons` row per code of a tenant, whatever its source, so codes are unique per tenant by the
primary key: a pool code is a row in state 'available' (no owner) until it is issued; a generated
code gets its row when issued. Erasing a person deletes their generated coupons and keeps their pool
codes as 'erased' (consumed, ownerless) so they are never handed out again.
Campaign counters (issued_count, redeemed_count, pool_available) are kept in the campaign row by the
same transactions that change them; `issued_count < max_issued` in a conditional UPDATE is what
stops a campaign from over-issuing under concurrency.
"""

from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

STATEMENTS = [
    """
    CREATE TABLE coupon_campaigns (
        tenant_id uuid NOT NULL,
        id uuid NOT NULL,
        name text NOT NULL,
        description text NOT NULL DEFAULT '',
        discount_type text NOT NULL CHECK (discount_type IN ('percent_off', 'amount_off', 'free_shipping', 'gift')),
        percent_off int NOT NULL DEFAULT 0,
        amount_off_minor bigint NOT NULL DEFAULT 0,
        currency text NOT NULL DEFAULT '',
        min_order_minor bigint NOT NULL DEFAULT 0,
        categories text[] NOT NULL DEFAULT '{}',
        gift_item_id text NOT NULL DEFAULT '',
        valid_from timestamptz NULL,
        valid_until timestamptz NULL,
        validity_days int NOT NULL DEFAULT 0,
        max_issued bigint NOT NULL DEFAULT 0,
        per_profile_limit int NOT NULL DEFAULT 0,
        remind_days_before_expiry int NOT NULL DEFAULT 0,
        code_prefix text NOT NULL DEFAULT '',
        code_source text NOT NULL CHECK (code_source IN ('generated', 'pool')),
        status text NOT NULL CHECK (status IN ('active', 'paused', 'ended')),
        issued_count bigint NOT NULL DEFAULT 0,
        redeemed_count bigint NOT NULL DEFAULT 0,
        pool_available bigint NOT NULL DEFAULT 0 CHECK (pool_available >= 0),
        created_at timestamptz NOT NULL,
        updated_at timestamptz NOT NULL,
        PRIMARY KEY (tenant_id, id)
    )
    """,
    "CREATE INDEX coupon_campaigns_recent ON coupon_campaigns (tenant_id, created_at DESC, id DESC)",
    """
    CREATE TABLE coupons (
        tenant_id uuid NOT NULL,
        code text NOT NULL,
        campaign_id uuid NOT NULL,
        profile_id uuid NULL,
        state text NOT NULL
            CHECK (state IN ('available', 'issued', 'reserved', 'redeemed', 'expired', 'revoked', 'erased')),
        pooled boolean NOT NULL,
        source text NOT NULL DEFAULT '',
        issue_key text NULL,
        issued_at timestamptz NULL,
        expires_at timestamptz NULL,
        remind_at timestamptz NULL,
        reminded_at timestamptz NULL,
        reserved_order_id text NOT NULL DEFAULT '',
        reserved_until timestamptz NULL,
        redeemed_order_id text NOT NULL DEFAULT '',
        redeemed_at timestamptz NULL,
        discount_minor bigint NOT NULL DEFAULT 0,
        currency text NOT NULL DEFAULT '',
        added_at timestamptz NOT NULL,
        PRIMARY KEY (tenant_id, code),
        FOREIGN KEY (tenant_id, campaign_id) REFERENCES coupon_campaigns (tenant_id, id),
        CHECK ((state IN ('available', 'erased')) = (profile_id IS NULL)),
        CHECK (state IN ('available', 'erased') OR issued_at IS NOT NULL),
        CHECK (state <> 'reserved' OR (reserved_order_id <> '' AND reserved_until IS NOT NULL))
    )
    """,
    "CREATE UNIQUE INDEX coupons_issue_key ON coupons (tenant_id, issue_key) WHERE issue_key IS NOT NULL",
    """CREATE INDEX coupons_wallet ON coupons (tenant_id, profile_id, issued_at DESC, code DESC)
       WHERE profile_id IS NOT NULL""",
    "CREATE INDEX coupons_holder ON coupons (tenant_id, campaign_id, profile_id) WHERE profile_id IS NOT NULL",
    "CREATE INDEX coupons_pool ON coupons (tenant_id, campaign_id) WHERE state = 'available'",
    "CREATE INDEX coupons_expiry ON coupons (expires_at) WHERE state = 'issued' AND expires_at IS NOT NULL",
    "CREATE INDEX coupons_holds ON coupons (reserved_until) WHERE state = 'reserved'",
    """CREATE INDEX coupons_remind ON coupons (remind_at)
       WHERE state = 'issued' AND reminded_at IS NULL AND remind_at IS NOT NULL""",
]

TABLES = ("coupons", "coupon_campaigns")


def upgrade() -> None:
    for sql in STATEMENTS:
        op.execute(sql)


def downgrade() -> None:
    for table in TABLES:
        op.execute(f"DROP TABLE IF EXISTS {table}")
