"""nowcast_snapshots.rows_thinned_at: when retention thinned the snapshot's rows

An old snapshot, once archived, keeps only the rows its readers still need (storage/retention.py):
null until then, and for a snapshot kept whole.

Revision ID: 0013
Revises: 0012
Create Date: 2026-12-05 14:00:00
"""
from alembic import op
import sqlalchemy as sa
import sqlmodel


revision = '0013'
down_revision = '0012'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('nowcast_snapshots', schema=None) as batch_op:
        batch_op.add_column(sa.Column('rows_thinned_at', sqlmodel.sql.sqltypes.UTCDateTime(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table('nowcast_snapshots', schema=None) as batch_op:
        batch_op.drop_column('rows_thinned_at')
