"""The chat domain: settings, queues and channels, routing, the chat lifecycle operations.

Import rule: `app.engine` (its errors, transaction hooks and the engine passed in), `app.bpmn`,
`app.models`, `app.extensions`, the ports and the app's services; never `app.api` or
`app.adapters`. Outside parts (providers, the event bus, the notifier) are reached through
their Protocols, never by importing an adapter. Callers commit.
"""
