"""The states and kinds rows hold, as `str` enums.

Each member is its own string (`ChatState.QUEUED == "queued"`), so the database, JSON answers,
live events and BPMN diagrams keep the plain values, while code names them once, here.
"""
from enum import StrEnum


class ChatState(StrEnum):
    BOT = "bot"              # an external bot holds the conversation (Facebook Handover Protocol)
    UNROUTED = "unrouted"    # opened on an inactive channel: stored, routed once an admin asks
    QUEUED = "queued"        # waiting: shown to the queue's operators (`all`) or about to be offered
    OFFERED = "offered"      # offered to one operator (`least_busy`), who may accept until the timeout
    IN_WORK = "in_work"      # an operator accepted it
    COMPLETED = "completed"


WAITING = (ChatState.QUEUED, ChatState.OFFERED)  # a client waits for an operator


class OperatorStatus(StrEnum):
    ACTIVE = "active"        # takes chats
    INACTIVE = "inactive"


class MessageStatus(StrEnum):
    RECEIVED = "received"    # a client's message, stored
    PENDING = "pending"      # a reply waiting for its (next) attempt
    SENDING = "sending"      # an attempt is under way
    UNCERTAIN = "uncertain"  # an attempt got no answer: it may have been delivered; the operator decides
    SENT = "sent"
    DELIVERED = "delivered"  # receipts, where the provider sends them
    READ = "read"
    FAILED = "failed"


class MessageKind(StrEnum):
    TEXT = "text"
    IMAGE = "image"
    VIDEO = "video"
    AUDIO = "audio"
    VOICE = "voice"
    DOCUMENT = "document"
    STICKER = "sticker"
    LOCATION = "location"
    CONTACT = "contact"
    BUTTON = "button"
    SYSTEM = "system"


class InstanceState(StrEnum):
    RUNNING = "running"
    WAITING = "waiting"      # for a timer, a message or a user task
    COMPLETED = "completed"
    ERROR = "error"          # a step failed; retry re-runs it
    CANCELLED = "cancelled"


FINISHED = (InstanceState.COMPLETED, InstanceState.CANCELLED)
