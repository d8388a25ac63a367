"""The outside world: HTTP notifications, Redis (jobs and live events) and the in-process job
thread that stands in for RQ on the embedded default. (Telegram and Facebook are channels:
`app/channels`.)

Import rule: each adapter implements a Protocol (a port) and may import the ports and other
adapters, nothing else of `app`: no models, no engine, no chat domain, no HTTP routes.
Only the wiring (`create_app`) picks an adapter; the rest of the app sees the Protocol.
"""
