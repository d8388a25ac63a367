"""Whether a Facebook login callback's `state` may be spent (app.chats.facebook_login.state_refusal),
and the dialog URL it was sent with."""
from datetime import datetime, timedelta, timezone
from urllib.parse import parse_qs, urlsplit

import pytest

from app.channels.facebook import dialog_url
from app.chats.facebook_login import LOGIN_MINUTES, REFUSALS, state_refusal

NOW = datetime(2026, 12, 2, 12, 0, tzinfo=timezone.utc)
FRESH = NOW - timedelta(minutes=1)


@pytest.mark.parametrize("found,created_at,returned_at,same_browser,why", [
    (True, FRESH, None, True, None),
    (False, None, None, False, "unknown"),
    (True, FRESH, FRESH, True, "used"),                         # a replay, even from the same browser
    (True, NOW - timedelta(minutes=LOGIN_MINUTES, seconds=1), None, True, "expired"),
    (True, NOW - timedelta(minutes=LOGIN_MINUTES), None, True, None),   # the last moment still counts
    (True, FRESH, None, False, "other_browser"),
    (True, FRESH, FRESH, False, "used"),                        # said first: it cannot be retried anywhere
])
def test_state_refusal(found, created_at, returned_at, same_browser, why):
    assert state_refusal(found, created_at, returned_at, same_browser, NOW) == why
    assert why is None or why in REFUSALS


def test_dialog_url_carries_app_redirect_state_and_the_messenger_scopes():
    url = dialog_url("https://www.facebook.com/v25.0/", "4815162342", "https://chat.example.com/oauth/facebook/callback",
                     "s t&ate")
    parts = urlsplit(url)
    assert (parts.scheme, parts.netloc, parts.path) == ("https", "www.facebook.com", "/v25.0/dialog/oauth")
    assert parse_qs(parts.query) == {"client_id": ["4815162342"],
                                     "redirect_uri": ["https://chat.example.com/oauth/facebook/callback"],
                                     "state": ["s t&ate"],
                                     "scope": ["pages_show_list,pages_messaging,pages_manage_metadata"]}
