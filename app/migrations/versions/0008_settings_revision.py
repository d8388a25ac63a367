"""settings revision: raised by every write of a setting

Processes cache the settings and compare the sum of the rows' revisions, read with the chat's
row lock, so a change holds in every process at once.

Revision ID: 0008_settings_revision
Revises: 0007_facebook_connect
Create Date: 2026-12-02
"""
from alembic import op
import sqlalchemy as sa


revision = '0008_settings_revision'
down_revision = '0007_facebook_connect'
branch_labels = None
depends_on = None


def upgrade():
    with op.batch_alter_table('settings', schema=None) as batch_op:
        batch_op.add_column(sa.Column('revision', sa.Integer(), nullable=False, server_default='0'))


def downgrade():
    with op.batch_alter_table('settings', schema=None) as batch_op:
        batch_op.drop_column('revision')
