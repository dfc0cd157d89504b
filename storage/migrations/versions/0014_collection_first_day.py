"""collections.first_day: the first day the market could trade

A sale or price dated before it is refused as before_collection. Read from the collection's row
where rows are checked, for the punks and the cards alike: the punks' is set when the collection
is made (storage.ingest.FIRST_SALE_DAYS) and filled in here for a collection made before this
column; the cards' is stored by `fairvalue cards load` from the universe's `first_day:`.

Revision ID: 0014
Revises: 0013
Create Date: 2026-12-06 00:00:00
"""
from alembic import op
import sqlalchemy as sa

from storage.ingest import FIRST_SALE_DAYS

revision = '0014'
down_revision = '0013'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('collections', schema=None) as batch_op:
        batch_op.add_column(sa.Column('first_day', sa.Date(), nullable=True))
    collections = sa.table('collections', sa.column('slug', sa.String), sa.column('first_day', sa.Date))
    for slug, day in FIRST_SALE_DAYS.items():  # without it, a punks database made before would take any date
        op.execute(collections.update().where(collections.c.slug == slug, collections.c.first_day.is_(None))
                   .values(first_day=day))


def downgrade() -> None:
    with op.batch_alter_table('collections', schema=None) as batch_op:
        batch_op.drop_column('first_day')
