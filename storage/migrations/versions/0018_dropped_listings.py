"""dropped_listings: the listing events retention dropped, by id and content

Retention deletes a listing event that a later one of its item and source replaced; nothing
remembered its id, so the same event sent again was stored anew. The ids of events dropped
before this revision are not known: those events, sent again, are stored again, as before.

Revision ID: 0018
Revises: 0017
Create Date: 2026-12-07 01:10:00
"""
from alembic import op
import sqlalchemy as sa
import sqlmodel

revision = '0018'
down_revision = '0017'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        'dropped_listings',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('collection_id', sa.Integer(), nullable=False),
        sa.Column('event_id', sqlmodel.sql.sqltypes.AutoString(length=200), nullable=False),
        sa.Column('content_hash', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
        sa.Column('dropped_at', sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
        sa.ForeignKeyConstraint(['collection_id'], ['collections.id']),
        sa.PrimaryKeyConstraint('id'),
        sa.UniqueConstraint('collection_id', 'event_id', name='uq_dropped_listings_event'),
    )


def downgrade() -> None:
    op.drop_table('dropped_listings')
