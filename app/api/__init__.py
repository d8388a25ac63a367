"""The HTTP routes: parse and validate, call one domain or engine function, serialise.

Import rule: may import `app.chats`, `app.engine`, `app.bpmn` (errors), `app.accounts`,
the app's services (its outside parts) and the adapters' pure parsers of inbound webhooks
(`telegram.parse_update`, `facebook.parse_webhook`); never `app.jobs` or `app.cli`, and never
an outbound client directly: those come through the app's services.
"""
