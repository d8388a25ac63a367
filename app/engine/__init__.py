"""The process engine: run instances, fire their timers, deliver their messages.

Import rule: `app.bpmn`, `app.models`, `app.extensions` and `app.job_names`; never `app.chats`,
`app.api`, `app.adapters`, rq or redis (tests/unit/test_imports.py checks it). What the engine
needs from outside comes in as arguments: a job queue (the `JobQueue` port of engine/ports.py)
and the operations diagrams may call, which app/catalogue.py assembles from the chat domain.
"""
