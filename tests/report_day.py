"""A known day of chats, 2026-03-10 (UTC), written with controlled clocks: the rows and history
events the chat service records, each at a chosen instant. The reports tests and the browser
test check their figures against the values worked out by hand in KNOWN (README, "Reports").

Queue Sales (least_busy, Telegram channel) and queue Support (all, Facebook channel);
operators ann and bob serve both. Times are UTC; "now" is 2026-03-11 00:10.

  chat 0 Sales  opened the day before 23:00, offered ann 23:00:05, accepted 23:00:20, replied 23:05
                and 00:10 (not a first reply), completed by ann 00:30:00 (handle 5380 s)
  chat 1 Sales  opened 09:00:00, offered ann 09:00:10, accepted 09:00:40, replies 09:01:00 and
                09:03:00, completed by ann 09:10:40
  chat 2 Sales  opened 09:20:00, offered ann 09:20:05, missed 09:25:05, offered bob 09:25:05,
                accepted 09:26:00, escalated 09:40:00, reply 09:27:00, completed by timeout 10:26:00
  chat 3 Support opened 13:00:00, queued 13:00:02, accepted by ann 13:00:30, reply 13:02:00,
                transferred to the queue again 13:10:00, accepted by ann again 13:11:00 (the row's
                accepted_at now), completed by ann 13:20:30
  chat 4 Support opened 22:30:00, queued 22:30:01, completed by an admin 22:50:00, never accepted
  chat 5 Sales  opened 23:50:00, offered bob 23:50:03, accepted 2026-03-11 00:00:50 (in work)
  chat 6 Support opened 23:59:00, queued 23:59:01, still waiting
"""
from datetime import datetime, timedelta, timezone

from app.extensions import db
from app.models import User
from app.models.chat import Channel, Chat, ChatEvent, Contact, Message, Queue, QueueOperator

DAY = "2026-03-10"
NOW = datetime(2026, 3, 11, 0, 10, tzinfo=timezone.utc)


def at(clock: str, day: int = 10) -> datetime:
    h, m, s = (int(x) for x in clock.split(":"))
    return datetime(2026, 3, day, h, m, s, tzinfo=timezone.utc)


def build(app) -> dict:
    """Write the day; answers the ids of its queues, channels and operators."""
    with app.app_context():
        sales = Queue(name="Sales", routing_rule="least_busy", created_at=at("00:00:00", 1))
        support = Queue(name="Support", routing_rule="all", created_at=at("00:00:00", 1))
        db.session.add_all([sales, support])
        db.session.flush()
        telegram = Channel(provider="telegram", name="Sales bot", queue_id=sales.id, token="1:t", webhook_secret="s")
        facebook = Channel(provider="facebook", name="Support page", queue_id=support.id, page_id="p1",
                           page_access_token="t")
        ann = User(login="ann", name="Ann", status="active", chats_in_work=0)
        bob = User(login="bob", name="Bob", status="active", chats_in_work=1)
        db.session.add_all([telegram, facebook, ann, bob])
        db.session.flush()
        for queue in (sales, support):
            db.session.add_all([QueueOperator(queue_id=queue.id, user_id=ann.id),
                                QueueOperator(queue_id=queue.id, user_id=bob.id)])

        def chat(queue, channel, opened, state, operator=None, accepted=None, completed=None, reason=None,
                 events=(), replies=()):
            contact = Contact(name=f"client {opened}")
            db.session.add(contact)
            db.session.flush()
            c = Chat(channel_id=channel.id, contact_id=contact.id, queue_id=queue.id, state=state, address="x",
                     operator_id=operator.id if operator else None, created_at=opened, accepted_at=accepted,
                     completed_at=completed, completion_reason=reason)
            db.session.add(c)
            db.session.flush()
            db.session.add(ChatEvent(chat_id=c.id, at=opened, event="created",
                                     details={"channel_id": channel.id, "queue_id": queue.id, "bot": False}))
            for when, event, details in events:
                db.session.add(ChatEvent(chat_id=c.id, at=when, event=event, details=details))
            if completed:
                db.session.add(ChatEvent(chat_id=c.id, at=completed, event="completed", details={"reason": reason}))
            db.session.add(Message(channel_id=channel.id, contact_id=contact.id, chat_id=c.id, direction="in",
                                   text="hello", status="received", created_at=opened))
            for when in replies:
                db.session.add(Message(channel_id=channel.id, contact_id=contact.id, chat_id=c.id, direction="out",
                                       text="answer", status="sent", author_id=operator.id, created_at=when))
            return c

        def offered(when, who):
            return (when, "offered", {"operator_id": who.id, "rule": "least_busy"})

        def accepted(when, who):
            return (when, "accepted", {"operator_id": who.id})

        queued = {"rule": "all"}
        chat(sales, telegram, at("23:00:00", 9), "completed", ann, at("23:00:20", 9), at("00:30:00"), "operator",
             [offered(at("23:00:05", 9), ann), accepted(at("23:00:20", 9), ann)],
             [at("23:05:00", 9), at("00:10:00")])
        chat(sales, telegram, at("09:00:00"), "completed", ann, at("09:00:40"), at("09:10:40"), "operator",
             [offered(at("09:00:10"), ann), accepted(at("09:00:40"), ann)], [at("09:01:00"), at("09:03:00")])
        chat(sales, telegram, at("09:20:00"), "completed", bob, at("09:26:00"), at("10:26:00"), "timeout",
             [offered(at("09:20:05"), ann),
              (at("09:25:05"), "offer_timed_out", {"operator_id": ann.id, "operator_now": "inactive"}),
              offered(at("09:25:05"), bob), accepted(at("09:26:00"), bob), (at("09:40:00"), "escalated", {})],
             [at("09:27:00")])
        chat(support, facebook, at("13:00:00"), "completed", ann, at("13:11:00"), at("13:20:30"), "operator",
             [(at("13:00:02"), "queued", queued), accepted(at("13:00:30"), ann), accepted(at("13:11:00"), ann),
              (at("13:10:00"), "transferred", {"from_operator_id": ann.id, "to_operator_id": None,
                                                "from_queue_id": support.id, "to_queue_id": support.id})],
             [at("13:02:00")])
        chat(support, facebook, at("22:30:00"), "completed", None, None, at("22:50:00"), "admin",
             [(at("22:30:01"), "queued", queued)])
        chat(sales, telegram, at("23:50:00"), "in_work", bob, at("00:00:50", 11),
             events=[offered(at("23:50:03"), bob), accepted(at("00:00:50", 11), bob)])
        chat(support, facebook, at("23:59:00"), "queued", events=[(at("23:59:01"), "queued", queued)])
        db.session.commit()
        ids = {"sales": sales.id, "support": support.id, "telegram": telegram.id, "facebook": facebook.id,
               "ann": ann.id, "bob": bob.id}
        db.session.remove()
        return ids


def s(count, avg, p50, p90) -> dict:
    return {"count": count, "avg": avg, "p50": p50, "p90": p90}


NONE = s(0, None, None, None)
# The day's figures, worked out by hand from the story above (ServiceLevelSeconds 60).
TOTAL = {
    "opened": 6, "accepted": 3, "completed": 5, "abandoned": 1, "transferred": 1, "escalated": 1,
    "completed_by_reason": {"operator": 3, "timeout": 1, "admin": 1}, "offers": 4, "offers_missed": 1,
    # first offers 10, 5, 2, 1, 3, 1 s; accepts 40, 360, 30; first replies 60, 420, 120;
    # handle 5380 (chat 0), 600, 3600, 570 (chat 3, from its last accept)
    "time_to_first_offer": s(6, 3.667, 2.5, 7.5), "time_to_accept": s(3, 143.333, 40.0, 296.0),
    "time_to_first_reply": s(3, 200.0, 120.0, 360.0), "handle_time": s(4, 2537.5, 2100.0, 4846.0),
    # waits that ended: accepted 40, 360, 30 and chat 4 abandoned; within 60 s: 2 of 4
    "service_level": {"target_seconds": 60, "within": 2, "total": 4, "share": 0.5},
}
SALES = {
    "opened": 3, "accepted": 2, "completed": 3, "abandoned": 0, "transferred": 0, "escalated": 1,
    "completed_by_reason": {"operator": 2, "timeout": 1}, "offers": 4, "offers_missed": 1,
    "time_to_first_offer": s(3, 6.0, 5.0, 9.0), "time_to_accept": s(2, 200.0, 200.0, 328.0),
    "time_to_first_reply": s(2, 240.0, 240.0, 384.0), "handle_time": s(3, 3193.333, 3600.0, 5024.0),
    "service_level": {"target_seconds": 60, "within": 1, "total": 2, "share": 0.5},
    "waiting": 0, "oldest_wait_seconds": None,
}
SUPPORT = {
    "opened": 3, "accepted": 1, "completed": 2, "abandoned": 1, "transferred": 1, "escalated": 0,
    "completed_by_reason": {"operator": 1, "admin": 1}, "offers": 0, "offers_missed": 0,
    "time_to_first_offer": s(3, 1.333, 1.0, 1.8), "time_to_accept": s(1, 30.0, 30.0, 30.0),
    "time_to_first_reply": s(1, 120.0, 120.0, 120.0), "handle_time": s(1, 570.0, 570.0, 570.0),
    "service_level": {"target_seconds": 60, "within": 1, "total": 2, "share": 0.5},
    # chat 6 waits since 23:59:00; now is 00:10:00
    "waiting": 1, "oldest_wait_seconds": 660.0,
}
# ann accepted chat 1 once and chat 3 twice; her handle times 5380, 600 and 570
ANN = {"offers": 2, "offers_missed": 1, "accepted": 3, "completed": 3, "handle_time": s(3, 2183.333, 600.0, 4424.0)}
BOB = {"offers": 2, "offers_missed": 0, "accepted": 1, "completed": 1, "handle_time": s(1, 3600.0, 3600.0, 3600.0)}
NOW_TILES = {"waiting": 1, "oldest_wait_seconds": 660.0, "in_work": 1, "operators_active": 2,
             "operators_available": 2}
EMPTY_GAP = timedelta(days=60)
