"""Signing in to the console: the token is checked against the API, kept in the browser, and
the user lands on the page for them (admins on Chat setup, operators on their panel)."""
import requests
from playwright.sync_api import expect

from chat_helpers import make_operator
from conftest import ADMIN_TOKEN, Api


def sign_in(page, token):
    page.goto("/console/")
    page.get_by_label("Token").fill(token)
    page.get_by_role("button", name="Sign in").click()


def test_a_wrong_token_is_refused_beside_the_field(app, serve, console):
    page = console(serve(app), None)
    sign_in(page, "wrong")
    expect(page.locator('.field-error[data-field="token"]')).to_have_text("the token is not valid")
    assert page.evaluate("localStorage.getItem('chatflow.token')") is None


def test_admin_and_operator_land_on_their_pages(app, serve, console):
    base = serve(app)
    anna = make_operator(Api(app), "anna")
    admin = console(base, None)
    sign_in(admin, ADMIN_TOKEN)
    expect(admin).to_have_url(f"{base}/console/setup")
    expect(admin.get_by_role("link", name="Processes")).to_be_visible()

    operator = console(base, None)
    sign_in(operator, anna.token)
    expect(operator).to_have_url(f"{base}/console/operator")
    expect(operator.get_by_role("link", name="Chat setup")).to_be_hidden()
    operator.get_by_role("button", name="Sign out").click()
    expect(operator).to_have_url(f"{base}/console/")
    assert operator.evaluate("localStorage.getItem('chatflow.token')") is None


def test_a_page_opened_signed_out_asks_to_sign_in_then_returns(app, serve, console):
    base = serve(app)
    page = console(base, None)
    page.goto("/console/processes")
    expect(page).to_have_url(f"{base}/console/?next=%2Fconsole%2Fprocesses")
    page.get_by_label("Token").fill(ADMIN_TOKEN)
    page.get_by_role("button", name="Sign in").click()
    expect(page).to_have_url(f"{base}/console/processes")


def test_console_pages_allow_scripts_from_this_origin_only(app, serve):
    """The token is in localStorage: pages refuse inline and foreign scripts, and framing."""
    base = serve(app)
    for path in ("/console/", "/console/operator", "/console/setup", "/console/processes", "/console/instances/1"):
        headers = requests.get(f"{base}{path}", timeout=10).headers
        policy = dict(part.strip().split(" ", 1) for part in headers["Content-Security-Policy"].split(";"))
        assert policy["script-src"] == "'self'", path
        assert policy["frame-ancestors"] == "'none'", path
        assert headers["X-Content-Type-Options"] == "nosniff", path
