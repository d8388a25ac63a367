"""facebook connect: channel status (refused, needs_reconnect) and Facebook login runs

Revision ID: 0007_facebook_connect
Revises: 0006_auth_stamp
Create Date: 2026-12-02
"""
from alembic import op
import sqlalchemy as sa


revision = '0007_facebook_connect'
down_revision = '0006_auth_stamp'
branch_labels = None
depends_on = None


def upgrade():
    with op.batch_alter_table('channels', schema=None) as batch_op:
        batch_op.add_column(sa.Column('status', sa.String(length=20), nullable=False, server_default='ok'))
        batch_op.add_column(sa.Column('status_reason', sa.Text(), nullable=True))
    op.create_table(
        'facebook_logins',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('user_id', sa.Integer(), sa.ForeignKey('users.id', ondelete='CASCADE'), nullable=False),
        sa.Column('token_hash', sa.String(length=64), nullable=False),
        sa.Column('state_hash', sa.String(length=64), nullable=False),
        sa.Column('browser_hash', sa.String(length=64), nullable=False),
        sa.Column('redirect_uri', sa.String(length=600), nullable=False),
        sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
        sa.Column('returned_at', sa.DateTime(timezone=True), nullable=True),
        sa.Column('finished_at', sa.DateTime(timezone=True), nullable=True),
        sa.Column('pages', sa.JSON(), nullable=True),
        sa.Column('error', sa.Text(), nullable=True),
        sa.PrimaryKeyConstraint('id'),
        sa.UniqueConstraint('state_hash'),
    )
    op.create_index('ix_facebook_logins_user_id', 'facebook_logins', ['user_id'])
    op.create_index('ix_facebook_logins_created_at', 'facebook_logins', ['created_at'])


def downgrade():
    op.drop_index('ix_facebook_logins_created_at', table_name='facebook_logins')
    op.drop_index('ix_facebook_logins_user_id', table_name='facebook_logins')
    op.drop_table('facebook_logins')
    with op.batch_alter_table('channels', schema=None) as batch_op:
        batch_op.drop_column('status_reason')
        batch_op.drop_column('status')
