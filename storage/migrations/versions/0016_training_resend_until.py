"""training_requests.resend_until: when the one deferred re-send of a request's message is due

Every duplicate message that met a training in progress sent itself again once a lease until the
request was decided; now one re-send is pending at a time, recorded here, and the other duplicates
are acked with a skipped run.

Revision ID: 0016
Revises: 0015
Create Date: 2026-12-06 05:00:00
"""
from alembic import op
import sqlalchemy as sa
import sqlmodel

revision = '0016'
down_revision = '0015'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('training_requests', schema=None) as batch_op:
        batch_op.add_column(sa.Column('resend_until', sqlmodel.sql.sqltypes.UTCDateTime(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table('training_requests', schema=None) as batch_op:
        batch_op.drop_column('resend_until')
