"""The process engine: run instances, fire their timers, deliver their messages.

Import rule: `app.bpmn`, `app.models`, `app.extensions` and the ports; never `app.chats`,
`app.api`, `app.adapters`, rq or redis. What the engine needs from outside comes in as
arguments: a job queue (a `JobQueue` port) and the operations diagrams may call, which
`create_app` assembles from the chat domain.
"""
