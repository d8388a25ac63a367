"""timers: one indexed column on the instance instead of a table of rows

The instance's state already holds every timer it waits on (shown in `waiting_for`); the sweep
only needs the earliest due time, and keeping it in the instance row writes it in the same
UPDATE as the state instead of extra statements on a second table on every event.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-26
"""
from alembic import op
import sqlalchemy as sa


revision = '0004'
down_revision = '0003'
branch_labels = None
depends_on = None


def upgrade():
    with op.batch_alter_table('process_instances', schema=None) as batch_op:
        batch_op.add_column(sa.Column('next_timer_at', sa.DateTime(timezone=True), nullable=True))
        batch_op.create_index(batch_op.f('ix_process_instances_next_timer_at'), ['next_timer_at'], unique=False)
    op.execute("UPDATE process_instances SET next_timer_at = "
               "(SELECT min(due_at) FROM timers WHERE timers.instance_id = process_instances.id)")
    with op.batch_alter_table('timers', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_timers_instance_id'))
        batch_op.drop_index(batch_op.f('ix_timers_due_at'))
    op.drop_table('timers')


def downgrade():
    op.create_table('timers',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('instance_id', sa.Integer(), nullable=False),
    sa.Column('task_id', sa.String(length=36), nullable=False),
    sa.Column('element_id', sa.String(length=200), nullable=False),
    sa.Column('due_at', sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['instance_id'], ['process_instances.id'], ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('instance_id', 'task_id')
    )
    with op.batch_alter_table('timers', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_timers_due_at'), ['due_at'], unique=False)
        batch_op.create_index(batch_op.f('ix_timers_instance_id'), ['instance_id'], unique=False)
    # One placeholder row per instance at its earliest due time: the old sweep finds it, and the
    # old engine replaces it with the real rows on that instance's next save.
    op.execute("INSERT INTO timers (instance_id, task_id, element_id, due_at) SELECT id, 'migrated', '', "
               "next_timer_at FROM process_instances WHERE next_timer_at IS NOT NULL")
    with op.batch_alter_table('process_instances', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_process_instances_next_timer_at'))
        batch_op.drop_column('next_timer_at')
