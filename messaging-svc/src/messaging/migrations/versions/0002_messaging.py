"""Messaging: templates, contacts, preferences, suppressions, channels, the send queue, tracking,
inbox, engagement and campaigns.

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-06

`messages` is both the history and the durable send queue: a row in status 'queued' with `due_at`
is work; workers claim due rows with FOR UPDATE SKIP LOCKED and a lease (`lease_until`), so a killed
worker's claim expires and another worker takes the row. `(tenant_id, idempotency_key)` is unique:
the same key never creates a second message. Channels and statuses are stored as the lower-case
names used in events ("email", "queued").

`contacts` is messaging's copy of what it needs from identity (addresses, locale, time zone, consent,
a few traits for personalisation), kept current from identity's events and filled from GetProfile
on a miss; `preferences` is what the person chose in messaging (opt-ins, quiet hours, channel).
"""

from alembic import op

from mcloud_common.idempotency import IDEMPOTENCY_DDL

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

CHANNEL = "text NOT NULL CHECK ({col} IN ('email', 'sms', 'push', 'in_app', 'webhook'))"

STATEMENTS = [
    IDEMPOTENCY_DDL,
    """
    CREATE TABLE templates (
        tenant_id uuid NOT NULL,
        id uuid NOT NULL,
        name text NOT NULL,
        description text NOT NULL DEFAULT '',
        channel """ + CHANNEL.format(col="channel") + """,
        latest_version int NOT NULL,
        created_at timestamptz NOT NULL,
        updated_at timestamptz NOT NULL,
        PRIMARY KEY (tenant_id, id)
    )
    """,
    "CREATE INDEX templates_recent ON templates (tenant_id, updated_at DESC, id DESC)",
    """
    CREATE TABLE template_versions (
        tenant_id uuid NOT NULL,
        template_id uuid NOT NULL,
        version int NOT NULL,
        default_locale text NOT NULL,
        variants jsonb NOT NULL,
        content_hash text NOT NULL,
        created_at timestamptz NOT NULL,
        PRIMARY KEY (tenant_id, template_id, version),
        FOREIGN KEY (tenant_id, template_id) REFERENCES templates (tenant_id, id) ON DELETE CASCADE
    )
    """,
    """
    CREATE TABLE contacts (
        tenant_id uuid NOT NULL,
        profile_id uuid NOT NULL,
        email text NULL,
        phone text NULL,
        push_tokens text[] NOT NULL DEFAULT '{}',
        webhook_url text NULL,
        locale text NULL,
        timezone text NULL,
        traits jsonb NOT NULL DEFAULT '{}',
        consent jsonb NOT NULL DEFAULT '{}',
        -- a tombstone after profile.erased: every other column emptied, sends blocked as profile_erased
        erased boolean NOT NULL DEFAULT false,
        synced_at timestamptz NOT NULL,
        PRIMARY KEY (tenant_id, profile_id)
    )
    """,
    "CREATE INDEX contacts_email ON contacts (tenant_id, lower(email)) WHERE email IS NOT NULL",
    """
    CREATE TABLE preferences (
        tenant_id uuid NOT NULL,
        profile_id uuid NOT NULL,
        channels jsonb NOT NULL DEFAULT '{}',
        locale text NULL,
        timezone text NULL,
        quiet_enabled boolean NOT NULL DEFAULT false,
        quiet_start_minute int NOT NULL DEFAULT 0 CHECK (quiet_start_minute BETWEEN 0 AND 1439),
        quiet_end_minute int NOT NULL DEFAULT 0 CHECK (quiet_end_minute BETWEEN 0 AND 1439),
        preferred_channel text NULL,
        updated_at timestamptz NOT NULL,
        PRIMARY KEY (tenant_id, profile_id)
    )
    """,
    """
    CREATE TABLE suppressions (
        tenant_id uuid NOT NULL,
        id uuid NOT NULL,
        channel text NOT NULL CHECK (channel IN ('all', 'email', 'sms', 'push', 'in_app', 'webhook')),
        address text NOT NULL DEFAULT '',
        profile_id uuid NULL,
        reason text NOT NULL CHECK (reason IN ('unsubscribe', 'hard_bounce', 'complaint', 'invalid_address',
                                               'manual')),
        detail text NOT NULL DEFAULT '',
        created_at timestamptz NOT NULL,
        PRIMARY KEY (tenant_id, id),
        CHECK (address <> '' OR profile_id IS NOT NULL)
    )
    """,
    # one suppression per (channel, address) and per (channel, profile): Suppress is idempotent by content
    "CREATE UNIQUE INDEX suppressions_address ON suppressions (tenant_id, channel, lower(address)) WHERE address <> ''",
    "CREATE UNIQUE INDEX suppressions_profile ON suppressions (tenant_id, channel, profile_id) "
    "WHERE address = '' AND profile_id IS NOT NULL",
    """
    CREATE TABLE channel_configs (
        tenant_id uuid NOT NULL,
        channel """ + CHANNEL.format(col="channel") + """,
        provider text NOT NULL,
        enabled boolean NOT NULL DEFAULT true,
        settings jsonb NOT NULL DEFAULT '{}',
        secrets jsonb NOT NULL DEFAULT '{}',
        rate_limit_per_second int NOT NULL DEFAULT 0,
        frequency_caps jsonb NOT NULL DEFAULT '[]',
        fallbacks jsonb NOT NULL DEFAULT '[]',
        updated_at timestamptz NOT NULL,
        PRIMARY KEY (tenant_id, channel)
    )
    """,
    """
    CREATE TABLE campaigns (
        tenant_id uuid NOT NULL,
        id uuid NOT NULL,
        name text NOT NULL,
        segment_id uuid NOT NULL,
        channel text NOT NULL,
        template_id uuid NOT NULL,
        template_version int NOT NULL DEFAULT 0,
        variables jsonb NOT NULL DEFAULT '{}',
        batch_size int NOT NULL,
        quiet_hours_behavior text NOT NULL DEFAULT 'hold',
        status text NOT NULL CHECK (status IN ('scheduled', 'running', 'completed', 'cancelled', 'failed')),
        audience_size bigint NOT NULL DEFAULT 0,
        queued bigint NOT NULL DEFAULT 0,
        blocked bigint NOT NULL DEFAULT 0,
        cursor text NOT NULL DEFAULT '',
        error text NOT NULL DEFAULT '',
        scheduled_at timestamptz NOT NULL,
        started_at timestamptz NULL,
        completed_at timestamptz NULL,
        lease_until timestamptz NULL,
        created_at timestamptz NOT NULL,
        PRIMARY KEY (tenant_id, id)
    )
    """,
    "CREATE INDEX campaigns_due ON campaigns (scheduled_at) WHERE status IN ('scheduled', 'running')",
    """
    CREATE TABLE messages (
        tenant_id uuid NOT NULL,
        id uuid NOT NULL,
        profile_id uuid NOT NULL,
        requested_channel text NOT NULL,
        channel text NULL,
        template_id uuid NOT NULL,
        template_version int NOT NULL DEFAULT 0,
        locale text NOT NULL DEFAULT '',
        variables jsonb NOT NULL DEFAULT '{}',
        status text NOT NULL CHECK (status IN ('queued', 'sent', 'delivered', 'opened', 'clicked', 'bounced',
                                               'failed', 'suppressed', 'dropped')),
        block_reason text NOT NULL DEFAULT '',
        block_detail text NOT NULL DEFAULT '',
        transactional boolean NOT NULL DEFAULT false,
        quiet_hours_behavior text NOT NULL DEFAULT 'hold',
        idempotency_key text NOT NULL,
        journey_id text NOT NULL DEFAULT '',
        journey_version int NOT NULL DEFAULT 0,
        enrollment_id text NOT NULL DEFAULT '',
        step_id text NOT NULL DEFAULT '',
        campaign_id uuid NULL,
        address text NOT NULL DEFAULT '',
        to_override text NOT NULL DEFAULT '',
        test boolean NOT NULL DEFAULT false,
        scheduled_at timestamptz NULL,
        due_at timestamptz NOT NULL,
        lease_until timestamptz NULL,
        queued_at timestamptz NOT NULL,
        sent_at timestamptz NULL,
        delivered_at timestamptz NULL,
        opened_at timestamptz NULL,
        clicked_at timestamptz NULL,
        ended_at timestamptz NULL,
        attempts int NOT NULL DEFAULT 0,
        provider text NOT NULL DEFAULT '',
        provider_message_id text NOT NULL DEFAULT '',
        error text NOT NULL DEFAULT '',
        PRIMARY KEY (tenant_id, id)
    )
    """,
    "CREATE UNIQUE INDEX messages_idempotency ON messages (tenant_id, idempotency_key)",
    # the queue: only queued rows are in this index, so claiming stays cheap however long the history
    "CREATE INDEX messages_due ON messages (due_at) WHERE status = 'queued'",
    "CREATE INDEX messages_by_profile ON messages (tenant_id, profile_id, queued_at DESC, id DESC)",
    "CREATE INDEX messages_by_campaign ON messages (tenant_id, campaign_id, queued_at DESC, id DESC) "
    "WHERE campaign_id IS NOT NULL",
    "CREATE INDEX messages_by_journey ON messages (tenant_id, journey_id, queued_at DESC, id DESC) "
    "WHERE journey_id <> ''",
    # frequency caps count a person's marketing sends per channel in a window
    "CREATE INDEX messages_caps ON messages (tenant_id, profile_id, channel, sent_at) "
    "WHERE sent_at IS NOT NULL AND NOT transactional",
    "CREATE INDEX messages_provider_id ON messages (tenant_id, provider_message_id) WHERE provider_message_id <> ''",
    """
    CREATE TABLE message_events (
        tenant_id uuid NOT NULL,
        provider_event_id text NOT NULL,
        message_id uuid NOT NULL,
        kind text NOT NULL CHECK (kind IN ('delivered', 'opened', 'clicked', 'bounced', 'failed', 'complained',
                                           'unsubscribed')),
        occurred_at timestamptz NOT NULL,
        url text NOT NULL DEFAULT '',
        detail text NOT NULL DEFAULT '',
        PRIMARY KEY (tenant_id, provider_event_id)
    )
    """,
    "CREATE INDEX message_events_by_message ON message_events (tenant_id, message_id, occurred_at)",
    """
    CREATE TABLE inbox (
        tenant_id uuid NOT NULL,
        id uuid NOT NULL,
        profile_id uuid NOT NULL,
        message_id uuid NOT NULL,
        title text NOT NULL DEFAULT '',
        body text NOT NULL DEFAULT '',
        image_url text NOT NULL DEFAULT '',
        link_url text NOT NULL DEFAULT '',
        data jsonb NOT NULL DEFAULT '{}',
        created_at timestamptz NOT NULL,
        read_at timestamptz NULL,
        expires_at timestamptz NULL,
        PRIMARY KEY (tenant_id, id),
        UNIQUE (tenant_id, message_id)
    )
    """,
    "CREATE INDEX inbox_by_profile ON inbox (tenant_id, profile_id, created_at DESC, id DESC)",
    """
    CREATE TABLE engagement (
        tenant_id uuid NOT NULL,
        profile_id uuid NOT NULL,
        channel text NOT NULL,
        hour_of_week smallint NOT NULL CHECK (hour_of_week BETWEEN 0 AND 167),
        opens int NOT NULL DEFAULT 0,
        clicks int NOT NULL DEFAULT 0,
        last_at timestamptz NOT NULL,
        PRIMARY KEY (tenant_id, profile_id, channel, hour_of_week)
    )
    """,
]

DROP = ["engagement", "inbox", "message_events", "messages", "campaigns", "channel_configs", "suppressions",
        "preferences", "contacts", "template_versions", "templates", "idempotency"]


def upgrade() -> None:
    for statement in STATEMENTS:
        op.execute(statement)


def downgrade() -> None:
    for table in DROP:
        op.execute(f"DROP TABLE IF EXISTS {table}")
