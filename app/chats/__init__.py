"""The chat domain: settings, queues and channels, routing, the chat lifecycle operations.

Import rule: `app.engine` (its errors, transaction hooks and the engine passed in), `app.bpmn`,
`app.models`, `app.extensions`, `app.channels`, `app.job_names` and `app.services`; never
`app.api` or `app.adapters`. Outside parts (providers, the event bus, the file store, the
notifier) are reached through `services()` and their ports, never by importing an adapter.
Callers commit.
"""
