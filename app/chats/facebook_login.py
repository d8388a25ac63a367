"""Connecting Facebook pages the way Meta requires (README, "Connecting Facebook pages"): the
console sends the admin to Facebook's login dialog; its callback exchanges the `code` for a user
token, that for a long-lived one, and lists the user's pages; the admin picks pages, which
become subscribed channels. Callers commit.

A run is bound to the sign-in that started it (the user and their bearer token) and to that
browser (a cookie): the `state` Meta carries is single-use and kept only as its hash. The user
token lives only during the callback; the page tokens wait in the run until the pick, then are
erased.
"""
import hmac
import secrets
from datetime import datetime, timedelta

from sqlalchemy import delete, select, update

from app.accounts import hash_token
from app.channels.base import ProviderError
from app.channels.facebook import dialog_url
from app.chats import admin, settings
from app.engine.errors import Conflict, Invalid, NotFound
from app.extensions import db
from app.models.chat import Channel, FacebookLogin
from app.models.types import utcnow

CALLBACK_PATH = "/oauth/facebook/callback"
LOGIN_MINUTES = 30   # from the button to the pick: Meta's dialog plus a look at the pages
NEEDED = ("FacebookAppId", "FacebookAppSecret", "SiteUrl")

REFUSALS = {
    "unknown": "this sign-in was not started here (no such state): start again from Chat setup",
    "used": "this sign-in has already come back once (a state is used once): start again from Chat setup",
    "expired": f"this sign-in is older than {LOGIN_MINUTES} minutes: start again from Chat setup",
    "other_browser": "this sign-in was started in another browser or at another address than SiteUrl: "
                     "open the console at the SiteUrl address and start again",
}


def state_refusal(found: bool, created_at: datetime | None, returned_at: datetime | None, same_browser: bool,
                  now: datetime) -> str | None:
    """Why a callback's `state` is refused (a key of REFUSALS), or None when it may be spent."""
    if not found:
        return "unknown"
    if returned_at is not None:
        return "used"
    if now - created_at > timedelta(minutes=LOGIN_MINUTES):
        return "expired"
    if not same_browser:
        return "other_browser"
    return None


def callback_uri() -> str:
    """Where the dialog sends the browser back: the "Valid OAuth Redirect URI" of the Meta app."""
    return (settings.get("SiteUrl") or "") + CALLBACK_PATH


def start(user, bearer: str, dialog_base: str) -> tuple[str, str]:
    """(dialog URL, browser secret for the cookie) of a new run; 422 naming the setting still missing."""
    missing = [code for code in NEEDED if not settings.get(code)]
    if missing:
        raise Invalid(f"set {', '.join(missing)} first (Settings): Facebook's login needs them", code="setting_missing",
                      details={"field": missing[0], "fields": missing})
    now = utcnow()
    # Runs nobody finished are kept a day, for the admin to see why, then dropped.
    db.session.execute(delete(FacebookLogin).where(FacebookLogin.created_at < now - timedelta(days=1)))
    state, browser = secrets.token_urlsafe(32), secrets.token_urlsafe(32)
    redirect_uri = callback_uri()
    db.session.add(FacebookLogin(user_id=user.id, token_hash=hash_token(bearer), state_hash=hash_token(state),
                                 browser_hash=hash_token(browser), redirect_uri=redirect_uri, created_at=now))
    return dialog_url(dialog_base, settings.get("FacebookAppId"), redirect_uri, state), browser


def spend_state(state: str | None, browser: str | None) -> FacebookLogin:
    """The run this callback belongs to, its state spent (even by two callbacks at once, only one
    wins); 400 state_refused saying why otherwise."""
    login = db.session.scalars(select(FacebookLogin).where(FacebookLogin.state_hash == hash_token(state))).first() \
        if state else None
    same_browser = login is not None and bool(browser) and hmac.compare_digest(hash_token(browser), login.browser_hash)
    now = utcnow()
    problem = state_refusal(login is not None, login and login.created_at, login and login.returned_at,
                            same_browser, now)
    if problem is None:
        spent = db.session.execute(update(FacebookLogin).where(FacebookLogin.id == login.id,
                                                               FacebookLogin.returned_at.is_(None))
                                   .values(returned_at=now))
        problem = None if spent.rowcount == 1 else "used"
    if problem:
        raise Invalid(f"state: {REFUSALS[problem]}", code="state_refused", details={"field": "state", "why": problem})
    db.session.refresh(login)
    return login


def fetch_pages(graph, redirect_uri: str, code: str) -> list[dict]:
    """Code -> user token -> long-lived user token -> the user's pages with their (lasting) page
    tokens. No database: called between transactions. The user tokens end with this call."""
    app_id, secret = settings.get("FacebookAppId"), settings.get("FacebookAppSecret")
    short = graph.user_token(app_id, secret, redirect_uri, code)
    return graph.pages(graph.long_lived_token(app_id, secret, short))


def record_pages(login_id: int, pages: list[dict] | None, error: str | None) -> None:
    login = db.session.get(FacebookLogin, login_id)
    login.pages, login.error = pages, error


def cancelled(params: dict) -> str | None:
    """What the dialog said when the admin did not grant access (error=access_denied ...)."""
    if not params.get("error"):
        return None
    said = params.get("error_description") or params.get("error_reason") or params["error"]
    return f"Facebook did not grant access ({params['error']}: {said[:300]})"


def provider_problem(error: ProviderError) -> str:
    return f"Facebook did not answer; try again ({error})" if error.retryable else f"Facebook refused: {error}"


def login_for(login_id: int, user, bearer: str) -> FacebookLogin:
    """A run of this very sign-in (another user's or another token's is 404, as if absent)."""
    login = db.session.get(FacebookLogin, login_id)
    if login is None or login.user_id != user.id or not hmac.compare_digest(login.token_hash, hash_token(bearer)):
        raise NotFound(f"no Facebook sign-in {login_id} of yours", code="login_not_found")
    return login


def describe(login: FacebookLogin) -> dict:
    """The run as the picker shows it: each page's name and the channel already serving it. No token."""
    expired = utcnow() - login.created_at > timedelta(minutes=LOGIN_MINUTES)
    state = ("done" if login.finished_at else "failed" if login.error else "expired" if expired
             else "ready" if login.pages is not None else "waiting")
    pages = []
    for page in login.pages or []:
        channel = db.session.scalars(select(Channel).where(Channel.provider == "facebook",
                                                           Channel.page_id == page["id"])).first()
        pages.append({"id": page["id"], "name": page["name"], "channel_id": channel.id if channel else None,
                      "channel_status": channel.status if channel else None,
                      "channel_active": channel.active if channel else None})
    return {"id": login.id, "state": state, "error": login.error, "created_at": login.created_at,
            "expires_at": login.created_at + timedelta(minutes=LOGIN_MINUTES), "pages": pages}


def connect_pages(login: FacebookLogin, page_ids: list[str], queue_id: int, active: bool) -> list[Channel]:
    """The picked pages made channels (or reconnected); the run's page tokens are then erased."""
    shown = describe(login)
    if shown["state"] != "ready":
        raise Conflict(f"this Facebook sign-in is {shown['state']}: start again from Chat setup"
                       if shown["state"] != "waiting" else "this Facebook sign-in has not come back from Facebook yet",
                       code="login_not_ready", details={"state": shown["state"]})
    pages = [{**page, "channel_id": listed["channel_id"]} for page, listed in zip(login.pages, shown["pages"])]
    made = admin.make_page_channels(pages, page_ids, queue_id, active)
    login.pages, login.finished_at = None, utcnow()
    return made
