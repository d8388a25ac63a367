"""Bearer tokens, users and roles, the error format, /openapi.json and /healthz (docs/api.md, "Conventions")."""
import hashlib
import re

import pytest
from sqlalchemy import text

from app.api import openapi
from app.extensions import db
from chat_helpers import error as error_of  # a local `error` holds its answer
from conftest import ADMIN_TOKEN, Api

def create_user(api, login, **fields):
    response = api.post("/api/users", {"login": login, **fields})
    assert response.status_code == 201, response.get_json()
    return response.get_json()


# -- authentication ---------------------------------------------------------------------

@pytest.mark.parametrize("headers", [
    {},
    {"Authorization": "Bearer not-a-real-token"},
    {"Authorization": f"Basic {ADMIN_TOKEN}"},
    {"Authorization": "Bearer "},
    {"Authorization": ADMIN_TOKEN},
])
def test_missing_or_bad_token_is_401_json(api, headers):
    for path in ("/api/users", "/api/processes", "/api/process-operations"):
        response = api.get(path, token=None, headers=dict(headers))
        assert error_of(response, 401)["code"] == "unauthorized"


def test_bootstrap_admin_exists_with_can_manage_chats(api):
    users = api.get("/api/users").get_json()
    (admin,) = [u for u in users if u["login"] == "admin"]
    assert admin["permissions"] == ["CanManageChats"]
    assert "token" not in admin
    assert api.get(f"/api/users/{admin['id']}").get_json()["login"] == "admin"


def test_user_without_permission_gets_403_on_admin_routes(api):
    plain = create_user(api, "operator1", name="Operator One")
    as_plain = api.as_user(plain["token"])
    for method, path, body in [("GET", "/api/users", None), ("POST", "/api/users", {"login": "x"}),
                               ("GET", f"/api/users/{plain['id']}", None),
                               ("PATCH", f"/api/users/{plain['id']}", {"permissions": ["CanManageChats"]}),
                               ("DELETE", f"/api/users/{plain['id']}", None),
                               ("GET", "/api/roles", None), ("POST", "/api/roles", {"name": "r"}),
                               ("GET", "/api/processes", None),
                               ("GET", "/api/process-instances", None)]:
        response = as_plain.call(method, path, body)
        assert error_of(response, 403)["code"] == "forbidden", (method, path)
    # Nothing was changed by the refused calls.
    again = api.get(f"/api/users/{plain['id']}").get_json()
    assert again["permissions"] == []
    assert [u["login"] for u in api.get("/api/users").get_json()] == ["admin", "operator1"]
    # Any valid user may read the operation catalogue.
    assert as_plain.get("/api/process-operations").status_code == 200


def test_every_admin_route_refuses_a_plain_user(api, app):
    """Walk the app's own rules: each one marked admin must answer 403 before looking anything up."""
    plain = create_user(api, "plain")
    as_plain = api.as_user(plain["token"])
    checked = 0
    for rule in app.url_map.iter_rules():
        view = app.view_functions[rule.endpoint]
        if getattr(view, "access", None) != "admin":
            continue
        path = re.sub(r"<int:\w+>", "999999", rule.rule)
        path = re.sub(r"<(?:\w+:)?\w+>", "nothing", path)
        for method in sorted(rule.methods - {"HEAD", "OPTIONS"}):
            response = as_plain.call(method, path, {})
            assert error_of(response, 403)["code"] == "forbidden", (method, rule.rule)
            checked += 1
    assert checked >= 20


def test_permission_through_a_role(api):
    user = create_user(api, "lead")
    as_lead = api.as_user(user["token"])
    assert as_lead.get("/api/users").status_code == 403

    role = api.post("/api/roles", {"name": "Supervisors", "permissions": ["CanManageChats"]})
    assert role.status_code == 201
    role = role.get_json()
    assert role["name"] == "Supervisors" and role["permissions"] == ["CanManageChats"] and role["members"] == []
    assert isinstance(role["id"], int)

    added = api.post(f"/api/roles/{role['id']}/members", {"user_id": user["id"]})
    assert added.status_code == 201
    assert added.get_json()["members"] == [user["id"]]
    assert api.get(f"/api/users/{user['id']}").get_json()["roles"] == ["Supervisors"]

    listed = as_lead.get("/api/users")
    assert listed.status_code == 200
    assert [u["login"] for u in listed.get_json()] == ["admin", "lead"]

    # Taking the role away takes the permission away.
    assert api.patch(f"/api/users/{user['id']}", {"roles": []}).get_json()["roles"] == []
    assert error_of(as_lead.get("/api/users"), 403)["code"] == "forbidden"


def test_roles_list_members_and_errors(api):
    first = create_user(api, "u1")
    second = create_user(api, "u2")
    role = api.post("/api/roles", {"name": "Night shift"}).get_json()
    assert role["permissions"] == []
    assert error_of(api.post("/api/roles", {"name": "Night shift"}), 409)["details"] == {"field": "name"}
    assert error_of(api.post("/api/roles", {"name": 5}), 422)["details"]["field"] == "name"
    assert error_of(api.post("/api/roles", {}), 422)["details"]["field"] == "name"
    assert error_of(api.post("/api/roles", {"name": "x", "permissions": ["Nope"]}), 422)["details"]["field"] \
        == "permissions"

    api.post(f"/api/roles/{role['id']}/members", {"user_id": second["id"]})
    api.post(f"/api/roles/{role['id']}/members", {"user_id": first["id"]})
    again = api.post(f"/api/roles/{role['id']}/members", {"user_id": first["id"]})  # idempotent
    assert again.get_json()["members"] == [first["id"], second["id"]]

    assert error_of(api.post(f"/api/roles/{role['id']}/members", {"user_id": 999999}), 422)["details"] \
        == {"field": "user_id", "fields": ["user_id"]}
    assert error_of(api.post(f"/api/roles/{role['id']}/members", {"user_id": "1"}), 422)["details"]["field"] \
        == "user_id"
    assert error_of(api.post("/api/roles/999999/members", {"user_id": first["id"]}), 404)

    api.post("/api/roles", {"name": "Day shift"})
    roles = api.get("/api/roles").get_json()
    assert [r["name"] for r in roles] == ["Night shift", "Day shift"]
    assert roles[0]["members"] == [first["id"], second["id"]]

    # A user created with role names is a member.
    third = create_user(api, "u3", roles=["Day shift", "Night shift"])
    assert sorted(third["roles"]) == ["Day shift", "Night shift"]
    assert error_of(api.post("/api/users", {"login": "u4", "roles": ["Nobody"]}), 422)["details"]["field"] \
        == "roles"


# -- users ---------------------------------------------------------------------------

def test_create_user_returns_token_once_and_it_works(api):
    response = api.post("/api/users", {"login": "alice", "name": "Alice A.", "roles": [],
                                       "permissions": ["CanManageChats"]})
    assert response.status_code == 201
    body = response.get_json()
    assert isinstance(body["id"], int)
    assert body["login"] == "alice" and body["name"] == "Alice A."
    assert body["roles"] == [] and body["permissions"] == ["CanManageChats"]
    token = body["token"]
    assert isinstance(token, str) and len(token) >= 32

    # The token authenticates as alice, who is an admin.
    assert api.as_user(token).get(f"/api/users/{body['id']}").get_json()["login"] == "alice"

    # No read answer ever shows a token again.
    assert "token" not in api.get(f"/api/users/{body['id']}").get_json()
    listed = api.get("/api/users")
    assert all("token" not in u for u in listed.get_json())
    assert token not in listed.get_data(as_text=True)
    patched = api.patch(f"/api/users/{body['id']}", {"name": "Alice"})
    assert "token" not in patched.get_json() and token not in patched.get_data(as_text=True)


def test_tokens_are_stored_hashed(api, app):
    token = create_user(api, "bob")["token"]
    with app.app_context():
        rows = db.session.execute(text("SELECT t.token_hash FROM api_tokens t JOIN users u ON u.id = t.user_id "
                                       "WHERE u.login = 'bob'")).scalars().all()
        every_value = db.session.execute(text("SELECT * FROM api_tokens")).all()
        db.session.remove()
    assert rows == [hashlib.sha256(token.encode()).hexdigest()]
    flat = " ".join(str(v) for row in every_value for v in row)
    assert token not in flat
    assert ADMIN_TOKEN not in flat
    assert hashlib.sha256(ADMIN_TOKEN.encode()).hexdigest() in flat


def test_duplicate_login_is_409(api):
    create_user(api, "carol")
    error = error_of(api.post("/api/users", {"login": "carol"}), 409)
    assert error["code"] == "login_taken" and error["details"] == {"field": "login"}
    assert [u["login"] for u in api.get("/api/users").get_json()].count("carol") == 1


@pytest.mark.parametrize("body, field", [
    ({"login": 42}, "login"),
    ({"login": ""}, "login"),
    ({"login": "   "}, "login"),
    ({"login": "x" * 101}, "login"),
    ({"login": None}, "login"),
    ({}, "login"),
    ({"login": "ok", "name": ["Dave"]}, "name"),
    ({"login": "ok", "roles": "admins"}, "roles"),
    ({"login": "ok", "roles": [1]}, "roles"),
    ({"login": "ok", "permissions": "CanManageChats"}, "permissions"),
    ({"login": "ok", "permissions": [True]}, "permissions"),
    ({"login": "ok", "permissions": ["CanFly"]}, "permissions"),
])
def test_bad_values_are_422_naming_the_field(api, body, field):
    error = error_of(api.post("/api/users", body), 422)
    assert error["details"]["field"] == field
    assert [u["login"] for u in api.get("/api/users").get_json()] == ["admin"]


def test_unknown_field_is_422(api):
    error = error_of(api.post("/api/users", {"login": "eve", "password": "secret"}), 422)
    assert error["code"] == "unknown_field" and error["details"] == {
        "field": "password", "fields": ["password"], "problems": [{"field": "password", "message": "no such field"}]}
    error = error_of(api.patch("/api/users/1", {"token": "mine"}), 422)
    assert error["details"]["fields"] == ["token"]


def test_every_bad_field_is_named_at_once(api):
    """Unknown fields first (the code says so), then each wrong value; `field` is the first."""
    error = error_of(api.post("/api/users", {"name": 7, "roles": ["ok", 3], "password": "x"}), 422)
    assert error["code"] == "unknown_field"
    assert error["details"]["field"] == "password"
    assert error["details"]["fields"] == ["password", "login", "name", "roles"]
    assert [p["field"] for p in error["details"]["problems"]] == error["details"]["fields"]
    assert "login: is required" in error["message"] and "roles: [1]" in error["message"]
    error = error_of(api.post("/api/users", {"login": " ", "permissions": "CanManageChats"}), 422)
    assert error["code"] == "invalid_value" and error["details"]["fields"] == ["login", "permissions"]


@pytest.mark.parametrize("kwargs", [
    {"data": "login=frank", "content_type": "application/x-www-form-urlencoded"},
    {"data": "{not json", "content_type": "application/json"},
    {"data": "[1, 2]", "content_type": "application/json"},
    {"data": '"frank"', "content_type": "application/json"},
    {"data": "", "content_type": "application/json"},
])
def test_non_json_body_is_400(api, kwargs):
    for method, path in [("POST", "/api/users"), ("PATCH", "/api/users/1"), ("POST", "/api/roles")]:
        error = error_of(api.call(method, path, **kwargs), 400)
        assert error["code"] == "malformed_body", (method, path)
    assert [u["login"] for u in api.get("/api/users").get_json()] == ["admin"]


def test_pagination_oldest_first(api):
    logins = [f"user{i:02d}" for i in range(7)]
    ids = [create_user(api, login)["id"] for login in logins]
    assert ids == sorted(ids)
    everyone = ["admin", *logins]
    assert [u["login"] for u in api.get("/api/users").get_json()] == everyone
    assert [u["login"] for u in api.get("/api/users?limit=3").get_json()] == everyone[:3]
    assert [u["login"] for u in api.get("/api/users?limit=3&offset=3").get_json()] == everyone[3:6]
    assert [u["login"] for u in api.get("/api/users?limit=3&offset=6").get_json()] == everyone[6:]
    assert api.get("/api/users?offset=50").get_json() == []
    assert api.get("/api/users?limit=0").get_json() == []
    for bad in ("limit=-1", "limit=abc", "offset=-2", "limit=100000"):
        assert error_of(api.get(f"/api/users?{bad}"), 400)["details"]["field"] == bad.split("=")[0]


def test_patch_user(api):
    user = create_user(api, "gina", name="Gina")
    create_user(api, "hank")
    api.post("/api/roles", {"name": "Team A"})
    patched = api.patch(f"/api/users/{user['id']}", {"name": "Gina G.", "login": "gina.g", "roles": ["Team A"],
                                                     "permissions": ["CanManageChats"]})
    assert patched.status_code == 200
    body = patched.get_json()
    assert (body["id"], body["login"], body["name"], body["roles"], body["permissions"]) == \
        (user["id"], "gina.g", "Gina G.", ["Team A"], ["CanManageChats"])
    assert api.get(f"/api/users/{user['id']}").get_json() == body
    # Her token still works and now carries the permission.
    assert api.as_user(user["token"]).get("/api/roles").status_code == 200

    # Only the fields sent change.
    assert api.patch(f"/api/users/{user['id']}", {"name": "G"}).get_json()["login"] == "gina.g"
    # Same login as before is no conflict; someone else's is.
    assert api.patch(f"/api/users/{user['id']}", {"login": "gina.g"}).status_code == 200
    error = error_of(api.patch(f"/api/users/{user['id']}", {"login": "hank"}), 409)
    assert error["details"] == {"field": "login"}
    assert error_of(api.patch(f"/api/users/{user['id']}", {"login": 7}), 422)["details"]["field"] == "login"
    assert error_of(api.patch(f"/api/users/{user['id']}", {"roles": ["Team Z"]}), 422)["details"]["field"] \
        == "roles"
    assert api.get(f"/api/users/{user['id']}").get_json()["roles"] == ["Team A"]
    assert error_of(api.patch("/api/users/999999", {"name": "x"}), 404)


def test_delete_user(api):
    user = create_user(api, "ivan")
    role = api.post("/api/roles", {"name": "Ivan's role"}).get_json()
    api.post(f"/api/roles/{role['id']}/members", {"user_id": user["id"]})
    assert api.as_user(user["token"]).get("/api/process-operations").status_code == 200

    response = api.delete(f"/api/users/{user['id']}")
    assert response.status_code == 204
    assert error_of(api.get(f"/api/users/{user['id']}"), 404)["code"] == "not_found"
    assert error_of(api.delete(f"/api/users/{user['id']}"), 404)
    assert [u["login"] for u in api.get("/api/users").get_json()] == ["admin"]
    assert api.get("/api/roles").get_json()[0]["members"] == []
    # The deleted user's token no longer authenticates.
    assert error_of(api.as_user(user["token"]).get("/api/process-operations"), 401)["code"] == "unauthorized"
    # The login is free again.
    again = create_user(api, "ivan")
    assert again["roles"] == [] and again["token"] != user["token"]
    assert error_of(api.as_user(user["token"]).get("/api/process-operations"), 401)


def test_admin_cannot_delete_self(api):
    admin = api.get("/api/users").get_json()[0]
    assert error_of(api.delete(f"/api/users/{admin['id']}"), 409)["code"] == "cannot_delete_self"
    assert api.get("/api/users").get_json()[0]["login"] == "admin"


def test_unknown_route_and_method_answer_json_errors(api):
    assert error_of(api.get("/api/no-such-thing"), 404)["code"] == "not_found"
    assert error_of(api.put("/api/users", {}), 405)["code"] == "method_not_allowed"


# -- openapi and health --------------------------------------------------------------------

def test_openapi_lists_every_route(api, app):
    response = api.get("/openapi.json", token=None)
    assert response.status_code == 200
    spec = response.get_json()
    assert spec["openapi"].startswith("3.")
    paths = spec["paths"]
    expected = set()
    for rule in app.url_map.iter_rules():
        if not openapi.documented(rule):
            continue
        path = re.sub(r"<(?:\w+:)?(\w+)>", r"{\1}", rule.rule)
        for method in rule.methods - {"HEAD", "OPTIONS"}:
            expected.add((path, method.lower()))
            assert path in paths, f"{rule.rule} has no entry in /openapi.json"
            assert method.lower() in paths[path], f"{method} {rule.rule} has no entry in /openapi.json"
            operation = paths[path][method.lower()]
            assert operation["summary"]
            names = {p["name"] for p in operation.get("parameters", []) if p["in"] == "path"}
            assert names == set(re.findall(r"\{(\w+)\}", path)), path
            if path.startswith("/api"):
                assert operation["security"] == [{"bearer": []}]
    documented = {(p, m) for p, ops in paths.items() for m in ops}
    assert documented == expected
    # A few the contract names, so the comparison above is not vacuous.
    for path, method in [("/api/users", "post"), ("/api/users/{user_id}", "patch"),
                         ("/api/roles/{role_id}/members", "post"), ("/api/processes", "post"),
                         ("/api/process-instances/{instance_id}/retry", "post"), ("/healthz", "get")]:
        assert (path, method) in documented
    assert paths["/api/users"]["post"]["x-access"] == "admin"
    body = paths["/api/users"]["post"]["requestBody"]["content"]["application/json"]["schema"]
    assert body["required"] == ["login"] and body["properties"]["roles"]["type"] == "array"


def _models(schema: dict) -> list[str]:
    """The components a response schema names: a model, a list of them, or either of two."""
    if "$ref" in schema:
        return [schema["$ref"].rsplit("/", 1)[1]]
    if schema.get("type") == "array":
        return _models(schema["items"])
    return [name for option in schema.get("anyOf", []) for name in _models(option)]


def test_openapi_types_every_answer(api):
    """Every JSON answer, success or error, is a named model with its fields (the document
    itself excepted: it is OpenAPI's own); non-JSON answers say their media type."""
    spec = api.get("/openapi.json", token=None).get_json()
    components = spec["components"]["schemas"]
    untyped = []
    for path, operations in spec["paths"].items():
        for method, operation in operations.items():
            for status, response in operation["responses"].items():
                schema = response.get("content", {}).get("application/json", {}).get("schema")
                if schema is None or path == "/openapi.json":
                    assert status == "204" or response.get("content") or path == "/openapi.json", (method, path)
                    continue
                names = _models(schema)
                if not names or not all(components[n].get("properties") for n in names):
                    untyped.append(f"{method.upper()} {path} {status}")
    assert not untyped, untyped
    assert set(components["Error"]["required"]) == {"error"}
    assert set(components["ErrorInfo"]["required"]) == {"code", "message", "details"}


def test_healthz_embedded(make_app):
    response = Api(make_app()).get("/healthz", token=None)
    assert response.status_code == 200
    body = response.get_json()
    assert body["status"] == "ok"
    assert body["checks"]["database"] == {"ok": True}
    assert body["checks"]["jobs"] == {"ok": True, "backend": "in-process"}


def test_healthz_on_rq_needs_a_worker(make_app, redis_url, start_worker):
    api = Api(make_app(redis_url=redis_url))
    down = api.get("/healthz", token=None)
    assert down.status_code == 503
    assert down.get_json()["checks"]["jobs"]["error"] == "no chatflow worker is running"
    start_worker()
    up = api.get("/healthz", token=None)
    assert up.status_code == 200
    assert up.get_json()["checks"]["jobs"]["workers"] == 1
