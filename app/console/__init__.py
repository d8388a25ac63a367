"""The web console: pages served by this app that call its HTTP API with the user's bearer token.

Pages are shells that hold no data; everything they show comes from /api with the token the
user signed in with (kept in the browser's localStorage), so the API's access rules are the
console's. bpmn-js and Chart.js come from npm (`npm ci`) and are served from node_modules, never committed.

Import rule: Flask only, nothing of `app`: a page that needs data asks the HTTP API.
"""
from functools import partial
from pathlib import Path

from flask import Blueprint, abort, current_app, redirect, render_template, send_from_directory

bp = Blueprint("console", __name__, url_prefix="/console", template_folder="templates",
               static_folder="static", static_url_path="/static")
root = Blueprint("root", __name__)

# The files of the bpmn-js package the instance page loads (viewer bundle and its styles).
BPMN_JS_FILES = {"bpmn-navigated-viewer.production.min.js", "assets/diagram-js.css", "assets/bpmn-js.css"}
# Chart.js's browser bundle, for the Reports page.
CHART_JS_FILES = {"chart.umd.min.js"}

# Page (its template and endpoint) -> (path, title).
PAGES = {"index": ("/", "Sign in"), "operator": ("/operator", "Operator panel"),
         "supervisor": ("/supervisor", "Supervisor"), "setup": ("/setup", "Chat setup"),
         "team": ("/team", "Team"), "processes": ("/processes", "Processes"), "reports": ("/reports", "Reports"),
         "facebook": ("/setup/facebook", "Connect Facebook pages")}


# The token lives in localStorage, so script injection is what must never work: scripts only from
# this origin (no inline ones), nothing framed. bpmn-js styles its SVG inline; sounds play from blob: URLs.
SECURITY_HEADERS = {
    "Content-Security-Policy": "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; "
                               "img-src 'self' data: blob:; media-src 'self' blob:; connect-src 'self'; "
                               "object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
}


@bp.after_request
def secure(response):
    response.headers.update(SECURITY_HEADERS)
    return response


@root.get("/")
def home():
    return redirect("/console/")


@root.get("/favicon.ico")
def favicon():
    """Browsers ask for it on pages that name none (an API answer opened in a tab)."""
    return send_from_directory(bp.static_folder, "favicon.svg", mimetype="image/svg+xml", max_age=86400)


def _page(name: str):
    return render_template(f"console/{name}.html", title=PAGES[name][1], page=name)


for _name, (_path, _) in PAGES.items():
    bp.add_url_rule(_path, _name, partial(_page, _name))


@bp.get("/instances/<int:instance_id>")
def instance(instance_id: int):
    return render_template("console/instance.html", title=f"Instance {instance_id}", page="instance",
                           instance_id=instance_id)


@bp.get("/chats/<int:chat_id>")
def chat(chat_id: int):
    return render_template("console/chat.html", title=f"Chat {chat_id}", page="chat", chat_id=chat_id)


def _vendor(package: str, files: set, name: str):
    """A file of an npm package's dist/ folder (installed by `npm ci`), only those listed."""
    if name not in files:
        abort(404)
    dist = Path(current_app.config["NODE_MODULES"]) / package / "dist"
    if not (dist / name).is_file():
        abort(404, f"{package} is not installed: run `npm ci` in the repository")
    return send_from_directory(dist, name, max_age=3600)


@bp.get("/vendor/bpmn-js/<path:name>")
def bpmn_js(name: str):
    return _vendor("bpmn-js", BPMN_JS_FILES, name)


@bp.get("/vendor/chart.js/<path:name>")
def chart_js(name: str):
    return _vendor("chart.js", CHART_JS_FILES, name)
