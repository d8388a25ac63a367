"""media: message kinds, payloads, edits and origin; attachments; profile names of contacts

Revision ID: 0005_media
Revises: 0005_faults
Create Date: 2026-12-02
"""
from alembic import op
import sqlalchemy as sa


revision = '0005_media'
down_revision = '0005_faults'
branch_labels = None
depends_on = None


def upgrade():
    with op.batch_alter_table('messages', schema=None) as batch_op:
        batch_op.add_column(sa.Column('kind', sa.String(length=20), server_default='text', nullable=False))
        batch_op.add_column(sa.Column('payload', sa.JSON(), nullable=True))
        batch_op.add_column(sa.Column('edits', sa.JSON(), nullable=True))
        batch_op.add_column(sa.Column('origin', sa.String(length=100), nullable=True))
        batch_op.add_column(sa.Column('provider_message_id', sa.String(length=200), nullable=True))
        batch_op.create_index('ix_messages_channel_provider_message', ['channel_id', 'provider_message_id'],
                              unique=False)
    with op.batch_alter_table('contact_identities', schema=None) as batch_op:
        batch_op.add_column(sa.Column('profile_named_at', sa.DateTime(timezone=True), nullable=True))
    op.create_table('attachments',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('message_id', sa.Integer(), nullable=False),
    sa.Column('name', sa.String(length=300), nullable=False),
    sa.Column('content_type', sa.String(length=100), nullable=False),
    sa.Column('size', sa.BigInteger(), nullable=True),
    sa.Column('status', sa.String(length=10), nullable=False),
    sa.Column('source', sa.JSON(), nullable=True),
    sa.Column('storage_key', sa.String(length=200), nullable=True),
    sa.Column('attempts', sa.Integer(), nullable=False),
    sa.Column('next_attempt_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('error', sa.Text(), nullable=True),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['message_id'], ['messages.id'], ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id')
    )
    with op.batch_alter_table('attachments', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_attachments_message_id'), ['message_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_attachments_next_attempt_at'), ['next_attempt_at'], unique=False)


def downgrade():
    with op.batch_alter_table('attachments', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_attachments_next_attempt_at'))
        batch_op.drop_index(batch_op.f('ix_attachments_message_id'))
    op.drop_table('attachments')
    with op.batch_alter_table('contact_identities', schema=None) as batch_op:
        batch_op.drop_column('profile_named_at')
    with op.batch_alter_table('messages', schema=None) as batch_op:
        batch_op.drop_index('ix_messages_channel_provider_message')
        batch_op.drop_column('provider_message_id')
        batch_op.drop_column('origin')
        batch_op.drop_column('edits')
        batch_op.drop_column('payload')
        batch_op.drop_column('kind')
