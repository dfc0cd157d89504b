"""due_rollbacks: a rollback the monitor decided while the artifact store could not be read

The monitor judged a promotion only during its probation, so a rollback it deferred because the
store could not read the model to restore lapsed when the store stayed down past the probation's
end, and the champion it judged worse stayed. The decision is now kept here until a later run
carries it out or refuses it on record. A rollback deferred before this revision is not known:
if its probation is still running the monitor decides it again, as before.

Revision ID: 0020
Revises: 0019
Create Date: 2026-12-07 03:45:00
"""
from alembic import op
import sqlalchemy as sa
import sqlmodel

revision = '0020'
down_revision = '0019'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        'due_rollbacks',
        sa.Column('collection_id', sa.Integer(), nullable=False),
        sa.Column('champion_version_id', sa.Integer(), nullable=False),
        sa.Column('previous_version_id', sa.Integer(), nullable=False),
        sa.Column('reason', sqlmodel.sql.sqltypes.AutoString(), nullable=False),
        sa.Column('numbers', sa.JSON(), nullable=False),
        sa.Column('decided_at', sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
        sa.ForeignKeyConstraint(['champion_version_id'], ['model_versions.id']),
        sa.ForeignKeyConstraint(['collection_id'], ['collections.id']),
        sa.ForeignKeyConstraint(['previous_version_id'], ['model_versions.id']),
        sa.PrimaryKeyConstraint('collection_id'),
    )


def downgrade() -> None:
    op.drop_table('due_rollbacks')
