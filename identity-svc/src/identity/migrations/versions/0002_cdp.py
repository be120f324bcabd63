"""CDP features: tenant settings, trait provenance, consent, segments, tracking plans, erasure,
imports, merge history for splits, idempotent admin calls.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-25
"""

from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

STATEMENTS = [
    # Settings per tenant (identity.domain.settings.TenantSettings as JSON; defaults when absent).
    """
    CREATE TABLE tenant_settings (
        tenant_id uuid PRIMARY KEY,
        settings jsonb NOT NULL,
        updated_at timestamptz NOT NULL DEFAULT now()
    )
    """,
    # Where each trait value came from: {"trait": {"source": "crm", "at": "2026-..."}}.
    "ALTER TABLE profiles ADD COLUMN traits_meta jsonb NOT NULL DEFAULT '{}'",
    "ALTER TABLE profiles ADD COLUMN lifecycle_changed_at timestamptz",
    "ALTER TABLE profiles ADD COLUMN erased_at timestamptz",
    # Merge history: what moved, so a merge can be undone; explicit merges are idempotent by key.
    "ALTER TABLE merges ADD COLUMN moved_identifiers jsonb NOT NULL DEFAULT '[]'",
    "ALTER TABLE merges ADD COLUMN undone_at timestamptz",
    "ALTER TABLE merges ADD COLUMN undone_by text",
    "CREATE INDEX merges_from ON merges (tenant_id, from_profile)",
    # Events follow their person through merges (profile_id is rewritten); origin_profile_id is the
    # profile the event was first stored under, so a split can give events back.
    "ALTER TABLE events ADD COLUMN origin_profile_id uuid",
    # Consent: latest state per channel and purpose, plus the append-only log of every change.
    """
    CREATE TABLE consents (
        tenant_id uuid NOT NULL,
        profile_id uuid NOT NULL,
        channel text NOT NULL,
        purpose text NOT NULL,
        state text NOT NULL CHECK (state IN ('granted', 'denied', 'withdrawn')),
        source text NOT NULL,
        at timestamptz NOT NULL,
        PRIMARY KEY (tenant_id, profile_id, channel, purpose)
    )
    """,
    """
    CREATE TABLE consent_log (
        id bigserial PRIMARY KEY,
        tenant_id uuid NOT NULL,
        profile_id uuid NOT NULL,
        channel text NOT NULL,
        purpose text NOT NULL,
        state text NOT NULL,
        source text NOT NULL,
        at timestamptz NOT NULL,
        recorded_at timestamptz NOT NULL DEFAULT now()
    )
    """,
    "CREATE INDEX consent_log_profile ON consent_log (tenant_id, profile_id, id)",
    # Segments and their current members.
    """
    CREATE TABLE segments (
        id uuid PRIMARY KEY,
        tenant_id uuid NOT NULL,
        name text NOT NULL,
        description text NOT NULL DEFAULT '',
        rules jsonb NOT NULL,
        time_dependent boolean NOT NULL DEFAULT false,
        member_count bigint NOT NULL DEFAULT 0,
        evaluated_at timestamptz,
        created_at timestamptz NOT NULL DEFAULT now(),
        updated_at timestamptz NOT NULL DEFAULT now()
    )
    """,
    "CREATE INDEX segments_tenant ON segments (tenant_id)",
    """
    CREATE TABLE segment_members (
        tenant_id uuid NOT NULL,
        segment_id uuid NOT NULL REFERENCES segments (id) ON DELETE CASCADE,
        profile_id uuid NOT NULL,
        entered_at timestamptz NOT NULL DEFAULT now(),
        PRIMARY KEY (segment_id, profile_id)
    )
    """,
    "CREATE INDEX segment_members_profile ON segment_members (tenant_id, profile_id)",
    # Profiles whose segment membership must be re-evaluated (filled by ingest, drained by a worker).
    """
    CREATE TABLE dirty_profiles (
        tenant_id uuid NOT NULL,
        profile_id uuid NOT NULL,
        marked_at timestamptz NOT NULL DEFAULT now(),
        PRIMARY KEY (tenant_id, profile_id)
    )
    """,
    # Tracking plans and what broke them.
    """
    CREATE TABLE tracking_plans (
        tenant_id uuid PRIMARY KEY,
        plan jsonb NOT NULL,
        updated_at timestamptz NOT NULL DEFAULT now()
    )
    """,
    """
    CREATE TABLE tracking_violations (
        tenant_id uuid NOT NULL,
        event text NOT NULL,
        outcome text NOT NULL,
        count bigint NOT NULL DEFAULT 0,
        last_error text NOT NULL DEFAULT '',
        last_seen_at timestamptz NOT NULL DEFAULT now(),
        PRIMARY KEY (tenant_id, event, outcome)
    )
    """,
    # Erased identifiers, as salted digests (the values themselves are gone): re-ingest is refused.
    """
    CREATE TABLE erased_identifiers (
        tenant_id uuid NOT NULL,
        digest bytea NOT NULL,
        erased_at timestamptz NOT NULL DEFAULT now(),
        PRIMARY KEY (tenant_id, digest)
    )
    """,
    # Bulk imports (resumable): running totals.
    """
    CREATE TABLE imports (
        tenant_id uuid NOT NULL,
        id text NOT NULL,
        name text NOT NULL DEFAULT '',
        source text NOT NULL,
        columns text[] NOT NULL,
        last_row bigint NOT NULL DEFAULT 0,
        accepted bigint NOT NULL DEFAULT 0,
        merged bigint NOT NULL DEFAULT 0,
        rejected bigint NOT NULL DEFAULT 0,
        rejected_by_code jsonb NOT NULL DEFAULT '{}',
        started_at timestamptz NOT NULL DEFAULT now(),
        updated_at timestamptz NOT NULL DEFAULT now(),
        PRIMARY KEY (tenant_id, id)
    )
    """,
    # Responses of state-changing admin calls by idempotency key (retries get the first answer).
    """
    CREATE TABLE idempotency (
        tenant_id uuid NOT NULL,
        key text NOT NULL,
        method text NOT NULL,
        response bytea NOT NULL,
        created_at timestamptz NOT NULL DEFAULT now(),
        PRIMARY KEY (tenant_id, method, key)
    )
    """,
]


def upgrade() -> None:
    for sql in STATEMENTS:
        op.execute(sql)


def downgrade() -> None:
    for table in ("idempotency", "imports", "erased_identifiers", "tracking_violations", "tracking_plans",
                  "dirty_profiles", "segment_members", "segments", "consent_log", "consents", "tenant_settings"):
        op.execute(f"DROP TABLE IF EXISTS {table} CASCADE")
    op.execute("ALTER TABLE events DROP COLUMN IF EXISTS origin_profile_id")
    op.execute("DROP INDEX IF EXISTS merges_from")
    for col in ("moved_identifiers", "undone_at", "undone_by"):
        op.execute(f"ALTER TABLE merges DROP COLUMN IF EXISTS {col}")
    for col in ("traits_meta", "lifecycle_changed_at", "erased_at"):
        op.execute(f"ALTER TABLE profiles DROP COLUMN IF EXISTS {col}")
