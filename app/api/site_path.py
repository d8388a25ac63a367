"""A `SiteUrl` with a path (`https://example.com/chat`): providers are told to call
`/chat/webhooks/...` (and `/chat/oauth/...`), and this middleware serves that as `/webhooks/...`, so no proxy has to
rewrite it. Only the path of the configured SiteUrl is accepted as a prefix."""
from urllib.parse import urlparse

MARKS = ("/webhooks/", "/oauth/")   # what providers and their dialogs call back


class SitePathPrefix:
    def __init__(self, wsgi_app, flask_app):
        self.wsgi_app, self.flask_app = wsgi_app, flask_app

    def __call__(self, environ, start_response):
        path = environ.get("PATH_INFO", "")
        at = max(path.find(mark) for mark in MARKS)
        if at > 0 and path[:at] == self._site_path():
            environ = {**environ, "PATH_INFO": path[at:], "SCRIPT_NAME": environ.get("SCRIPT_NAME", "") + path[:at]}
        return self.wsgi_app(environ, start_response)

    def _site_path(self) -> str | None:
        from app.chats import settings
        from app.extensions import db
        with self.flask_app.app_context():
            try:
                site = settings.get("SiteUrl")
            finally:
                db.session.remove()
        return urlparse(site).path.rstrip("/") or None if site else None
