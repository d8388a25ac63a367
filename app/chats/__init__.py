"""The chat domain: settings, queues and channels, routing, the chat lifecycle operations."""
