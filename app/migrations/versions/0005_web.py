"""web: website chat channels (widget settings) and visitor sessions

Revision ID: 0005_web
Revises: 0005_routing
Create Date: 2026-12-02
"""
from alembic import op
import sqlalchemy as sa


revision = '0005_web'
down_revision = '0005_routing'
branch_labels = None
depends_on = None


def upgrade():
    with op.batch_alter_table('channels', schema=None) as batch_op:
        batch_op.add_column(sa.Column('widget_key', sa.String(length=64), nullable=True))
        batch_op.add_column(sa.Column('widget', sa.JSON(), nullable=True))
        batch_op.create_index('ix_channels_widget_key', ['widget_key'], unique=True)
    op.create_table(
        'visitor_sessions',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('channel_id', sa.Integer(), sa.ForeignKey('channels.id', ondelete='CASCADE'), nullable=False),
        sa.Column('contact_id', sa.Integer(), sa.ForeignKey('contacts.id', ondelete='CASCADE'), nullable=False),
        sa.Column('visitor_id', sa.String(length=64), nullable=False),
        sa.Column('token_hash', sa.String(length=64), nullable=False),
        sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint('id'),
        sa.UniqueConstraint('token_hash'),
    )
    op.create_index('ix_visitor_sessions_channel_id', 'visitor_sessions', ['channel_id'])


def downgrade():
    op.drop_index('ix_visitor_sessions_channel_id', table_name='visitor_sessions')
    op.drop_table('visitor_sessions')
    with op.batch_alter_table('channels', schema=None) as batch_op:
        batch_op.drop_index('ix_channels_widget_key')
        batch_op.drop_column('widget')
        batch_op.drop_column('widget_key')
