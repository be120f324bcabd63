"""recommend's tables: catalogue, interactions (the feedback log), carts, intents, tenant settings,
training runs and models, served lists, clicks, conversions and daily impressions.

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-06
"""

from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def _each(sql: str) -> None:
    for statement in sql.split(";"):
        if statement.strip():
            op.execute(statement)


def upgrade() -> None:
    _each("""
    CREATE TABLE items (
        tenant_id uuid NOT NULL,
        id text NOT NULL,
        kind smallint NOT NULL DEFAULT 1,
        title text NOT NULL DEFAULT '',
        categories text[] NOT NULL DEFAULT '{}',
        brand text NOT NULL DEFAULT '',
        price_minor bigint NOT NULL DEFAULT 0,
        currency text NOT NULL DEFAULT '',
        in_stock boolean NOT NULL DEFAULT true,
        tags text[] NOT NULL DEFAULT '{}',
        image_url text NOT NULL DEFAULT '',
        url text NOT NULL DEFAULT '',
        replenish_after_days integer NOT NULL DEFAULT 0,
        starts_at timestamptz,
        ends_at timestamptz,
        attributes jsonb NOT NULL DEFAULT '{}',
        updated_at timestamptz NOT NULL,
        PRIMARY KEY (tenant_id, id)
    );
    -- bumped by every catalogue write, so every replica knows when to reload its copy
    CREATE TABLE catalog_versions (
        tenant_id uuid PRIMARY KEY,
        version bigint NOT NULL DEFAULT 0
    );
    -- person: a profile id, or 'anon:' + an anonymous id
    CREATE TABLE interactions (
        tenant_id uuid NOT NULL,
        event_id text NOT NULL,
        person text NOT NULL,
        item_id text NOT NULL,
        kind smallint NOT NULL,
        weight real NOT NULL,
        quantity integer NOT NULL DEFAULT 1,
        recommendation_id text NOT NULL DEFAULT '',
        occurred_at timestamptz NOT NULL,
        PRIMARY KEY (tenant_id, event_id)
    );
    CREATE INDEX interactions_person ON interactions (tenant_id, person, occurred_at DESC);
    CREATE INDEX interactions_time ON interactions (tenant_id, occurred_at);
    -- an anonymous id identity resolved to a profile (learned from the events): a storefront that only
    -- knows the visitor's device id still gets the profile's recommendations
    CREATE TABLE person_aliases (
        tenant_id uuid NOT NULL,
        anonymous_id text NOT NULL,
        person text NOT NULL,
        updated_at timestamptz NOT NULL,
        PRIMARY KEY (tenant_id, anonymous_id)
    );
    CREATE INDEX person_aliases_person ON person_aliases (tenant_id, person);
    CREATE TABLE carts (
        tenant_id uuid NOT NULL,
        person text NOT NULL,
        item_id text NOT NULL,
        added_at timestamptz NOT NULL,
        PRIMARY KEY (tenant_id, person, item_id)
    );
    CREATE INDEX carts_added ON carts (tenant_id, added_at);
    CREATE TABLE intents (
        tenant_id uuid NOT NULL,
        person text NOT NULL,
        item_id text NOT NULL,
        category text NOT NULL DEFAULT '',
        score double precision NOT NULL,
        cross_categories text[] NOT NULL DEFAULT '{}',
        locked_at timestamptz NOT NULL,
        expires_at timestamptz NOT NULL,
        PRIMARY KEY (tenant_id, person)
    );
    CREATE TABLE tenant_settings (
        tenant_id uuid PRIMARY KEY,
        spec jsonb NOT NULL,
        updated_at timestamptz NOT NULL
    );
    CREATE TABLE training_runs (
        tenant_id uuid NOT NULL,
        id uuid NOT NULL,
        status smallint NOT NULL,
        idempotency_key text,
        started_at timestamptz,
        finished_at timestamptz,
        item_count bigint NOT NULL DEFAULT 0,
        interaction_count bigint NOT NULL DEFAULT 0,
        metrics jsonb NOT NULL DEFAULT '{}',
        error text NOT NULL DEFAULT '',
        created_at timestamptz NOT NULL,
        PRIMARY KEY (tenant_id, id)
    );
    CREATE UNIQUE INDEX training_runs_key ON training_runs (tenant_id, idempotency_key)
        WHERE idempotency_key IS NOT NULL;
    CREATE INDEX training_runs_latest ON training_runs (tenant_id, created_at DESC);
    -- the serving model of each tenant (item factors and neighbours, npz)
    CREATE TABLE models (
        tenant_id uuid PRIMARY KEY,
        run_id uuid NOT NULL,
        blob bytea NOT NULL,
        trained_through timestamptz NOT NULL,
        created_at timestamptz NOT NULL
    );
    CREATE TABLE served (
        tenant_id uuid NOT NULL,
        id uuid NOT NULL,
        person text NOT NULL,
        scenario text NOT NULL,
        item_ids text[] NOT NULL,
        recommenders text[] NOT NULL,
        created_at timestamptz NOT NULL,
        PRIMARY KEY (tenant_id, id)
    );
    CREATE INDEX served_created ON served (created_at);
    CREATE TABLE impressions_daily (
        tenant_id uuid NOT NULL,
        day date NOT NULL,
        scenario text NOT NULL,
        recommender text NOT NULL,
        impressions bigint NOT NULL,
        PRIMARY KEY (tenant_id, day, scenario, recommender)
    );
    CREATE TABLE clicks (
        tenant_id uuid NOT NULL,
        recommendation_id uuid NOT NULL,
        item_id text NOT NULL,
        person text NOT NULL,
        scenario text NOT NULL,
        recommender text NOT NULL,
        position integer NOT NULL,
        clicked_at timestamptz NOT NULL,
        converted_at timestamptz,
        PRIMARY KEY (tenant_id, recommendation_id, item_id)
    );
    CREATE INDEX clicks_person ON clicks (tenant_id, person, item_id, clicked_at DESC);
    CREATE INDEX clicks_time ON clicks (tenant_id, clicked_at);
    """)


def downgrade() -> None:
    _each("""
    DROP TABLE clicks; DROP TABLE impressions_daily; DROP TABLE served; DROP TABLE models;
    DROP TABLE training_runs; DROP TABLE tenant_settings; DROP TABLE intents; DROP TABLE carts;
    DROP TABLE interactions; DROP TABLE person_aliases; DROP TABLE catalog_versions; DROP TABLE items;
    """)
