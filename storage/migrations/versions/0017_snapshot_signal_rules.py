"""nowcast_snapshots.signal_buy_below, signal_sell_above, signal_max_age_days: the thresholds the
snapshot's signals were judged at

The API read which price a published signal was judged on (signal_basis, deviation) with its own
settings, which could differ from the worker's that made the signal. Null in snapshots made before
this revision: those are read with the reader's settings, as they were.

Revision ID: 0017
Revises: 0016
Create Date: 2026-12-06 12:15:00
"""
from alembic import op
import sqlalchemy as sa

revision = '0017'
down_revision = '0016'
branch_labels = None
depends_on = None

COLUMNS = ('signal_buy_below', 'signal_sell_above', 'signal_max_age_days')


def upgrade() -> None:
    with op.batch_alter_table('nowcast_snapshots', schema=None) as batch_op:
        for name in COLUMNS:
            batch_op.add_column(sa.Column(name, sa.Float(), nullable=True))


def downgrade() -> None:
    # In place on SQLite too (0019's reason): a rebuilt nowcast_snapshots could not be dropped for the
    # foreign keys of its rows.
    with op.batch_alter_table('nowcast_snapshots', schema=None, recreate='never') as batch_op:
        for name in reversed(COLUMNS):
            batch_op.drop_column(name)
