"""task_runs.collection: the collection a run was for, so last runs are per task and collection;
loop_states.changed_by: who paused or resumed a loop

Before, the latest run of a task hid the other collections' (the cards' hourly monitor, skipped
while the cards are not loaded, hid the punks' run). Filled in from each run's detail.

Revision ID: 0015
Revises: 0014
Create Date: 2026-12-06 01:00:00
"""
from alembic import op
import sqlalchemy as sa
import sqlmodel

revision = '0015'
down_revision = '0014'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('task_runs', schema=None) as batch_op:
        batch_op.add_column(sa.Column('collection', sqlmodel.sql.sqltypes.AutoString(length=100), nullable=True))
    if op.get_bind().dialect.name == 'postgresql':
        op.execute("UPDATE task_runs SET collection = detail->>'collection' WHERE collection IS NULL")
    with op.batch_alter_table('loop_states', schema=None) as batch_op:
        batch_op.add_column(sa.Column('changed_by', sqlmodel.sql.sqltypes.AutoString(length=100), nullable=False,
                                      server_default=''))


def downgrade() -> None:
    with op.batch_alter_table('loop_states', schema=None) as batch_op:
        batch_op.drop_column('changed_by')
    with op.batch_alter_table('task_runs', schema=None) as batch_op:
        batch_op.drop_column('collection')
