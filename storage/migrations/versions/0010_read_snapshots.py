"""Which transaction stored each sale and flagged it, and the snapshot a nowcast read under

sales.stored_xact and sales.wash_flagged_xact hold the PostgreSQL transaction ids (xid8, as
bigint) that stored the sale and that first flagged it as a wash trade; nowcast_snapshots
.data_snapshot the pg_snapshot the nowcast read its market under. Together they say exactly
which sales a snapshot read, as they were then: a sale committed after the read, though stamped
before it, and a flag set since are both outside it (storage/market.py). stored_xact is filled by
the column's default on PostgreSQL; rows stored before this revision keep null and count as read
by every snapshot, as they were. On SQLite the columns stay null and data_read_at decides.

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-05 05:50:00
"""
from alembic import op
import sqlalchemy as sa
import sqlmodel


revision = '0010'
down_revision = '0009'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('sales', schema=None) as batch_op:
        batch_op.add_column(sa.Column('stored_xact', sa.BigInteger(), nullable=True))
        batch_op.add_column(sa.Column('wash_flagged_xact', sa.BigInteger(), nullable=True))
        batch_op.create_index(batch_op.f('ix_sales_stored_xact'), ['stored_xact'], unique=False)
    with op.batch_alter_table('nowcast_snapshots', schema=None) as batch_op:
        batch_op.add_column(sa.Column('data_snapshot', sqlmodel.sql.sqltypes.AutoString(), nullable=True))
    if op.get_bind().dialect.name == 'postgresql':
        # Set after the column is added, so existing rows are not rewritten (they keep null).
        op.execute("ALTER TABLE sales ALTER COLUMN stored_xact SET DEFAULT (pg_current_xact_id()::text::bigint)")


def downgrade() -> None:
    with op.batch_alter_table('nowcast_snapshots', schema=None) as batch_op:
        batch_op.drop_column('data_snapshot')
    with op.batch_alter_table('sales', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_sales_stored_xact'))
        batch_op.drop_column('wash_flagged_xact')
        batch_op.drop_column('stored_xact')
