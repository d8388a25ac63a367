"""Admin configuration of queues, their operators and channels. Callers commit."""
import logging
import secrets
from functools import partial

from sqlalchemy import func, select

from app import accounts, channels, job_names
from app.channels.base import ProviderError
from app.chats import live, presence, settings
from app.engine.errors import Conflict, Invalid, get_or_404
from app.engine.tx import after_commit
from app.extensions import db
from app.models import Role, RoleMember, User
from app.models.chat import Channel, Chat, Message, Queue, QueueOperator

log = logging.getLogger(__name__)
DEFAULT_LIFECYCLE = "ChatLifecycle"


def check_deployed(key: str | None, field: str = "lifecycle_process") -> None:
    """422 naming `field` unless process `key` is deployed (its id is read, not its XML)."""
    from app.bpmn.store import latest_version_ref
    if key is not None and latest_version_ref(key) is None:
        raise Invalid(f"{field}: no process {key!r} is deployed", details={"field": field})


def _unique_name(model, name: str, own_id: int | None = None) -> None:
    row = db.session.scalars(select(model).where(model.name == name)).first()
    if row is not None and row.id != own_id:
        raise Conflict(f"a {model.__tablename__.rstrip('s')} named {name!r} exists", code="name_taken",
                       details={"field": "name"})


# -- queues -------------------------------------------------------------------------------
def create_queue(fields: dict) -> Queue:
    _unique_name(Queue, fields["name"])
    fields = {**fields, "lifecycle_process": fields.get("lifecycle_process") or DEFAULT_LIFECYCLE}
    check_deployed(fields["lifecycle_process"])  # the default too: its chats would wait for ever
    queue = Queue(**fields)
    db.session.add(queue)
    db.session.flush()
    return queue


def update_queue(queue: Queue, fields: dict) -> Queue:
    if "name" in fields:
        _unique_name(Queue, fields["name"], queue.id)
    if "lifecycle_process" in fields:
        check_deployed(fields["lifecycle_process"])
    for name, value in fields.items():
        setattr(queue, name, value)
    return queue


def delete_queue(queue: Queue) -> None:
    """A queue that channels or chats use cannot be deleted (409 queue_in_use)."""
    channels = db.session.scalar(select(func.count()).select_from(Channel).where(Channel.queue_id == queue.id))
    chats = db.session.scalar(select(func.count()).select_from(Chat).where(Chat.queue_id == queue.id))
    if channels or chats:
        raise Conflict(f"queue {queue.id} has {channels} channels and {chats} chats; move or delete them first",
                       code="queue_in_use")
    db.session.delete(queue)


def add_operator(queue: Queue, user_id: int | None, role_id: int | None, jobs) -> QueueOperator:
    if (user_id is None) == (role_id is None):
        raise Invalid("give exactly one of user_id and role_id", details={"field": "user_id"})
    if user_id is not None and db.session.get(User, user_id) is None:
        raise Invalid("user_id: no such user", details={"field": "user_id"})
    if role_id is not None and db.session.get(Role, role_id) is None:
        raise Invalid("role_id: no such role", details={"field": "role_id"})
    exists = db.session.scalars(select(QueueOperator).where(QueueOperator.queue_id == queue.id,
                                                            QueueOperator.user_id == user_id,
                                                            QueueOperator.role_id == role_id)).first()
    if exists:
        raise Conflict("this operator entry exists", code="operator_exists")
    entry = QueueOperator(queue_id=queue.id, user_id=user_id, role_id=role_id)
    db.session.add(entry)
    db.session.flush()
    members = [user_id] if user_id else db.session.scalars(select(RoleMember.user_id)
                                                           .where(RoleMember.role_id == role_id)).all()
    for member in members:  # someone joined the queue: they may take a waiting chat
        after_commit(db.session, partial(jobs.enqueue, job_names.DRAIN_OPERATOR, member))
    return entry


# -- channels -----------------------------------------------------------------------------
def remove_operator(entry: QueueOperator, jobs) -> None:
    """The users it named (the user, or the role's members) lose the chats offered to them there."""
    members = [entry.user_id] if entry.user_id else db.session.scalars(
        select(RoleMember.user_id).where(RoleMember.role_id == entry.role_id)).all()
    db.session.delete(entry)
    presence.recheck_offers(members, jobs)


def _page_free(page_id: str | None, own_id: int | None = None) -> None:
    if page_id is None:
        return
    if not (page_id.isascii() and page_id.isdigit()):
        raise Invalid("page_id: a Facebook page id is digits only", details={"field": "page_id"})
    row = db.session.scalars(select(Channel).where(Channel.provider == "facebook", Channel.page_id == page_id)).first()
    if row is not None and row.id != own_id:
        raise Conflict(f"page {page_id} is already channel {row.id}", code="page_taken", details={"field": "page_id"})


def create_channel(fields: dict) -> Channel:
    get_or_404(Queue, fields["queue_id"])
    if fields["provider"] == "facebook":
        _page_free(fields.get("page_id"))
    channel = Channel(**fields)
    if channel.provider == "telegram":
        channel.webhook_secret = secrets.token_urlsafe(32)
    if channel.provider == "web":
        channel.widget_key = secrets.token_urlsafe(16)
    db.session.add(channel)
    db.session.flush()
    if channel.active:
        connect(channel)
    return channel


def update_channel(channel: Channel, fields: dict) -> Channel:
    if "queue_id" in fields:
        get_or_404(Queue, fields["queue_id"])
    if channel.provider == "facebook" and "page_id" in fields:
        _page_free(fields["page_id"], channel.id)
    becomes_active = fields.get("active") and not channel.active
    becomes_inactive = fields.get("active") is False and channel.active
    token_changed = any(name in fields and fields[name] != getattr(channel, name)
                        for name in ("token", "page_access_token"))
    if becomes_inactive:
        disconnect(channel)   # with the credentials it was connected with
    for name, value in fields.items():
        setattr(channel, name, value)
    if channel.active and (becomes_active or token_changed):
        connect(channel)
    return channel


def reconnect_all() -> list[dict]:
    """After a SiteUrl change: point every active channel's webhook at the new URL, each in its
    own transaction, reporting which failed (a failure leaves the channel as it was)."""
    results = []
    for channel_id in db.session.scalars(select(Channel.id).where(Channel.active.is_(True)).order_by(Channel.id)).all():
        channel = db.session.get(Channel, channel_id)
        if not channels.adapter(channel.provider).needs_site_url:
            continue
        try:
            connect(channel)
            db.session.commit()
            results.append({"channel_id": channel_id, "ok": True})
        except (Invalid, Conflict) as e:
            db.session.rollback()
            log.warning("channel %s: webhook not re-registered after a SiteUrl change: %s", channel_id, e.message)
            results.append({"channel_id": channel_id, "ok": False, "error": e.message})
    return results


def disconnect(channel: Channel) -> None:
    """Stop the provider calling our webhook (Telegram keeps the bot's updates until it is set
    again). If it does not answer, its messages keep arriving and are stored: nothing is lost."""
    try:
        channels.adapter(channel.provider).unregister_webhook(channel)
    except ProviderError as e:
        log.warning("channel %s: the webhook could not be removed (%s); messages are stored meanwhile",
                    channel.id, e)


def delete_channel(channel: Channel) -> None:
    """Refused while chats or stored messages (an inactive channel keeps them without a chat) refer to it."""
    if db.session.scalar(select(func.count()).select_from(Chat).where(Chat.channel_id == channel.id)) \
            or db.session.scalar(select(func.count()).select_from(Message).where(Message.channel_id == channel.id)):
        raise Conflict(f"channel {channel.id} has chats or messages; deactivate it instead (PATCH active=false)",
                       code="channel_has_chats")
    if channel.active:
        disconnect(channel)
    db.session.delete(channel)


# Refusals that keep the channel, inactive, with the provider's reason on its row: a page Meta
# will not subscribe (a missing permission or task) is fixed at Meta, then activated again.
KEPT_REFUSALS = {"subscription_refused": "refused", "token_invalid": "needs_reconnect"}


def connect(channel: Channel) -> None:
    """Point the provider at our webhook (Telegram: the token checked with getMe, refused = 422;
    Facebook: the page subscribed, refused = the channel kept inactive with Graph's reason)."""
    adapter = channels.adapter(channel.provider)
    site = settings.get("SiteUrl")
    if adapter.needs_site_url and not site:
        raise Invalid(f"set the SiteUrl setting first: {channel.provider.capitalize()} needs a public URL for "
                      "the webhook", code="site_url_missing", details={"field": "SiteUrl"})
    try:
        adapter.register_webhook(channel, site)
    except ProviderError as e:
        if e.retryable:
            raise Conflict(str(e), code="provider_unavailable") from None
        if e.code in KEPT_REFUSALS:
            channel.active = False
            set_status(channel, KEPT_REFUSALS[e.code], str(e))
            return
        raise Invalid(str(e), code=e.code or "webhook_refused", details={"field": "token"}) from None
    set_status(channel, "ok")


def set_status(channel: Channel, status: str, reason: str | None = None) -> None:
    """Record whether the channel works; a change is told to the admins' consoles (after commit)."""
    if (channel.status, channel.status_reason) == (status, reason):
        return
    channel.status, channel.status_reason = status, reason
    if channel.id is not None:
        live.channel_status(channel, accounts.admin_ids())


def token_refused(channel_id: int, reason: str) -> str:
    """The provider refused a channel's token (Graph error 190): the channel needs a reconnect.
    Answers what its failed replies say."""
    channel = db.session.get(Channel, channel_id)
    set_status(channel, "needs_reconnect", reason)
    return f"{channel.name}: its access token no longer works; reconnect the channel in Chat setup ({reason})"


def facebook_pages(graph, user_access_token: str) -> list[dict]:
    """The user's pages (GET /me/accounts), each with the channel that serves it, if any."""
    try:
        pages = graph.pages(user_access_token)
    except ProviderError as e:
        if e.retryable:
            raise Conflict(f"Facebook did not answer; try again ({e})", code="provider_unavailable") from None
        raise Invalid(f"user_access_token: Facebook refused it ({e})", code="token_refused",
                      details={"field": "user_access_token"}) from None
    for page in pages:
        channel = db.session.scalars(select(Channel).where(Channel.provider == "facebook",
                                                           Channel.page_id == page["id"])).first()
        page["channel_id"] = channel.id if channel else None
    return pages


def make_page_channels(listed: list[dict], page_ids: list[str], queue_id: int, active: bool = True):
    """One channel per selected page of `listed` (facebook_pages' answer, tokens included), named
    after it, with its page token, subscribed when active; a page that already has a channel is
    reconnected instead: the fresh token, the `active` given, subscribed again."""
    get_or_404(Queue, queue_id)
    pages = {p["id"]: p for p in listed}
    unknown = [pid for pid in page_ids if pid not in pages]
    if unknown:
        raise Invalid(f"page_ids: {', '.join(unknown)} not among this user's pages", details={"field": "page_ids"})
    made = []
    for page_id in dict.fromkeys(page_ids):
        page = pages[page_id]
        if not page.get("access_token"):
            raise Invalid(f"page_ids: Facebook gave no page token for {page_id} (missing permission?)",
                          details={"field": "page_ids"})
        if page["channel_id"]:   # a reconnect: the fresh token, subscribed again
            channel = db.session.get(Channel, page["channel_id"])
            channel.page_access_token, channel.active = page["access_token"], active
        else:
            channel = Channel(provider="facebook", name=page["name"][:200], page_id=page_id,
                              page_access_token=page["access_token"], queue_id=queue_id, active=active)
            db.session.add(channel)
            db.session.flush()
        if channel.active:
            connect(channel)
        made.append(channel)
    return made
