"""Enrollments (durable: the due time of each one's next action is its timer) and the step log
(per-person trace and per-step counts).

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-25

A worker claims due enrollments with FOR UPDATE SKIP LOCKED and leases them by moving `due_at`
forward; a worker that dies leaves its claims to come due again after the lease.
"""

from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

STATEMENTS = [
    """
    CREATE TABLE enrollments (
        tenant_id uuid NOT NULL,
        id uuid NOT NULL,
        journey_id uuid NOT NULL,
        version int NOT NULL,
        profile_id uuid NOT NULL,
        status text NOT NULL DEFAULT 'active',
        holdout boolean NOT NULL DEFAULT false,
        entry_key text NOT NULL DEFAULT '',
        idempotency_key text NOT NULL DEFAULT '',
        trigger text NOT NULL DEFAULT 'api',
        context jsonb NOT NULL DEFAULT '{}',
        step_id text NOT NULL DEFAULT '',
        visits jsonb NOT NULL DEFAULT '{}',
        due_at timestamptz NULL,
        waiting_until timestamptz NULL,
        waiting_for text NOT NULL DEFAULT '',
        -- the awaited event came: the wait_for_event step continues by `next` at the next run
        arrived boolean NOT NULL DEFAULT false,
        attempts int NOT NULL DEFAULT 0,
        last_error text NOT NULL DEFAULT '',
        converted_at timestamptz NULL,
        exit_reason text NOT NULL DEFAULT '',
        entered_at timestamptz NOT NULL,
        updated_at timestamptz NOT NULL,
        ended_at timestamptz NULL,
        PRIMARY KEY (tenant_id, id)
    )
    """,
    "CREATE INDEX enrollments_due ON enrollments (due_at) WHERE status = 'active' AND due_at IS NOT NULL",
    "CREATE INDEX enrollments_profile ON enrollments (tenant_id, profile_id, journey_id, entered_at DESC)",
    "CREATE INDEX enrollments_journey ON enrollments (tenant_id, journey_id, entered_at DESC, id DESC)",
    """
    CREATE UNIQUE INDEX enrollments_entry_key ON enrollments (tenant_id, journey_id, profile_id, entry_key)
        WHERE entry_key <> ''
    """,
    """
    CREATE UNIQUE INDEX enrollments_idempotency ON enrollments (tenant_id, journey_id, idempotency_key)
        WHERE idempotency_key <> ''
    """,
    # one active enrollment per person and journey (without an entry key)
    """
    CREATE UNIQUE INDEX enrollments_one_active ON enrollments (tenant_id, journey_id, profile_id)
        WHERE status = 'active' AND entry_key = ''
    """,
    """
    CREATE TABLE step_log (
        tenant_id uuid NOT NULL,
        id bigserial NOT NULL,
        enrollment_id uuid NOT NULL,
        journey_id uuid NOT NULL,
        version int NOT NULL,
        step_id text NOT NULL,
        step_type text NOT NULL,
        outcome text NOT NULL,
        detail text NOT NULL DEFAULT '',
        holdout boolean NOT NULL DEFAULT false,
        at timestamptz NOT NULL,
        PRIMARY KEY (tenant_id, id)
    )
    """,
    "CREATE INDEX step_log_enrollment ON step_log (tenant_id, enrollment_id, id)",
    "CREATE INDEX step_log_journey ON step_log (tenant_id, journey_id, step_id)",
]


def upgrade() -> None:
    for sql in STATEMENTS:
        op.execute(sql)


def downgrade() -> None:
    for table in ("step_log", "enrollments"):
        op.execute(f"DROP TABLE IF EXISTS {table}")
