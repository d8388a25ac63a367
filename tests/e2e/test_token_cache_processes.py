"""The bearer-token cache across real web processes: two gunicorn processes on one database,
each caching the token; a revoke and a permission change through one hold in the other at once."""
import requests

from conftest import ADMIN_TOKEN, Api


def test_revoke_and_permission_change_hold_in_the_other_web_process_at_once(make_app, redis_url, start_web,
                                                                           start_worker):
    setup = Api(make_app(redis_url=redis_url))  # creates the tables' first rows and the admin
    role = setup.post("/api/roles", {"name": "Supervisors", "permissions": ["CanManageChats"]}).get_json()
    boss = setup.post("/api/users", {"login": "boss", "roles": ["Supervisors"]}).get_json()
    web_a, web_b = start_web(2, meanwhile=start_worker)  # /healthz, which start_web waits for, counts a worker

    def get(base, token, path="/api/users"):
        return requests.get(base + path, headers={"Authorization": f"Bearer {token}"}, timeout=10).status_code

    for _ in range(2):  # cached in both processes
        assert get(web_a, boss["token"]) == 200 and get(web_b, boss["token"]) == 200

    admin = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
    changed = requests.patch(f"{web_b}/api/roles/{role['id']}", json={"permissions": []}, headers=admin, timeout=10)
    assert changed.status_code == 200, changed.text
    assert get(web_a, boss["token"]) == 403
    assert get(web_a, boss["token"], "/api/me") == 200

    renewed = requests.post(f"{web_a}/api/users/{boss['id']}/token", headers=admin, timeout=10)
    assert renewed.status_code == 201, renewed.text
    assert get(web_b, boss["token"], "/api/me") == 401
    assert get(web_b, renewed.json()["token"], "/api/me") == 200
