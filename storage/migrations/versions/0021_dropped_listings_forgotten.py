"""dropped_listings.dropped_at indexed: retention forgets a dropped listing event once it has been
remembered for FAIRVALUE_AUDIT_RETENTION_DAYS

The table kept every dropped event's id for ever, in a module whose promise is that nothing grows
without bound. Each hourly pass now deletes the oldest, so it looks them up by when they were dropped.

Revision ID: 0021
Revises: 0020
Create Date: 2026-12-07 04:05:00
"""
from alembic import op

revision = '0021'
down_revision = '0020'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index('ix_dropped_listings_dropped_at', 'dropped_listings', ['dropped_at'], unique=False)


def downgrade() -> None:
    op.drop_index('ix_dropped_listings_dropped_at', table_name='dropped_listings')
