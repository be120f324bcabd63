"""Programs, members, the immutable ledger, point lots and qualifying (tier) facts.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-25

The ledger (ledger_entries) is append-only: a trigger refuses UPDATE, and DELETE unless the
transaction erases a person (SET LOCAL loyalty.erasing = 'on', profile.erased only). Lots are the
open state the ledger implies: one per credit, `remaining` going down as spends, reversals and
expiry consume it. For every member at every moment:
    sum(ledger_entries.points) = sum(lots.remaining) - members.debt
"""

from alembic import op

from mcloud_common.idempotency import IDEMPOTENCY_DDL

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

STATEMENTS = [
    """
    CREATE TABLE programs (
        tenant_id uuid NOT NULL,
        id uuid NOT NULL,
        spec jsonb NOT NULL,
        created_at timestamptz NOT NULL DEFAULT now(),
        updated_at timestamptz NOT NULL DEFAULT now(),
        PRIMARY KEY (tenant_id, id)
    )
    """,
    "CREATE SEQUENCE member_numbers START 100000001",
    """
    CREATE TABLE members (
        tenant_id uuid NOT NULL,
        program_id uuid NOT NULL,
        profile_id uuid NOT NULL,
        member_number text NOT NULL,
        status text NOT NULL DEFAULT 'active',
        tier_code text NOT NULL,
        tier_since timestamptz NOT NULL,
        tier_review_at timestamptz NULL,
        debt bigint NOT NULL DEFAULT 0 CHECK (debt >= 0),
        lifetime_earned bigint NOT NULL DEFAULT 0,
        lifetime_spent bigint NOT NULL DEFAULT 0,
        lifetime_expired bigint NOT NULL DEFAULT 0,
        lifetime_reversed bigint NOT NULL DEFAULT 0,
        source text NOT NULL DEFAULT '',
        birthday text NULL,
        birthday_year int NULL,
        merged_into uuid NULL,
        enrolled_at timestamptz NOT NULL,
        updated_at timestamptz NOT NULL DEFAULT now(),
        PRIMARY KEY (tenant_id, program_id, profile_id),
        UNIQUE (tenant_id, member_number)
    )
    """,
    "CREATE INDEX members_review ON members (tier_review_at) WHERE tier_review_at IS NOT NULL AND status = 'active'",
    "CREATE INDEX members_birthday ON members (tenant_id, birthday) WHERE birthday IS NOT NULL AND status = 'active'",
    """
    CREATE TABLE ledger_entries (
        tenant_id uuid NOT NULL,
        id uuid NOT NULL,
        program_id uuid NOT NULL,
        profile_id uuid NOT NULL,
        kind text NOT NULL,
        points bigint NOT NULL,
        qualifying_points bigint NOT NULL DEFAULT 0,
        balance_after bigint NOT NULL,
        debt_points bigint NOT NULL DEFAULT 0,
        reason text NOT NULL DEFAULT '',
        description text NOT NULL DEFAULT '',
        order_id text NOT NULL DEFAULT '',
        rule_id text NOT NULL DEFAULT '',
        reverses_entry_id uuid NULL,
        idempotency_key text NOT NULL,
        actor text NOT NULL DEFAULT '',
        consumed jsonb NOT NULL DEFAULT '[]',
        details jsonb NOT NULL DEFAULT '{}',
        available_at timestamptz NULL,
        expires_at timestamptz NULL,
        created_at timestamptz NOT NULL,
        PRIMARY KEY (tenant_id, id),
        UNIQUE (tenant_id, program_id, idempotency_key)
    )
    """,
    "CREATE INDEX ledger_member ON ledger_entries (tenant_id, program_id, profile_id, created_at DESC, id DESC)",
    "CREATE INDEX ledger_order ON ledger_entries (tenant_id, program_id, order_id) WHERE order_id <> ''",
    "CREATE INDEX ledger_period ON ledger_entries (tenant_id, program_id, created_at)",
    """
    CREATE FUNCTION ledger_immutable() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
        IF TG_OP = 'DELETE' AND current_setting('loyalty.erasing', true) = 'on' THEN
            RETURN OLD;
        END IF;
        RAISE EXCEPTION 'ledger entries are immutable: write a correcting entry instead'
            USING ERRCODE = 'restrict_violation';
    END
    $$
    """,
    """
    CREATE TRIGGER ledger_entries_immutable BEFORE UPDATE OR DELETE ON ledger_entries
        FOR EACH ROW EXECUTE FUNCTION ledger_immutable()
    """,
    """
    CREATE TABLE lots (
        tenant_id uuid NOT NULL,
        id uuid NOT NULL,
        program_id uuid NOT NULL,
        profile_id uuid NOT NULL,
        amount bigint NOT NULL CHECK (amount > 0),
        remaining bigint NOT NULL CHECK (remaining >= 0 AND remaining <= amount),
        available_at timestamptz NOT NULL,
        expires_at timestamptz NULL,
        order_id text NOT NULL DEFAULT '',
        reminded_at timestamptz NULL,
        created_at timestamptz NOT NULL,
        PRIMARY KEY (tenant_id, id)
    )
    """,
    "CREATE INDEX lots_open ON lots (tenant_id, program_id, profile_id) WHERE remaining > 0",
    "CREATE INDEX lots_expiry ON lots (expires_at) WHERE remaining > 0 AND expires_at IS NOT NULL",
    "CREATE INDEX lots_order ON lots (tenant_id, program_id, order_id) WHERE order_id <> ''",
    """
    CREATE TABLE qualifying (
        tenant_id uuid NOT NULL,
        entry_id uuid NOT NULL,
        program_id uuid NOT NULL,
        profile_id uuid NOT NULL,
        points bigint NOT NULL DEFAULT 0,
        spend_minor bigint NOT NULL DEFAULT 0,
        orders int NOT NULL DEFAULT 0,
        order_id text NOT NULL DEFAULT '',
        occurred_at timestamptz NOT NULL,
        PRIMARY KEY (tenant_id, entry_id)
    )
    """,
    "CREATE INDEX qualifying_member ON qualifying (tenant_id, program_id, profile_id, occurred_at)",
    """
    CREATE TABLE tier_changes (
        tenant_id uuid NOT NULL,
        program_id uuid NOT NULL,
        profile_id uuid NOT NULL,
        from_tier text NOT NULL,
        to_tier text NOT NULL,
        direction text NOT NULL,
        changed_at timestamptz NOT NULL
    )
    """,
    "CREATE INDEX tier_changes_period ON tier_changes (tenant_id, program_id, changed_at)",
    IDEMPOTENCY_DDL,
]

TABLES = ("idempotency", "tier_changes", "qualifying", "lots", "ledger_entries", "members", "programs")


def upgrade() -> None:
    for sql in STATEMENTS:
        op.execute(sql)


def downgrade() -> None:
    for table in TABLES:
        op.execute(f"DROP TABLE IF EXISTS {table}")
    op.execute("DROP FUNCTION IF EXISTS ledger_immutable()")
    op.execute("DROP SEQUENCE IF EXISTS member_numbers")
