"""Connecting Facebook pages through Facebook's login (app.chats.facebook_login says how):
the admin routes the console calls, and the callback Facebook's dialog sends the browser to."""
from html import escape
from urllib.parse import urlsplit

from flask import Blueprint, current_app, g, redirect, request
from pydantic import Field

from app import channels
from app.api.auth import admin, authenticate, bearer_token
from app.api.chat_setup import ChannelOut
from app.api.contract import Answer, Body, Bool, Int, Query, Text, Timestamp, contract
from app.channels.base import ProviderError
from app.chats import facebook_login as login_flow
from app.engine.errors import Invalid
from app.extensions import db

bp = Blueprint("facebook_login", __name__, url_prefix="/api/channels/facebook")
bp.before_request(authenticate)
callback_bp = Blueprint("facebook_callback", __name__)

COOKIE = "chatflow_fb_login"   # binds a run to the browser that started it


class LoginStarted(Answer):
    url: str = Field(description="Facebook's login dialog: send the admin's browser there")


class LoginPage(Answer):
    id: str
    name: str
    channel_id: int | None = Field(description="the channel serving this page already, if any")
    channel_status: str | None = Field(description="that channel's status (needs_reconnect: pick it to reconnect)")
    channel_active: bool | None


class Login(Answer):
    id: int
    state: str = Field(description="waiting (not back from Facebook), ready (pick pages), failed (see error), "
                                   "done (pages connected) or expired")
    error: str | None
    created_at: Timestamp
    expires_at: Timestamp
    pages: list[LoginPage] = Field(description="the pages the Facebook user manages; never their tokens")


class PickIn(Body):
    page_ids: list[Text(100)] = Field(min_length=1, max_length=200)
    queue_id: Int
    active: Bool = True


class CallbackQuery(Query):
    code: str | None = Field(None, max_length=2000)
    state: str | None = Field(None, max_length=200)
    error: str | None = Field(None, max_length=200)
    error_reason: str | None = Field(None, max_length=200)
    error_description: str | None = Field(None, max_length=500)


@bp.post("/login")
@admin
@contract(answer=LoginStarted)
def start_login():
    """Start connecting pages through Facebook's login: the dialog's URL (client_id, redirect_uri =
    {SiteUrl}/oauth/facebook/callback, the Messenger scopes, a single-use state bound to this
    sign-in), and a cookie binding the run to this browser. 422 setting_missing names the setting to set."""
    url, browser = login_flow.start(g.user, bearer_token(), current_app.config["FACEBOOK_DIALOG_BASE"])
    db.session.commit()
    response = current_app.json.response({"url": url})
    callback_path = urlsplit(login_flow.callback_uri()).path
    response.set_cookie(COOKIE, browser, max_age=login_flow.LOGIN_MINUTES * 60, path=callback_path,
                        httponly=True, samesite="Lax", secure=login_flow.callback_uri().startswith("https:"))
    return response


@bp.get("/logins/<int:login_id>")
@admin
@contract(answer=Login)
def get_login(login_id):
    """A run of this sign-in: its state, why it failed, and the pages to pick from."""
    return login_flow.describe(login_flow.login_for(login_id, g.user, bearer_token()))


@bp.post("/logins/<int:login_id>/pages")
@admin
@contract(body=PickIn, answer=list[ChannelOut], status=201)
def pick_pages(login_id, body: PickIn):
    """The picked pages become channels of the queue, each subscribed to the app's webhook (a page
    already connected is reconnected: fresh token, subscribed again); a refused page is kept
    inactive with Facebook's reason. The run is then done (409 login_not_ready afterwards)."""
    login = login_flow.login_for(login_id, g.user, bearer_token())
    made = login_flow.connect_pages(login, body.page_ids, body.queue_id, body.active)
    db.session.commit()
    return made, 201


@callback_bp.get(login_flow.CALLBACK_PATH)
@contract(query=CallbackQuery, media_type="text/html")
def callback(query: CallbackQuery):
    """Facebook's dialog sends the admin's browser here (no bearer token: the state and this
    browser's cookie identify the run). The state is spent; the code is exchanged for a long-lived
    user token and the user's pages are listed; then the browser goes to the console's picker.
    A forged, replayed, expired or other browser's state is 400."""
    try:
        login = login_flow.spend_state(query.state, request.cookies.get(COOKIE))
    except Invalid as e:
        db.session.rollback()
        return _page(400, "Facebook sign-in refused", e.message)
    login_id, redirect_uri = login.id, login.redirect_uri
    db.session.commit()   # the state is spent before Facebook is asked anything
    pages, error = None, login_flow.cancelled(query.model_dump())
    if error is None and not query.code:
        error = "Facebook sent no code back"
    if error is None:
        try:
            pages = login_flow.fetch_pages(channels.adapter("facebook").client, redirect_uri, query.code)
        except ProviderError as e:
            error = login_flow.provider_problem(e)
    login_flow.record_pages(login_id, pages, error)
    db.session.commit()
    response = redirect(f"/console/setup/facebook?login={login_id}", 303)
    response.delete_cookie(COOKIE, path=urlsplit(redirect_uri).path)
    return response


def _page(status: int, title: str, text: str):
    """A browser lands here, not a script: a short page saying what happened and where to go."""
    body = (f"<!doctype html><meta charset=utf-8><title>{escape(title)}</title><h1>{escape(title)}</h1>"
            f"<p>{escape(text)}</p><p><a href=\"/console/setup#channels\">Back to Chat setup</a></p>")
    return body, status, {"Content-Type": "text/html; charset=utf-8"}
