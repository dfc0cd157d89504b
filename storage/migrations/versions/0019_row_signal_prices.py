"""nowcast_rows.signal_basis, deviation: the price each signal was judged on and its deviation, as
the nowcast computed them; nowcast_snapshots.signal_prices_recorded: whether its rows hold them

The API derived them again from the stored row, whose fair value is rounded to 6 significant
digits: a value within that rounding of a threshold read on its other side, and an answer said
HOLD with an ask 10 % under the value (or BUY with a deviation short of the threshold).

Rows stored before this revision are not backfilled: a backfill could only derive them from the
same rounded values, as their readers do now, and would rewrite every stored row (480,000 a day
of the bundled market) for no better answer. Their snapshots read false in signal_prices_recorded,
so their readers go on deriving them; in a snapshot that recorded them, a null basis is the
nowcast's "no market price".

Revision ID: 0019
Revises: 0018
Create Date: 2026-12-07 03:40:00
"""
from alembic import op
import sqlalchemy as sa
import sqlmodel

revision = '0019'
down_revision = '0018'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('nowcast_rows', schema=None) as batch_op:
        batch_op.add_column(sa.Column('signal_basis', sqlmodel.sql.sqltypes.AutoString(length=16), nullable=True))
        batch_op.add_column(sa.Column('deviation', sa.Float(), nullable=True))
    with op.batch_alter_table('nowcast_snapshots', schema=None) as batch_op:
        # '0', false on both databases; sa.false(), an expression, made alembic rebuild the SQLite table,
        # and the drop of the old one failed on the foreign keys of its rows.
        batch_op.add_column(sa.Column('signal_prices_recorded', sa.Boolean(), server_default='0', nullable=False))


def downgrade() -> None:
    # ALTER TABLE … DROP COLUMN on SQLite too (3.35 and later): a rebuilt nowcast_snapshots could not be
    # dropped for the foreign keys of its rows, and rebuilding nowcast_rows copies every row.
    with op.batch_alter_table('nowcast_snapshots', schema=None, recreate='never') as batch_op:
        batch_op.drop_column('signal_prices_recorded')
    with op.batch_alter_table('nowcast_rows', schema=None, recreate='never') as batch_op:
        batch_op.drop_column('deviation')
        batch_op.drop_column('signal_basis')
