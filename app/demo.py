"""Demo data for `chatflow serve --demo`: tokens, the shipped processes, a queue with operators.

Seeding only adds what is missing, so a second start changes nothing an admin or analyst set up.
"""
import secrets
from pathlib import Path

from sqlalchemy import select

from app import accounts
from app.chats import actions
from app.chats import admin as setup
from app.extensions import db
from app.channels.web import DEMO_CHANNEL, WIDGET_DEFAULTS
from app.chats import visitors
from app.models import ChatAction, Queue, User
from app.services import services

DEMO_OPERATORS = (("anna", "Anna (operator)"), ("boris", "Boris (operator)"))


def _user_with_token(login: str, name: str, permissions=()) -> str:
    user = db.session.scalars(select(User).where(User.login == login)).first()
    if user is None:
        _, token = accounts.create_user(login, name, permissions=permissions, token=secrets.token_urlsafe(24))
        return token
    return accounts.issue_token(user)


def seed(app, processes_dir: Path) -> list[str]:
    lines = []
    files = [(p.name, p.read_bytes()) for p in sorted(processes_dir.glob("*.bpmn"))]
    # Only processes not deployed yet: a version an analyst deployed stays the latest.
    for p in services(app).engine.deploy(files, missing_only=True):
        lines.append(f"process {p['key']} version {p['version']}"
                     f"{' (new)' if p['new'] else ' (already deployed, kept)'}")
    admin_token = app.config["BOOTSTRAP_ADMIN_TOKEN"] or _user_with_token("admin", "Administrator",
                                                                          ["CanManageChats"])
    lines.append(f"admin token: {admin_token}")
    queue = db.session.scalars(select(Queue).where(Queue.name == "Demo support")).first()
    if queue is None:
        queue = setup.create_queue({"name": "Demo support", "routing_rule": "least_busy",
                                    "completion_timeout_minutes": 30})
    lines.append(f"queue 'Demo support' (id {queue.id}): least_busy, completes 30 min after the last reply")
    jobs = services(app).jobs
    for login, name in DEMO_OPERATORS:
        token = _user_with_token(login, name)
        user = db.session.scalars(select(User).where(User.login == login)).one()
        if login not in {u.login for u in _operators(queue)}:
            setup.add_operator(queue, user.id, None, jobs)
        lines.append(f"operator {login} token: {token}")
    lines.append("operators start inactive: each signs in to the console and sets themselves active")
    overflow = db.session.scalars(select(Queue).where(Queue.name == "Overflow")).first()
    if overflow is None:  # where ChatLifecycleEscalation moves the chats nobody took (its OverflowQueue)
        overflow = setup.create_queue({"name": "Overflow", "routing_rule": "all", "completion_timeout_minutes": 30})
        for login, _ in DEMO_OPERATORS:
            setup.add_operator(overflow, db.session.scalars(select(User).where(User.login == login)).one().id,
                               None, jobs)
    lines.append(f"queue 'Overflow' (id {overflow.id}): all; to try escalation, set Demo support's lifecycle to "
                 "ChatLifecycleEscalation (processes/README.md, \"Escalation\")")
    if not db.session.scalars(select(ChatAction).where(ChatAction.queue_id == queue.id)).first():
        actions.create_action({"name": "Create case", "queue_id": queue.id, "process": "CreateCaseFromChat"})
    lines.append("chat action 'Create case' (process CreateCaseFromChat) on the queue")
    site = visitors.demo_channel()
    if site is None:
        site = setup.create_channel({"provider": "web", "name": DEMO_CHANNEL, "queue_id": queue.id, "active": True,
                                     "widget": {**WIDGET_DEFAULTS, "title": "Acme Tea Shop",
                                                "welcome_text": "Hi! Questions about our teas? Write to us."}})
    lines.append(f"website chat '{DEMO_CHANNEL}' (widget key {site.widget_key}) on the queue: "
                 "a pretend shop page with its widget is served at /demo")
    lines.append("web console: open the address below and sign in with one of these tokens")
    lines.append("connect a Telegram bot: set SiteUrl (a public https URL of this server) and add the bot in the "
                 "console's Chat setup, or PUT /api/settings/SiteUrl, then "
                 f"POST /api/channels {{\"provider\":\"telegram\",\"name\":\"My bot\",\"token\":\"<bot token>\","
                 f"\"queue_id\":{queue.id}}}")
    db.session.commit()
    return lines


def _operators(queue):
    from app.models import QueueOperator
    ids = db.session.scalars(select(QueueOperator.user_id).where(QueueOperator.queue_id == queue.id)).all()
    return db.session.scalars(select(User).where(User.id.in_(ids))).all()
