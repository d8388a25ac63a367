from conftest import ADMIN_TOKEN, shot
def test_sign_in(app, serve, console):
    base = serve(app)
    page = console(base, None)
    page.goto("/console/")
    page.fill("input[name=token]", "wrong")
    page.click("button[type=submit]")
    page.wait_for_selector(".field-error")
    assert "not valid" in page.inner_text(".field-error")
    shot(page, "tmp")
