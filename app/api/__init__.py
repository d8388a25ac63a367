"""The HTTP routes: parse and validate, call one domain or engine function, serialise.

Import rule: may import `app.chats`, `app.engine`, `app.bpmn` (errors), `app.accounts`,
`app.channels` (to parse what a webhook brings) and `app.services` (the engine and outside
parts); never `app.jobs`, `app.cli` or an adapter: outside parts come through `services()`.
"""
