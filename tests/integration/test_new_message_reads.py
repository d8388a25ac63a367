"""A message just stored is answered (and published) as written: its files are known, so neither a
reply nor a client's message reads its attachments back (a lazy load was a round trip each)."""
import threading

from sqlalchemy import event

from app.extensions import db
from chat_helpers import make_channel, make_operator, make_queue, new_chat, ok


def test_a_reply_and_a_client_message_read_no_attachments_back(chat_api, telegram):
    q = make_queue(chat_api, rule="all")
    operator = make_operator(chat_api, "op1", q["id"])
    client = make_channel(chat_api, q["id"]).client()
    chat = new_chat(chat_api, client)
    ok(operator.api.post(f"/api/chats/{chat['id']}/accept"))
    with chat_api.app.app_context():
        engine = db.engine
    requests_thread, statements = threading.get_ident(), []  # the embedded job thread's are not ours

    def record(_conn, _cursor, statement, *_):
        if threading.get_ident() == requests_thread:
            statements.append(statement)

    event.listen(engine, "before_cursor_execute", record)
    try:
        answer = ok(operator.api.post(f"/api/chats/{chat['id']}/messages", {"text": "hi"}), 201)
        client.writes("more")
    finally:
        event.remove(engine, "before_cursor_execute", record)
    assert answer["attachments"] == []
    assert statements and not [s for s in statements if "FROM attachments" in s], statements
