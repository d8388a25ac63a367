"""The bearer-token cache (app.accounts.TokenCache): each web process caches what a token opens,
and a revoke or a permission change made through another process holds at once.

Two apps on one database stand for two web processes here (each has its own cache);
tests/e2e/test_token_cache_processes.py does the same with two gunicorn processes."""
import pytest

from app.accounts import hash_token
from conftest import Api


@pytest.fixture
def web(make_app):
    """Two web processes: `a` serves the user, `b` is where the admin changes things."""
    a, b = Api(make_app()), Api(make_app())
    return a, b


def cached(api, token):
    return api.app.extensions["chatflow.tokens"].get(hash_token(token))


def new_user(api, login, **fields):
    response = api.post("/api/users", {"login": login, **fields})
    assert response.status_code == 201, response.get_json()
    return response.get_json()


def warm(api, token, path="/api/users"):
    """One admin request through `api` with `token`: answered 200 and now cached there."""
    assert api.get(path, token=token).status_code == 200
    assert cached(api, token) is not None


def test_a_cached_token_costs_one_statement_and_answers_the_same(web):
    a, _ = web
    boss = new_user(a, "boss", permissions=["CanManageChats"])
    first = a.get("/api/me", token=boss["token"]).get_json()
    from sqlalchemy import event

    from app.extensions import db
    statements = []
    with a.app.app_context():
        engine = db.engine
    record = lambda *args: statements.append(args[2])  # noqa: E731
    event.listen(engine, "before_cursor_execute", record)
    try:  # an admin route whose answer reads no roles
        assert a.get("/api/processes", token=boss["token"]).status_code == 200
    finally:
        event.remove(engine, "before_cursor_execute", record)
    assert not [s for s in statements if "api_tokens" in s or "roles" in s], statements
    assert a.get("/api/me", token=boss["token"]).get_json() == first


def test_a_revoked_token_opens_nothing_in_the_other_process_at_once(web):
    a, b = web
    boss = new_user(b, "boss", permissions=["CanManageChats"])
    warm(a, boss["token"])
    renewed = b.post(f"/api/users/{boss['id']}/token").get_json()["token"]
    assert a.get("/api/users", token=boss["token"]).status_code == 401
    assert cached(a, boss["token"]) is None
    assert a.get("/api/users", token=renewed).status_code == 200


def test_permissions_taken_away_hold_in_the_other_process_at_once(web):
    a, b = web
    boss = new_user(b, "boss", permissions=["CanManageChats"])
    warm(a, boss["token"])
    assert b.patch(f"/api/users/{boss['id']}", {"permissions": []}).status_code == 200
    assert a.get("/api/users", token=boss["token"]).status_code == 403
    assert a.get("/api/me", token=boss["token"]).status_code == 200  # still signed in, no longer an admin
    assert b.patch(f"/api/users/{boss['id']}", {"permissions": ["CanManageChats"]}).status_code == 200
    assert a.get("/api/users", token=boss["token"]).status_code == 200


def test_a_deactivated_or_deleted_user_is_refused_in_the_other_process_at_once(web):
    a, b = web
    boss = new_user(b, "boss", permissions=["CanManageChats"])
    gone = new_user(b, "gone", permissions=["CanManageChats"])
    warm(a, boss["token"])
    warm(a, gone["token"])
    assert b.patch(f"/api/users/{boss['id']}", {"active": False}).status_code == 200
    assert b.delete(f"/api/users/{gone['id']}").status_code == 204
    assert a.get("/api/users", token=boss["token"]).status_code == 401
    assert a.get("/api/users", token=gone["token"]).status_code == 401
    # A user created after the deletion (on SQLite it may get the deleted one's id) is not opened
    # by the deleted user's token.
    new_user(b, "newcomer", permissions=["CanManageChats"])
    assert a.get("/api/users", token=gone["token"]).status_code == 401


@pytest.mark.parametrize("change", ["role_permissions", "remove_member", "delete_role"])
def test_permissions_through_a_role_taken_away_hold_in_the_other_process_at_once(web, change):
    a, b = web
    role = b.post("/api/roles", {"name": "Supervisors", "permissions": ["CanManageChats"]}).get_json()
    sue = new_user(b, "sue", roles=["Supervisors"])
    warm(a, sue["token"])
    response = {"role_permissions": lambda: b.patch(f"/api/roles/{role['id']}", {"permissions": []}),
                "remove_member": lambda: b.delete(f"/api/roles/{role['id']}/members/{sue['id']}"),
                "delete_role": lambda: b.delete(f"/api/roles/{role['id']}")}[change]()
    assert response.status_code in (200, 204), response.get_json()
    assert a.get("/api/users", token=sue["token"]).status_code == 403


def test_permissions_given_through_a_role_hold_in_the_other_process_at_once(web):
    a, b = web
    role = b.post("/api/roles", {"name": "Supervisors", "permissions": ["CanManageChats"]}).get_json()
    sam = new_user(b, "sam")
    assert a.get("/api/users", token=sam["token"]).status_code == 403  # cached as no admin
    assert cached(a, sam["token"]).permissions == frozenset()
    assert b.post(f"/api/roles/{role['id']}/members", {"user_id": sam["id"]}).status_code == 201
    assert a.get("/api/users", token=sam["token"]).status_code == 200
