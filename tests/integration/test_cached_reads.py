"""What a process caches between transactions (the settings, the latest version of each
process) holds only while it is the database's: a change made by another process holds here at
once, checked by the chat lock's own statement."""
import subprocess
import sys
import threading

from sqlalchemy import event

from app.chats import lifecycle, settings
from app.extensions import db
from app.services import services
from app.models.chat import Channel, Chat, Contact, Queue
from conftest import ROOT

# Another process (its own interpreter and connections) changes a setting and commits.
CHANGE = r'''
import sys
from app import create_app
from app.chats import settings
from app.extensions import db

app = create_app({"SQLALCHEMY_DATABASE_URI": sys.argv[1], "AUTO_MIGRATE": False, "REDIS_URL": None,
                  "BOOTSTRAP_ADMIN_TOKEN": None}, start_jobs=False)
with app.app_context():
    settings.put(sys.argv[2], int(sys.argv[3]))
    db.session.commit()
'''


def change_elsewhere(db_url, code, value):
    subprocess.run([sys.executable, "-c", CHANGE, db_url, code, str(value)], cwd=ROOT, check=True, timeout=120)


DEPLOY = r'''
import sys
from app import create_app
from app.extensions import db
from app.services import services

app = create_app({"SQLALCHEMY_DATABASE_URI": sys.argv[1], "AUTO_MIGRATE": False, "REDIS_URL": None,
                  "BOOTSTRAP_ADMIN_TOKEN": None}, start_jobs=False)
with app.app_context():
    services(app).engine.deploy([("cached.bpmn", sys.argv[2].encode())])
    db.session.commit()
'''

PROCESS = """<?xml version="1.0" encoding="UTF-8"?>
<bpmn:definitions xmlns:bpmn="http://www.omg.org/spec/BPMN/20100524/MODEL" id="d" targetNamespace="http://bpmn.io/schema/bpmn">
  <bpmn:process id="Cached" name="NAME" isExecutable="true">
    <bpmn:startEvent id="start" />
    <bpmn:sequenceFlow id="f1" sourceRef="start" targetRef="look" />
    <bpmn:userTask id="look" />
    <bpmn:sequenceFlow id="f2" sourceRef="look" targetRef="done" />
    <bpmn:endEvent id="done" />
  </bpmn:process>
</bpmn:definitions>
"""


def deploy_elsewhere(db_url, name):
    subprocess.run([sys.executable, "-c", DEPLOY, db_url, PROCESS.replace("NAME", name)], cwd=ROOT, check=True,
                   timeout=120)


def a_chat() -> int:
    queue = Queue(name="q", routing_rule="least_busy")
    db.session.add(queue)
    db.session.flush()
    channel = Channel(provider="telegram", name="c", active=True, queue_id=queue.id, token="1:x", webhook_secret="s")
    contact = Contact(name="client")
    db.session.add_all([channel, contact])
    db.session.flush()
    # `bot`: no lifecycle to start, so the embedded sweep leaves it alone
    chat = Chat(channel_id=channel.id, contact_id=contact.id, queue_id=queue.id, state="bot", address="1")
    db.session.add(chat)
    db.session.commit()
    return chat.id


def statements(work):
    """The statements `work` sends (this thread's only: the embedded jobs' sweep runs beside it)."""
    sent, me = [], threading.get_ident()

    def log(conn, cursor, statement, *rest):
        if threading.get_ident() == me and not statement.startswith("BEGIN"):  # SQLite's BEGIN IMMEDIATE
            sent.append(statement)
    event.listen(db.engine, "before_cursor_execute", log)
    try:
        work()
    finally:
        event.remove(db.engine, "before_cursor_execute", log)
    return sent


def limit_under_chat_lock(chat_id):
    lifecycle.lock_chat(chat_id)
    value = settings.get("SimultaneousChats")
    db.session.rollback()
    return value


def a_chat_with_limit_3() -> int:
    """A chat, with SimultaneousChats set to 3 and read back under its lock."""
    chat_id = a_chat()
    settings.put("SimultaneousChats", 3)
    db.session.commit()
    assert limit_under_chat_lock(chat_id) == 3
    return chat_id


def test_a_setting_changed_by_another_process_holds_here_at_once(make_app, db_url):
    app = make_app()
    with app.app_context():
        chat_id = a_chat_with_limit_3()
        # cached: the chat lock is the only statement
        assert len(statements(lambda: limit_under_chat_lock(chat_id))) == 1

        change_elsewhere(db_url, "SimultaneousChats", 7)
        assert limit_under_chat_lock(chat_id) == 7
        change_elsewhere(db_url, "SimultaneousChats", 4)
        assert settings.get("SimultaneousChats") == 4  # without a chat lock: read in its own statement
        db.session.rollback()
        assert limit_under_chat_lock(chat_id) == 4


def test_a_transaction_sees_its_own_change_and_a_rolled_back_one_reaches_no_cache(make_app):
    app = make_app()
    with app.app_context():
        chat_id = a_chat_with_limit_3()
        lifecycle.lock_chat(chat_id)
        settings.put("SimultaneousChats", 9)
        assert settings.get("SimultaneousChats") == 9
        db.session.rollback()
        assert limit_under_chat_lock(chat_id) == 3
        assert settings.get("SimultaneousChats") == 3
        db.session.rollback()


def test_settings_are_read_once_per_transaction_without_a_chat_lock(make_app):
    app = make_app()
    with app.app_context():
        settings.put("SimultaneousChats", 5)
        db.session.commit()

        def twice():
            assert settings.get("SimultaneousChats") == 5
            assert settings.get("OmniChatOperatorAcceptChatTimeout") == 5  # its default
            db.session.rollback()
        assert len(statements(twice)) == 1


def version_started_under_chat_lock(app, chat_id) -> int:
    lifecycle.lock_chat(chat_id)
    instance = services(app).engine.start("Cached")
    db.session.rollback()
    return services(app).engine.specs.version_number(instance.process_version_id)


def test_a_version_deployed_by_another_process_is_the_one_started_here_at_once(make_app, db_url):
    app = make_app()
    engine = services(app).engine
    with app.app_context():
        chat_id = a_chat()
        engine.deploy([("cached.bpmn", PROCESS.replace("NAME", "first").encode())])
        db.session.commit()
        assert version_started_under_chat_lock(app, chat_id) == 1
        # cached: after the chat lock, the start reads no version row
        sent = statements(lambda: version_started_under_chat_lock(app, chat_id))
        assert not [s for s in sent if "FROM process_versions" in s and "count" not in s], sent

        deploy_elsewhere(db_url, "second")
        assert version_started_under_chat_lock(app, chat_id) == 2
        # deployed in the same transaction, after the chat lock: started too
        lifecycle.lock_chat(chat_id)
        engine.deploy([("cached.bpmn", PROCESS.replace("NAME", "third").encode())])
        assert engine.specs.version_number(engine.start("Cached").process_version_id) == 3
        db.session.rollback()
