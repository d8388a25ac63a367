"""routing: operator presence, and new users start inactive

`connected_until` is when an operator's last sign of life (an open console stream's
keep-alive, a presence heartbeat) runs out; routing offers chats only to operators who are
active and connected. Users created from now on start `inactive`; existing ones keep theirs.

Revision ID: 0005_routing
Revises: 0005_workspace
Create Date: 2026-12-02
"""
from alembic import op
import sqlalchemy as sa


revision = '0005_routing'
down_revision = '0005_workspace'
branch_labels = None
depends_on = None


def upgrade():
    with op.batch_alter_table('users', schema=None) as batch_op:
        batch_op.add_column(sa.Column('connected_until', sa.DateTime(timezone=True), nullable=True))
        batch_op.alter_column('status', existing_type=sa.String(length=10), server_default='inactive')


def downgrade():
    with op.batch_alter_table('users', schema=None) as batch_op:
        batch_op.alter_column('status', existing_type=sa.String(length=10), server_default='active')
        batch_op.drop_column('connected_until')
