"""Hostile input: schemathesis against the live app's /openapi.json.

The app is served over real HTTP by werkzeug on 127.0.0.1 with the processes deployed and a
little data in place; every operation in the document is called with generated (and
deliberately wrong) input, as the admin. No answer may be a 5xx, and every answer must be one
the document declares: status code, content type and body schema.
"""
import os
from collections import Counter

import pytest
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (content_type_conformance, response_schema_conformance,
                                               status_code_conformance)

from chat_helpers import configure, deploy_lifecycle, make_channel, make_operator, make_queue, new_chat, ok
from conftest import ADMIN_TOKEN, ROOT, Api
from app.extensions import db
from app.models import User

CHECKS = (not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance)
# A few hundred cases in all, the same ones each run, for CI. Set CHATFLOW_SCHEMATHESIS_EXAMPLES
# to explore: that many examples per operation and mode, freshly random.
EXAMPLES_PER_OPERATION = int(os.environ.get("CHATFLOW_SCHEMATHESIS_EXAMPLES", 4))
DERANDOMIZE = "CHATFLOW_SCHEMATHESIS_EXAMPLES" not in os.environ
AUTH = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
# Not fuzzed: the document itself (schemathesis is loaded from it), and GET /api/events, the
# live events stream, an endless response (kept open by keep-alives) that a check reading its
# body would wait on forever; it takes no input but the token, which the access matrix and
# tests/e2e/test_events.py cover. The same for GET /api/reports/live, the Reports page's live
# figures (its filters are those of GET /api/reports/now, which is fuzzed; tests/e2e/test_reports_page.py).
# GET /widget/api/{widget_key}/events, a visitor's live stream, is endless the same way
# (tests/integration/test_web_channel.py and the widget's browser test cover it).
NOT_FUZZED = {"GET /openapi.json", "GET /api/events", "GET /api/reports/live",
              "GET /widget/api/{widget_key}/events"}


@pytest.fixture
def live_app(make_app, serve, telegram):
    """The app on a real port, with every shipped process deployed and one of each thing:
    queue, operator, Telegram channel, chat (routed by its lifecycle), chat action, case, role."""
    app = make_app(VISITOR_SESSIONS_PER_IP=1000, VISITOR_MESSAGES_PER_VISITOR=1000)
    api = Api(app)
    deployed = api.deploy(*sorted((ROOT / "processes").glob("*.bpmn")))
    assert deployed.status_code == 201, deployed.get_json()
    configure(api)
    queue = make_queue(api, rule="all")
    make_operator(api, "op", queue["id"])
    channel = make_channel(api, queue["id"])
    chat = new_chat(api, channel.client())
    action = ok(api.post("/api/chat-actions", {"name": "Create case", "queue_id": queue["id"],
                                               "process": "CreateCaseFromChat"}), 201)
    assert ok(api.post(f"/api/chats/{chat['id']}/actions/{action['id']}"), 201)["data"]["CaseId"]
    ok(api.post("/api/roles", {"name": "Support"}), 201)
    web = ok(api.post("/api/channels", {"provider": "web", "name": "Site", "queue_id": queue["id"]}), 201)
    visitor = ok(api.client.post(f"/widget/api/{web['widget_key']}/sessions", json={}), 201)["token"]
    return app, serve(app), channel, (web["widget_key"], visitor)


def _keep_admin(app):
    """Generated PATCH /api/users/{id} bodies may take the admin's own permission away;
    put it back so the rest of the run still reaches the admin routes."""
    with app.app_context():
        admin = db.session.scalars(db.select(User).where(User.login == "admin")).first()
        if admin is not None and "CanManageChats" not in (admin.permissions or []):
            admin.permissions = ["CanManageChats"]
            db.session.commit()
        db.session.remove()


def test_every_operation_answers_within_its_schema(live_app):
    """Each operation gets a few valid and a few invalid generated requests, and those with
    numeric ids a few more on the rows that exist (id 1: the admin, the role, the queue and
    its operator entry, the channel, the chat, its contact, lifecycle instance, action and
    case), so generated bodies reach real resources.

    schemathesis' own pytest integration (`schemathesis.pytest.from_fixture`) cannot run on
    pytest 9 (it writes `node._nodeid`, which pytest 9 no longer has), so the operations are
    walked here with schemathesis' strategies and Hypothesis directly; the same checks run.
    """
    app, base, channel, (widget_key, visitor) = live_app
    # The Telegram webhook answers 403 to anyone without the channel's secret: give generated
    # updates the real channel and secret so they reach the parsing behind it. The Facebook
    # webhooks are run too but only reach their checks (no FacebookVerifyToken or
    # FacebookAppSecret is set, and a generated body cannot carry a valid signature): what
    # lies behind the signature is for the webhook payload tests.
    fixed = {"POST /webhooks/telegram/{channel_id}": {
        "path_parameters": {"channel_id": channel.id},
        "headers": {"X-Telegram-Bot-Api-Secret-Token": channel.secret}}}
    # Visitor routes: the real widget key and a visitor's token, so generated input reaches
    # the checks behind them (no bearer token: it would open nothing there).
    for label in ("GET /widget/{widget_key}.js", "POST /widget/api/{widget_key}/sessions",
                  "GET /widget/api/{widget_key}/messages", "POST /widget/api/{widget_key}/messages",
                  "GET /widget/api/{widget_key}/files/{file_id}"):
        fixed[label] = {"path_parameters": {"widget_key": widget_key},
                        **({"headers": {"Authorization": f"Visitor {visitor}"}} if "/api/" in label
                           and "sessions" not in label else {})}
    schema = schemathesis.openapi.from_url(f"{base}/openapi.json")
    operations = [op for result in schema.get_all_operations() if (op := result.ok()).label not in NOT_FUZZED]
    documented = {f"{method.upper()} {path}" for path, item in schema.raw_schema["paths"].items() for method in item}
    # schemathesis itself leaves out GET /openapi.json (the document it was loaded from);
    # every documented operation but NOT_FUZZED is run.
    assert NOT_FUZZED <= documented
    assert {o.label for o in operations} | NOT_FUZZED == documented
    failures, cases, statuses, no_invalid_input = [], Counter(), Counter(), []

    def fuzz(operation, label, **strategy):
        @given(case=operation.as_strategy(**strategy))
        @settings(max_examples=EXAMPLES_PER_OPERATION, deadline=None, derandomize=DERANDOMIZE, database=None,
                  phases=(Phase.explicit, Phase.generate), report_multiple_bugs=False,
                  suppress_health_check=list(HealthCheck))
        def run(case):
            cases[label] += 1
            try:
                response = case.call_and_validate(base_url=base, headers={} if "/widget/" in label else AUTH,
                                                  checks=CHECKS, timeout=30)
                statuses[response.status_code] += 1
            finally:
                _keep_admin(app)

        try:
            run()
        except Unsatisfiable:
            # Only for negative generation of an operation that has no input to get wrong
            # (no parameters, no body): there is nothing invalid to send.
            assert strategy["generation_mode"] is GenerationMode.NEGATIVE, label
            no_invalid_input.append(label)
        except (Exception, BaseExceptionGroup) as e:  # one operation's failure must not hide the others'
            failures.append(f"{label}: {e}")

    for operation in operations:
        given_ = fixed.get(operation.label, {})
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):
            fuzz(operation, f"{operation.label} ({mode.value})", generation_mode=mode, **given_)
        ids = [p.name for p in operation.path_parameters if p.definition["schema"].get("type") == "integer"]
        if ids and not given_:
            fuzz(operation, f"{operation.label} (existing ids)", generation_mode=GenerationMode.POSITIVE,
                 path_parameters=dict.fromkeys(ids, 1))
    total = sum(cases.values())
    print(f"\nschemathesis: {len(operations)} operations, {total} cases, statuses {dict(sorted(statuses.items()))};"
          f" nothing invalid to send to {len(no_invalid_input)}")
    assert not failures, f"{len(failures)} of {len(operations)} operations failed:\n\n" + "\n\n".join(failures)
    assert total >= 2 * len(operations)
    assert statuses[200] and statuses[201] and statuses[204], statuses


def test_values_the_database_cannot_hold_answer_4xx(make_app):
    """Found by the run above: ids beyond 32 bits overflowed the database driver (500), as did
    ?queue_id=² (a digit to str.isdigit, not to int); NUL characters break PostgreSQL text."""
    api = Api(make_app())
    big = 2**70
    deploy_lifecycle(api)  # a queue needs its lifecycle deployed
    queue = ok(api.post("/api/queues", {"name": "Q", "routing_rule": "all"}), 201)
    role = ok(api.post("/api/roles", {"name": "R"}), 201)
    for method, path, body, status in [
            ("GET", f"/api/chats/{big}", None, 404),
            ("GET", f"/api/users/{big}", None, 404),
            ("POST", f"/api/roles/{role['id']}/members", {"user_id": big}, 422),
            ("POST", f"/api/queues/{queue['id']}/operators", {"role_id": -big}, 422),
            ("POST", "/api/channels", {"provider": "telegram", "name": "x", "token": "1:a", "queue_id": big}, 422),
            ("GET", f"/api/chats?queue_id={big}", None, 400),
            ("GET", "/api/chats?queue_id=%C2%B2", None, 400),
            ("POST", "/api/queues", {"name": "Q\x00", "routing_rule": "all"}, 422),
            ("POST", "/api/users", {"login": "u", "roles": ["R\x00"]}, 422),
            ("GET", "/api/processes/a%00", None, 400),
            ("GET", "/api/process-instances?process=a%00", None, 400)]:
        response = api.call(method, path, body)
        assert response.status_code == status, (method, path, response.get_data(as_text=True))
        assert response.get_json()["error"]["code"]
    webhook = api.client.post(f"/webhooks/telegram/{big}", json={"update_id": 1},
                              headers={"X-Telegram-Bot-Api-Secret-Token": "x"})
    assert webhook.status_code == 403
