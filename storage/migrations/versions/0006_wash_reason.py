"""sales.wash_reason: suspected wash trades are kept but never train or score (issue #3);
an index on the parties for the check of small batches

The column is filled for the sales already stored, with the same rules ingest applies
(models/wash.py), so an upgraded database leaves out what a fresh one would.

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-02 02:40:00
"""
from alembic import op
import pandas as pd
import sqlalchemy as sa
import sqlmodel


revision = '0006'
down_revision = '0005'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('sales', schema=None) as batch_op:
        batch_op.add_column(sa.Column('wash_reason', sqlmodel.sql.sqltypes.AutoString(length=32), nullable=True))
        batch_op.create_index('ix_sales_parties', ['collection_id', 'seller', 'buyer'], unique=False)
    _flag_stored_sales(op.get_bind())


def _flag_stored_sales(connection) -> None:
    from models.wash import wash_reasons

    sales = pd.read_sql(sa.text("SELECT id, collection_id, event_id, ts, item_key, seller, buyer FROM sales"),
                        connection)
    if sales.empty:
        return
    sales["ts"] = pd.to_datetime(sales["ts"], utc=True, format="mixed").dt.tz_localize(None)
    changes = []
    for _, one in sales.groupby("collection_id"):
        reasons = wash_reasons(one)
        changes += [{"sale_id": int(i), "reason": r} for i, r in zip(one["id"], reasons, strict=True) if r]
    if changes:
        connection.execute(sa.text("UPDATE sales SET wash_reason = :reason WHERE id = :sale_id"), changes)


def downgrade() -> None:
    with op.batch_alter_table('sales', schema=None) as batch_op:
        batch_op.drop_index('ix_sales_parties')
        batch_op.drop_column('wash_reason')
