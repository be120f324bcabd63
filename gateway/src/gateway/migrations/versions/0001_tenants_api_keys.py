"""Tenants and their API keys (stored as sha256 hashes).

Revision ID: 0001
Revises:
Create Date: 2026-11-25
"""

from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute(
        """
        CREATE TABLE tenants (
            id uuid PRIMARY KEY,
            name text NOT NULL,
            created_at timestamptz NOT NULL DEFAULT now(),
            CONSTRAINT tenants_name_key UNIQUE (name)
        )
        """
    )
    op.execute(
        """
        CREATE TABLE api_keys (
            id uuid PRIMARY KEY,
            tenant_id uuid NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
            kind text NOT NULL,
            key_hash bytea NOT NULL,
            prefix text NOT NULL,
            scopes text[] NOT NULL DEFAULT '{}',
            created_at timestamptz NOT NULL DEFAULT now(),
            revoked_at timestamptz,
            CONSTRAINT api_keys_kind CHECK (kind IN ('write', 'secret')),
            CONSTRAINT api_keys_key_hash_key UNIQUE (key_hash)
        )
        """
    )
    op.execute("CREATE INDEX ix_api_keys_tenant_id ON api_keys (tenant_id)")


def downgrade() -> None:
    op.execute("DROP TABLE api_keys")
    op.execute("DROP TABLE tenants")
