"""faults: a reply's attempt is recorded before it is made; workers' heartbeats

`messages.attempted_at` is when the reply's latest attempt began; a reply `sending` whose
attempt is long past has no recorded outcome and becomes `uncertain`. `worker_heartbeats`
holds each worker's last beat, so /healthz counts live workers while Redis is away.

Revision ID: 0005_faults
Revises: 0005_reports
Create Date: 2026-12-02
"""
from alembic import op
import sqlalchemy as sa


revision = '0005_faults'
down_revision = '0005_reports'
branch_labels = None
depends_on = None


def upgrade():
    with op.batch_alter_table('messages', schema=None) as batch_op:
        batch_op.add_column(sa.Column('attempted_at', sa.DateTime(timezone=True), nullable=True))
    op.create_table('worker_heartbeats',
    sa.Column('name', sa.String(length=200), nullable=False),
    sa.Column('live_until', sa.DateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('name')
    )
    with op.batch_alter_table('worker_heartbeats', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_worker_heartbeats_live_until'), ['live_until'], unique=False)


def downgrade():
    with op.batch_alter_table('worker_heartbeats', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_worker_heartbeats_live_until'))
    op.drop_table('worker_heartbeats')
    # An attempt in flight or uncertain is, for the old code, a reply that failed.
    op.execute("UPDATE messages SET status = 'failed' WHERE status IN ('sending', 'uncertain')")
    with op.batch_alter_table('messages', schema=None) as batch_op:
        batch_op.drop_column('attempted_at')
