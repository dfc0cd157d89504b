"""sales.time_precision: how precisely each sale's time is known (models.times.TIME_PRECISIONS)

A sale known only to the hour is valued, as a training row, at the start of its hour, so its
features hold no sale of that hour, which may have come after it. Until this revision that was
read from the source's name when the sales were loaded; now ingest stores it with each sale
(declared by the row, else from its source). The sales already stored are filled from their
source the way ingest fills an undeclared row, so an upgraded database trains as a fresh one.

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-05 00:40:00
"""
from alembic import op
import sqlalchemy as sa
import sqlmodel


revision = '0008'
down_revision = '0007'
branch_labels = None
depends_on = None


# As models.times had them when this revision was written: a migration must not change with the code.
SECOND, HOUR = "second", "hour"
HOUR_PRECISION_SOURCES = ("cryptopunks-vis",)


def upgrade() -> None:
    with op.batch_alter_table('sales', schema=None) as batch_op:
        batch_op.add_column(sa.Column('time_precision', sqlmodel.sql.sqltypes.AutoString(length=8),
                                      server_default=SECOND, nullable=False))
    sales = sa.table('sales', sa.column('source', sa.String), sa.column('time_precision', sa.String))
    op.execute(sales.update().where(sales.c.source.in_(sorted(HOUR_PRECISION_SOURCES)))
               .values(time_precision=HOUR))


def downgrade() -> None:
    with op.batch_alter_table('sales', schema=None) as batch_op:
        batch_op.drop_column('time_precision')
