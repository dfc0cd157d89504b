"""listings: asks, so a signal reads the price an item can be bought at

A listing event offers an item at a price (or withdraws the offer); an item's open ask under its
fair value makes the nowcast's signal BUY (models/listings.py), and each snapshot row says which
ask the item had. Refused listing rows are kept with their reason, as refused sales are.

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-05 11:20:00
"""
from alembic import op
import sqlalchemy as sa
import sqlmodel


revision = '0012'
down_revision = '0011'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        'listings',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('collection_id', sa.Integer(), nullable=False),
        sa.Column('event_id', sqlmodel.sql.sqltypes.AutoString(length=200), nullable=False),
        sa.Column('item_key', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
        sa.Column('ts', sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
        sa.Column('price', sa.Float(), nullable=True),
        sa.Column('expires_at', sqlmodel.sql.sqltypes.UTCDateTime(), nullable=True),
        sa.Column('source', sqlmodel.sql.sqltypes.AutoString(), nullable=False),
        sa.Column('content_hash', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
        sa.Column('ingested_at', sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
        sa.ForeignKeyConstraint(['collection_id'], ['collections.id']),
        sa.PrimaryKeyConstraint('id'),
        sa.UniqueConstraint('collection_id', 'event_id', name='uq_listings_event'),
    )
    op.create_index('ix_listings_item_ts', 'listings', ['collection_id', 'item_key', 'ts'], unique=False)
    op.create_table(
        'rejected_listings',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('collection_id', sa.Integer(), nullable=False),
        sa.Column('event_id', sqlmodel.sql.sqltypes.AutoString(length=200), nullable=True),
        sa.Column('reason', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
        sa.Column('detail', sqlmodel.sql.sqltypes.AutoString(), nullable=False),
        sa.Column('row', sa.JSON(), nullable=False),
        sa.Column('row_hash', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
        sa.Column('origin', sqlmodel.sql.sqltypes.AutoString(), nullable=False),
        sa.Column('rejected_at', sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
        sa.ForeignKeyConstraint(['collection_id'], ['collections.id']),
        sa.PrimaryKeyConstraint('id'),
        sa.UniqueConstraint('collection_id', 'row_hash', name='uq_rejected_listing_row'),
    )
    op.create_index(op.f('ix_rejected_listings_reason'), 'rejected_listings', ['reason'], unique=False)
    with op.batch_alter_table('nowcast_rows', schema=None) as batch_op:
        batch_op.add_column(sa.Column('ask_price', sa.Float(), nullable=True))
        batch_op.add_column(sa.Column('ask_at', sqlmodel.sql.sqltypes.UTCDateTime(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table('nowcast_rows', schema=None) as batch_op:
        batch_op.drop_column('ask_at')
        batch_op.drop_column('ask_price')
    op.drop_index(op.f('ix_rejected_listings_reason'), table_name='rejected_listings')
    op.drop_table('rejected_listings')
    op.drop_index('ix_listings_item_ts', table_name='listings')
    op.drop_table('listings')
