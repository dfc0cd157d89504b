"""Every value a market day has had, so a snapshot's explanation reads the floor its nowcast read

market_days is upserted: a floor or ETH/USD corrected after a nowcast changed what that
snapshot's explanation read, and with it the value. market_day_revisions appends each new or
changed day with the transaction (PostgreSQL, the column's default, as sales.stored_xact) and
the time that stored it; a read under a snapshot takes each day's latest revision that snapshot
saw (storage/market.py). The days a database already holds become its first revisions, with
no transaction and a time before any snapshot: every snapshot reads them, as it did.

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-05 08:10:00
"""
from datetime import UTC, datetime

from alembic import op
import sqlalchemy as sa
import sqlmodel


revision = '0011'
down_revision = '0010'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        'market_day_revisions',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('collection_id', sa.Integer(), nullable=False),
        sa.Column('day', sa.Date(), nullable=False),
        sa.Column('floor', sa.Float(), nullable=True),
        sa.Column('eth_usd', sa.Float(), nullable=True),
        sa.Column('stored_at', sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
        sa.Column('stored_xact', sa.BigInteger(), nullable=True),
        sa.ForeignKeyConstraint(['collection_id'], ['collections.id']),
        sa.PrimaryKeyConstraint('id'),
    )
    op.create_index('ix_market_day_revisions_day', 'market_day_revisions', ['collection_id', 'day', 'id'],
                    unique=False)
    before_any_snapshot = sa.bindparam('stored_at', datetime(1970, 1, 1, tzinfo=UTC),
                                       type_=sqlmodel.sql.sqltypes.UTCDateTime())
    op.execute(sa.text("INSERT INTO market_day_revisions (collection_id, day, floor, eth_usd, stored_at) "
                       "SELECT collection_id, day, floor, eth_usd, :stored_at FROM market_days "
                       "ORDER BY collection_id, day").bindparams(before_any_snapshot))
    if op.get_bind().dialect.name == 'postgresql':
        # Set after the backfill, so the days stored before this revision keep null (read by all).
        op.execute("ALTER TABLE market_day_revisions ALTER COLUMN stored_xact "
                   "SET DEFAULT (pg_current_xact_id()::text::bigint)")


def downgrade() -> None:
    op.drop_index('ix_market_day_revisions_day', table_name='market_day_revisions')
    op.drop_table('market_day_revisions')
