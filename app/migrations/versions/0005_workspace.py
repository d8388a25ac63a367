"""operator workspace: read markers, private notes, canned responses, deactivated users

Revision ID: 0005_workspace
Revises: 0005_media
Create Date: 2026-12-02
"""
from alembic import op
import sqlalchemy as sa


revision = '0005_workspace'
down_revision = '0005_media'
branch_labels = None
depends_on = None


def upgrade():
    op.create_table('read_markers',
    sa.Column('user_id', sa.Integer(), nullable=False),
    sa.Column('chat_id', sa.Integer(), nullable=False),
    sa.Column('message_id', sa.Integer(), nullable=False),
    sa.Column('updated_at', sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['chat_id'], ['chats.id'], ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['user_id'], ['users.id'], ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('user_id', 'chat_id')
    )
    op.create_table('chat_notes',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('chat_id', sa.Integer(), nullable=False),
    sa.Column('author_id', sa.Integer(), nullable=True),
    sa.Column('text', sa.Text(), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['author_id'], ['users.id'], ondelete='SET NULL'),
    sa.ForeignKeyConstraint(['chat_id'], ['chats.id'], ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id')
    )
    op.create_index('ix_chat_notes_chat_id', 'chat_notes', ['chat_id'], unique=False)
    op.create_table('canned_responses',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('shortcut', sa.String(length=50), nullable=False),
    sa.Column('text', sa.Text(), nullable=False),
    sa.Column('queue_id', sa.Integer(), nullable=True),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['queue_id'], ['queues.id'], ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id')
    )
    op.create_index('ix_canned_responses_shortcut', 'canned_responses', ['shortcut'], unique=False)
    op.create_index('ix_canned_responses_queue_id', 'canned_responses', ['queue_id'], unique=False)
    with op.batch_alter_table('users', schema=None) as batch_op:
        batch_op.add_column(sa.Column('active', sa.Boolean(), server_default=sa.true(), nullable=False))


def downgrade():
    with op.batch_alter_table('users', schema=None) as batch_op:
        batch_op.drop_column('active')
    op.drop_index('ix_canned_responses_queue_id', table_name='canned_responses')
    op.drop_index('ix_canned_responses_shortcut', table_name='canned_responses')
    op.drop_table('canned_responses')
    op.drop_index('ix_chat_notes_chat_id', table_name='chat_notes')
    op.drop_table('chat_notes')
    op.drop_table('read_markers')
