"""auth stamp: what a user's tokens open changed (token revoked, permissions, roles, deactivated)

Web processes cache a token's user and permissions and check the stamp on the user row they
read anyway, so a change takes effect in every process at once.

Revision ID: 0006_auth_stamp
Revises: 0005_web
Create Date: 2026-12-02
"""
from alembic import op
import sqlalchemy as sa


revision = '0006_auth_stamp'
down_revision = '0005_web'
branch_labels = None
depends_on = None


def upgrade():
    with op.batch_alter_table('users', schema=None) as batch_op:
        batch_op.add_column(sa.Column('auth_stamp', sa.String(length=32), nullable=False, server_default=''))


def downgrade():
    with op.batch_alter_table('users', schema=None) as batch_op:
        batch_op.drop_column('auth_stamp')
