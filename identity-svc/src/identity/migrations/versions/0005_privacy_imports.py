"""privacy imports: the merge family of a profile found by index (erase, export).

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-25
"""

from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None

STATEMENTS: list[str] = [
    # Erase and export walk a person's merge family downwards (profiles merged into a survivor);
    # only merged-away rows are indexed.
    "CREATE INDEX profiles_merged_into ON profiles (tenant_id, merged_into) WHERE merged_into IS NOT NULL",
]


def upgrade() -> None:
    for sql in STATEMENTS:
        op.execute(sql)


def downgrade() -> None:
    op.execute("DROP INDEX IF EXISTS profiles_merged_into")
