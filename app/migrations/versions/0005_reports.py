"""reports: indexes for reading chat events and replies by kind and time

Revision ID: 0005_reports
Revises: 0004
Create Date: 2026-12-02
"""
from alembic import op


revision = '0005_reports'
down_revision = '0004'
branch_labels = None
depends_on = None


def upgrade():
    op.create_index('ix_chat_events_event_at', 'chat_events', ['event', 'at'])
    op.create_index('ix_chat_events_chat_event_at', 'chat_events', ['chat_id', 'event', 'at'])
    op.create_index('ix_messages_direction_created', 'messages', ['direction', 'created_at'])
    op.create_index('ix_messages_chat_direction_created', 'messages', ['chat_id', 'direction', 'created_at'])


def downgrade():
    op.drop_index('ix_messages_chat_direction_created', table_name='messages')
    op.drop_index('ix_messages_direction_created', table_name='messages')
    op.drop_index('ix_chat_events_chat_event_at', table_name='chat_events')
    op.drop_index('ix_chat_events_event_at', table_name='chat_events')
