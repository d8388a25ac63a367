"""Transfer and the routing preview in real browsers: an operator hands a chat to a colleague from
the panel (it is offered to them live), the colleague hands it on to another queue, whose operator
takes it; the admin's queue row tells who would get the next chat and why."""
import pytest
from playwright.sync_api import expect

from chat_helpers import configure, events, make_channel, make_operator, make_queue, ok
from conftest import ROOT, ADMIN_TOKEN, shot


@pytest.fixture
def app(running_app):
    return running_app


def panel(console, base, operator):
    page = console(base, operator.token)
    page.goto("/console/operator")
    expect(page.locator("#live")).to_have_text("● Live")
    return page


def item(page, where, client):
    """The client's chat among the offers, or in the tab `where` (mine, waiting), selected first."""
    if where == "offered":
        return page.locator("#offered li.op-item", has_text=f"Client{client.user_id}")
    page.locator(f"#tab-{where}").click()
    return page.locator("#chat-list li.op-item", has_text=f"Client{client.user_id}")


def test_transfer_to_a_colleague_then_to_another_queue_from_the_panel(app, api, serve, console):
    ok(api.deploy(ROOT / "processes" / "ChatLifecycle.bpmn"), 201)
    configure(api, accept_timeout_minutes=5)
    first = make_queue(api, "least_busy", name="First line")
    second = make_queue(api, "all", name="Second line")
    anna = make_operator(api, "anna", first["id"], connected=False)
    boris = make_operator(api, "boris", first["id"], connected=False)
    vera = make_operator(api, "vera", second["id"], connected=False)
    client = make_channel(api, first["id"]).client()
    base = serve(app)
    pages = {op.login: panel(console, base, op) for op in (anna, boris, vera)}

    client.writes("I need billing help")
    item(pages["anna"], "offered", client).get_by_role("button", name="Accept").click()
    expect(item(pages["anna"], "mine", client)).to_be_visible()
    form = pages["anna"].locator("#transfer-form")
    expect(form.get_by_label("To")).to_contain_text("Boris (available, holds 0)")
    form.get_by_label("To").select_option(label="Boris (available, holds 0)")
    form.get_by_label("Note").fill("billing question")
    shot(pages["anna"], "operator-transfer")
    form.get_by_role("button", name="Transfer").click()
    expect(pages["anna"].locator("#chat-ended")).to_have_text("You transferred this chat.")
    expect(item(pages["anna"], "mine", client)).to_have_count(0)

    offer = item(pages["boris"], "offered", client)
    expect(offer).to_be_visible()
    offer.get_by_role("button", name="Accept").click()
    expect(item(pages["boris"], "mine", client)).to_be_visible()
    form = pages["boris"].locator("#transfer-form")
    form.get_by_label("To").select_option(label="Queue Second line")
    form.get_by_role("button", name="Transfer").click()
    expect(pages["boris"].locator("#chat-ended")).to_have_text("You transferred this chat.")

    waiting = item(pages["vera"], "waiting", client)
    expect(waiting).to_be_visible()
    waiting.get_by_role("button", name="Accept").click()
    expect(item(pages["vera"], "mine", client)).to_be_visible()
    chat_id = [c for c in ok(api.get("/api/chats")) if c["queue_id"] == second["id"]][0]["id"]
    steps = [(e["details"]["to_operator_id"], e["details"]["to_queue_id"], e["details"]["note"])
             for e in events(api, chat_id, "transferred")]
    assert steps == [(boris.id, None, "billing question"), (None, second["id"], None)]

    # The admin asks who would get the next chat of the first line: anna (holds nothing, accepted
    # longest ago), boris after her; vera serves another queue.
    admin = console(base, ADMIN_TOKEN)
    admin.goto("/console/setup")
    row = admin.locator('[data-testid="queue-row"]', has_text="First line")
    row.get_by_role("button", name="Who gets the next chat of First line?").click()
    preview = admin.get_by_role("table", name="Routing preview of First line")
    expect(preview.locator("tr.chosen")).to_contain_text("Anna")
    expect(preview).to_contain_text("eligible, ranked 2: holds 0")
    shot(admin, "setup-routing-preview")
