"""nowcast_snapshots.valued_at: the moment a snapshot's items were valued at

A nowcast of a market silent for longer than FAIRVALUE_MARKET_STALE_AFTER_DAYS values the items
as of the last market known, not as of the time it was asked for (as_of). Snapshots written
before this revision keep it null: the explanation then finds the moment again from the data.

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-04 10:45:00
"""
from alembic import op
import sqlalchemy as sa
import sqlmodel


revision = '0007'
down_revision = '0006'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('nowcast_snapshots', schema=None) as batch_op:
        batch_op.add_column(sa.Column('valued_at', sqlmodel.sql.sqltypes.UTCDateTime(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table('nowcast_snapshots', schema=None) as batch_op:
        batch_op.drop_column('valued_at')
