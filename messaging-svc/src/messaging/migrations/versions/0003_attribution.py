"""Revenue attribution and channel cost: what each sent message costs, the tenant's attribution rules,
and the orders credited to a message (one row per order: replays and resent orders attribute once).

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-07
"""

from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

STATEMENTS = [
    "ALTER TABLE channel_configs ADD COLUMN cost_per_message_minor bigint NOT NULL DEFAULT 0 "
    "CHECK (cost_per_message_minor >= 0)",
    "ALTER TABLE channel_configs ADD COLUMN cost_currency text NOT NULL DEFAULT ''",
    """
    CREATE TABLE attribution_settings (
        tenant_id uuid PRIMARY KEY,
        window_hours int NOT NULL CHECK (window_hours BETWEEN 1 AND 2160),
        count_opens boolean NOT NULL,
        default_currency text NOT NULL,
        updated_at timestamptz NOT NULL
    )
    """,
    # profile_id is emptied when the person is erased (the amounts stay in the channel's totals);
    # message_id is not a foreign key for the same reason (erasure deletes the message).
    """
    CREATE TABLE attributions (
        tenant_id uuid NOT NULL,
        order_id text NOT NULL,
        event_id uuid NOT NULL,
        profile_id uuid NULL,
        message_id uuid NOT NULL,
        channel text NOT NULL,
        journey_id text NOT NULL DEFAULT '',
        campaign_id uuid NULL,
        touch text NOT NULL CHECK (touch IN ('clicked', 'opened')),
        touched_at timestamptz NOT NULL,
        ordered_at timestamptz NOT NULL,
        revenue_minor bigint NOT NULL,
        currency text NOT NULL,
        created_at timestamptz NOT NULL,
        PRIMARY KEY (tenant_id, order_id)
    )
    """,
    "CREATE INDEX attributions_by_time ON attributions (tenant_id, ordered_at)",
    "CREATE INDEX attributions_by_profile ON attributions (tenant_id, profile_id) WHERE profile_id IS NOT NULL",
]


def upgrade() -> None:
    for statement in STATEMENTS:
        op.execute(statement)


def downgrade() -> None:
    op.execute("DROP TABLE IF EXISTS attributions")
    op.execute("DROP TABLE IF EXISTS attribution_settings")
    op.execute("ALTER TABLE channel_configs DROP COLUMN IF EXISTS cost_currency")
    op.execute("ALTER TABLE channel_configs DROP COLUMN IF EXISTS cost_per_message_minor")
