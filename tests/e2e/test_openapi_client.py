"""A client made from /openapi.json alone calls the app over HTTP, and every answer is checked
against the schema the document gives for it (schemathesis' response conformance)."""
import schemathesis
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (content_type_conformance, response_schema_conformance,
                                               status_code_conformance)

from conftest import ADMIN_TOKEN

CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance]
AUTH = {"Authorization": f"Bearer {ADMIN_TOKEN}"}


def test_a_client_from_the_document_calls_three_routes(make_app, serve):
    base = serve(make_app())
    schema = schemathesis.openapi.from_url(f"{base}/openapi.json")

    def call(method, path, expected, **case):
        operation = schema[path][method]
        # The answer's schema is a named model with required fields, not "any object": what a
        # client generator needs, and what makes the conformance check below able to fail.
        success = operation.definition.raw["responses"][str(expected)]["content"]["application/json"]["schema"]
        name = (success.get("items") or success)["$ref"].rsplit("/", 1)[1]
        assert schema.raw_schema["components"]["schemas"][name]["required"], name
        response = operation.Case(**case).call_and_validate(base_url=base, headers=AUTH, checks=CHECKS)
        assert response.status_code == expected, response.text
        return response.json()

    created = call("POST", "/api/users", 201, body={"login": "grace", "name": "Grace", "permissions": []})
    assert created["token"] and created["login"] == "grace"
    assert call("GET", "/api/users/{user_id}", 200, path_parameters={"user_id": created["id"]})["name"] == "Grace"
    listed = call("GET", "/api/users", 200, query={"limit": 10})
    assert [u["login"] for u in listed] == ["admin", "grace"]
