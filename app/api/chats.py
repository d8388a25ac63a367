"""Operators (and admins) working chats (docs/api.md, "Operator routes")."""
from typing import Any, Literal

from flask import Blueprint, current_app, g
from pydantic import AliasPath, Field

from app.api import uploads
from app.api.auth import admin, authenticate, is_admin
from app.api.contract import (MAX_INT, Answer, Body, Filter, Int, JsonObject, Name, Page, Text, Timestamp, contract,
                              row_with)
from app.api.errors import ApiError
from app.chats import delivery, inbox, presence, queries, service
from app.chats.messages import message_json
from app.extensions import db
from app.models.states import ChatState, MessageKind, MessageStatus, OperatorStatus
from app.services import services

bp = Blueprint("chats", __name__, url_prefix="/api")
bp.before_request(authenticate)

def engine():
    return services().engine


def jobs():
    return services().jobs


class StatusIn(Body):
    status: OperatorStatus


class Reply(Body):
    text: Name(service.MAX_TEXT)


class OperatorChats(Page):
    state: Filter(ChatState) = None
    queue_id: Filter(int, ge=0, le=MAX_INT) = None
    channel_id: Filter(int, ge=0, le=MAX_INT) = None
    operator_id: Filter(int, ge=0, le=MAX_INT) = None
    q: Filter(str, description="part of the contact's name or a message (its first 200 characters)") = None
    sort: Filter(Literal["id", "activity"], description="activity: most recently active first; default id") = None

    def filters(self) -> inbox.Filters:
        return inbox.Filters(state=self.state, queue_id=self.queue_id, channel_id=self.channel_id,
                             operator_id=self.operator_id, q=(self.q or "").strip()[:200] or None,
                             by_activity=self.sort == "activity")


class Chats(OperatorChats):
    view: Filter(Literal["operator"], description="admins: the chats you may see now as an operator") = None


class TransferIn(Body):
    operator_id: Int | None = Field(None, description="another operator of the chat's queue, available now")
    queue_id: Int | None = Field(None, description="another queue: the chat is routed there by its rule")
    note: Text(500) | None = Field(None, description="for the colleague and the chat's history")


class Me(Answer):
    id: int
    login: str
    name: str
    status: OperatorStatus
    connected: bool = Field(description="an open /api/events stream or a recent PUT /api/me/presence")
    presence: Literal["available", "away", "inactive"] = Field(description="only available operators get chats")
    connected_until: str | None = Field(description="when the last sign of life runs out")
    queues: list[int]
    chats_in_work: int
    chats_offered: int
    simultaneous_chats_limit: int
    last_accepted_at: Timestamp | None
    is_admin: bool


class ContactRef(Answer):
    id: int
    name: str


class ChannelRef(Answer):
    name: str
    provider: str


class LastMessage(Answer):
    id: int
    direction: Literal["in", "out"]
    text: str | None
    created_at: str


class ChatOut(Answer):
    lifecycle_problem: str | None = Field(None, description="why its lifecycle has not started (the sweep "
                                                            "starts it once the process is deployed)")
    id: int
    state: ChatState
    queue_id: int
    queue_name: str = Field(validation_alias=AliasPath("queue", "name"))
    channel_id: int
    channel: ChannelRef
    contact: ContactRef
    operator_id: int | None
    offered_to_id: int | None
    process_instance_id: int | None
    created_at: Timestamp
    accepted_at: Timestamp | None
    completed_at: Timestamp | None
    completion_reason: str | None


class ListedChat(ChatOut):
    """A chat as lists show it."""
    last_message: LastMessage | None
    waiting_since: str | None = Field(description="the client's first message since the last reply")
    unread: int = Field(description="client messages after your read marker")


class TransferOperator(Answer):
    id: int
    name: str
    presence: str
    holds: int = Field(description="chats in work plus chats offered")
    available: bool
    reason: str | None = Field(description="why they cannot take it now")


class QueueRef(Answer):
    id: int
    name: str


class TransferTargets(Answer):
    operators: list[TransferOperator]
    queues: list[QueueRef]


class ChatEventOut(Answer):
    at: Timestamp
    event: str
    details: JsonObject


class AttachmentOut(Answer):
    id: int
    name: str
    content_type: str
    size: int | None
    status: str
    url: str = Field(description="GET it with the bearer token")


class Edit(Answer):
    text: str | None
    at: str


class MessageOut(Answer):
    """A message as the API and the live events show it (app/chats/messages.py writes it);
    text-only clients read the first five fields."""
    id: int
    direction: Literal["in", "out"]
    text: str | None
    created_at: Timestamp
    status: MessageStatus
    error: str | None = Field(None, description="why the last delivery attempt failed")
    kind: MessageKind
    payload: dict[str, Any] | None = Field(description="what a kind beyond text carries (a location, a contact)")
    edits: list[Edit] = Field(description="earlier texts, newest last")
    attachments: list[AttachmentOut]
    origin: str | None = Field(None, description="who wrote an outgoing message not sent from Chatflow")


def visible_chat(chat_id: int):
    return queries.visible_chat(g.user, is_admin(g.user), chat_id)


def readable_chat(chat_id: int):
    return queries.readable_chat(g.user, is_admin(g.user), chat_id)


def listed(chats) -> list:
    problems = service.lifecycle_problems(chats)
    return [row_with(chat, **summary, lifecycle_problem=problems.get(chat.id))
            for chat, summary in queries.with_summaries(chats, g.user.id)]


@bp.get("/me")
@contract(answer=Me)
def me():
    """The signed-in operator: status, queues, load and limit."""
    return queries.profile(g.user, is_admin(g.user))


@bp.put("/me/status")
@contract(body=StatusIn, answer=Me)
def set_status(body: StatusIn):
    """Set yourself active (take chats) or inactive."""
    user = service.set_status(g.user, body.status, jobs())
    db.session.commit()
    return queries.profile(user, is_admin(user))


@bp.put("/me/presence")
@contract(answer=Me)
def heartbeat():
    """For API clients without an open /api/events stream: call at least every 60 s to count as
    connected (routing offers chats only to operators who are active and connected)."""
    user = presence.seen(g.user.id, current_app.config["PRESENCE_HEARTBEAT_SECONDS"], jobs())
    db.session.commit()
    return queries.profile(user, is_admin(user))


@bp.get("/chats")
@contract(query=Chats, answer=list[ListedChat])
def list_chats(query: Chats):
    """Admins: all chats. Operators (or ?view=operator): the chats they may see now. Filtered by
    ?state=, ?queue_id=, ?channel_id=, ?operator_id= and ?q= (search); ?sort=activity: latest first."""
    return listed(queries.chats_for(g.user, is_admin(g.user), query.filters(), as_operator=query.view == "operator",
                                    limit=query.limit, offset=query.offset))


@bp.get("/me/chats")
@contract(query=OperatorChats, answer=list[ListedChat])
def my_chats(query: OperatorChats):
    """The chats you may see now as an operator (also for admins who are operators)."""
    return listed(queries.chats_for(g.user, is_admin(g.user), query.filters(), as_operator=True,
                                    limit=query.limit, offset=query.offset))


@bp.get("/chats/<int:chat_id>")
@contract(answer=ListedChat)
def get_chat(chat_id):
    """One chat, with its last message, waiting time and your unread count."""
    return listed([readable_chat(chat_id)])[0]


@bp.get("/chats/<int:chat_id>/history")
@contract(query=Page, answer=list[ChatEventOut])
def chat_history(chat_id, query: Page):
    """What happened to the chat: offers (with candidates and why), accepts, completion."""
    visible_chat(chat_id)
    return queries.chat_events(chat_id, query.limit, query.offset)


@bp.post("/chats/<int:chat_id>/accept")
@contract(answer=ChatOut)
def accept(chat_id):
    """Accept an offered or visible chat; 409 chat_taken, not_offered_to_you, operator_inactive or limit_reached."""
    visible_chat(chat_id)
    chat = service.accept(chat_id, g.user, engine())
    db.session.commit()
    return chat


@bp.post("/chats/<int:chat_id>/transfer")
@contract(body=TransferIn, answer=ChatOut)
def transfer(chat_id, body: TransferIn):
    """Hand a chat in work to another operator of its queue (offered to them) or to another queue
    (routed by its rule); 409 operator_unavailable, chat_not_in_work, action_not_in_lifecycle."""
    visible_chat(chat_id)
    chat = service.transfer(chat_id, g.user, is_admin(g.user), body.model_dump(), engine())
    db.session.commit()
    return chat


@bp.get("/chats/<int:chat_id>/transfer-targets")
@contract(answer=TransferTargets)
def transfer_targets(chat_id):
    """Whom a chat could be transferred to now: the queue's other operators (with presence and
    whether they can take it) and the other queues."""
    return service.transfer_targets(visible_chat(chat_id))


@bp.post("/chats/<int:chat_id>/route")
@admin
@contract(answer=ChatOut)
def route_now(chat_id):
    """Route a chat that opened while its channel was inactive (409 chat_not_unrouted, channel_inactive)."""
    visible_chat(chat_id)
    chat = service.route_now(chat_id, jobs())
    db.session.commit()
    return chat


@bp.get("/chats/<int:chat_id>/messages")
@contract(query=Page, answer=list[MessageOut])
def list_messages(chat_id, query: Page):
    """The chat's messages, oldest first, with delivery status."""
    readable_chat(chat_id)
    return [message_json(m) for m in queries.messages(chat_id, query.limit, query.offset)]


@bp.post("/chats/<int:chat_id>/messages")
@contract(body=Reply, files=("a file for the client (part `file`) with an optional caption (`text`)", False,
                             {"text": {"type": "string", "maxLength": service.MAX_TEXT}}),
          answer=MessageOut, status=201)
def send_message(chat_id, body: Reply | None):
    """Reply (JSON text, or a multipart file with an optional caption): stored at once as
    pending, delivered by a worker with retries."""
    visible_chat(chat_id)
    if body is None:
        text, file = uploads.reply_upload(current_app.config["MAX_FILE_BYTES"], service.MAX_TEXT)
    else:
        text, file = body.text, None
    message = service.reply(chat_id, g.user, text, engine(), jobs(), file)
    answer = message_json(message)  # as stored: a worker may have sent it by the time we answer
    db.session.commit()
    return answer, 201


@bp.post("/chats/<int:chat_id>/messages/<int:message_id>/send-again")
@contract(answer=MessageOut)
def send_again(chat_id, message_id):
    """Send again a reply that is uncertain (may have been delivered) or failed: the operator's decision."""
    visible_chat(chat_id)
    message = delivery.send_again(chat_id, message_id, g.user, jobs())
    answer = message_json(message)
    db.session.commit()
    return answer


@bp.post("/chats/<int:chat_id>/complete")
@contract(answer=ChatOut)
def complete(chat_id):
    """Complete a chat: its operator (reason operator) or an admin (reason admin)."""
    chat = visible_chat(chat_id)
    reason = "operator" if chat.operator_id == g.user.id and chat.state == ChatState.IN_WORK else "admin"
    if reason == "admin" and not is_admin(g.user):
        raise ApiError(409, "chat_not_in_work", f"chat {chat_id} is not in work by you")
    chat = service.complete(chat_id, g.user, reason, engine(), jobs())
    db.session.commit()
    return chat
