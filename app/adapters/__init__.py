"""The outside world: HTTP notifications, Redis (jobs and live events) and the in-process job
thread that stands in for RQ on the embedded default. (Telegram and Facebook are channels:
`app/channels`.)

Import rule: each adapter implements a port (`app.ports`, or `app.engine.ports` for the job
queue) and names it as its base class; it may import the ports, other adapters, and `app.models`
with `app.extensions` where it keeps rows (the database file store); never the engine, the chat
domain or the HTTP routes. Only the wiring (`create_app`) picks an adapter; the rest of the app
reaches it through `app.services.services()` and sees the port.
"""
