"""nowcast_snapshots.data_read_at: the moment a nowcast read its sales at

The sales stored by then are the snapshot's data: a sale stored later counts as new for the
next nowcast (pipeline.sales_since_published) and stays out of the snapshot's explanation.
Snapshots written before this revision keep it null: those read the row's created_at, as before.

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-05 00:45:00
"""
from alembic import op
import sqlalchemy as sa
import sqlmodel


revision = '0009'
down_revision = '0008'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('nowcast_snapshots', schema=None) as batch_op:
        batch_op.add_column(sa.Column('data_read_at', sqlmodel.sql.sqltypes.UTCDateTime(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table('nowcast_snapshots', schema=None) as batch_op:
        batch_op.drop_column('data_read_at')
