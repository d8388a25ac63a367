"""All tables. Importing this module registers them with the metadata Alembic reads.

Import rule: `app.extensions` and the modules of this package only. Tables know nothing of
the engine, the chat domain or HTTP, so anything may read them.
"""
from app.models.auth import ApiToken, Role, RoleMember, User
from app.models.chat import (Attachment, Case, Channel, Chat, ChatAction, ChatEvent, Contact, ContactIdentity,
                             FacebookLogin, Message, Queue, QueueOperator, Setting, StoredFile, VisitorSession)
from app.models.process import InstanceEvent, ProcessInstance, ProcessVersion
from app.models.worker import WorkerHeartbeat
from app.models.workspace import CannedResponse, ChatNote, ReadMarker

__all__ = ["ApiToken", "Role", "RoleMember", "User", "InstanceEvent", "ProcessInstance", "ProcessVersion",
           "Channel", "Chat", "ChatEvent", "Contact", "ContactIdentity", "Message", "Queue", "QueueOperator",
           "Setting", "StoredFile", "ChatAction", "Case", "WorkerHeartbeat", "Attachment", "CannedResponse", "ChatNote",
           "ReadMarker", "VisitorSession", "FacebookLogin"]
