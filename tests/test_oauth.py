"""Distribution to many workspaces: OAuth install, per-workspace bot tokens, isolation."""

from __future__ import annotations

import re
import urllib.request

import pytest
import sqlalchemy as sa

from funnelbot.models import Deal

OAUTH = {"slack_bot_token": None, "slack_client_id": "1111.2222", "slack_client_secret": "oauth-secret"}


def _get(url: str, cookie: str | None = None) -> tuple[int, str, str | None]:
    """GET like a browser would: status, page, and the cookie the page sets."""
    request = urllib.request.Request(url, headers={"Cookie": cookie} if cookie else {})
    try:
        with urllib.request.urlopen(request, timeout=10) as response:  # noqa: S310 - loopback
            return response.status, response.read().decode(), response.headers.get("Set-Cookie")
    except urllib.error.HTTPError as err:
        return err.code, err.read().decode(), None


def _install(app_server, team_id: str) -> None:
    app_server.fake.oauth_team = (team_id, f"{team_id} Inc")
    status, page, set_cookie = _get(app_server.url + "/slack/install")
    assert status == 200 and set_cookie
    state = re.search(r"state=([A-Za-z0-9-]+)", page)
    assert state, page
    cookie = set_cookie.split(";", 1)[0]
    status, page, _ = _get(
        f"{app_server.url}/slack/oauth_redirect?code=code-{team_id}&state={state.group(1)}", cookie
    )
    assert status == 200, page


@pytest.mark.parametrize("settings_overrides", [OAUTH])
def test_install_then_commands_use_that_workspaces_token(app_server):
    s, fake = app_server.slack, app_server.fake
    _install(app_server, "T0OAUTH")
    assert fake.calls_to("oauth.v2.access")
    url = fake.response_url()
    s.command("/deal", "new Installed 5k", user_id="U1", team_id="T0OAUTH", response_url=url)
    answer = fake.wait_for("response_url", lambda c: c.params.get("_path", "").endswith(url.rsplit("/", 1)[1]))
    assert "#1 Installed" in answer.params["text"]
    # Web API calls made for that workspace carry its own bot token.
    tokens = {c.token for c in fake.calls_to("users.info")}
    assert tokens == {"xoxb-oauth-T0OAUTH"}


@pytest.mark.parametrize("settings_overrides", [OAUTH])
def test_workspaces_never_see_each_other(app_server):
    s, fake = app_server.slack, app_server.fake
    _install(app_server, "TAAA")
    _install(app_server, "TBBB")
    url = fake.response_url()
    s.command("/deal", "new Alpha-only 1k", user_id="U1", team_id="TAAA", response_url=url)
    fake.wait_for("response_url", lambda c: c.params.get("_path", "").endswith(url.rsplit("/", 1)[1]))
    url = fake.response_url()
    s.command("/deal", "show #1", user_id="U1", team_id="TBBB", response_url=url)
    answer = fake.wait_for("response_url", lambda c: c.params.get("_path", "").endswith(url.rsplit("/", 1)[1]))
    assert "Alpha-only" not in str(answer.params)
    url = fake.response_url()
    s.command("/deal", "show alpha", user_id="U1", team_id="TBBB", response_url=url)
    answer = fake.wait_for("response_url", lambda c: c.params.get("_path", "").endswith(url.rsplit("/", 1)[1]))
    assert "Alpha-only" not in str(answer.params)
    with app_server.runtime.engine.connect() as conn:
        rows = conn.execute(sa.select(Deal.team_id, Deal.name)).all()
    assert rows == [("TAAA", "Alpha-only")]


@pytest.mark.parametrize("settings_overrides", [OAUTH])
def test_uninstalled_workspace_changes_nothing(app_server):
    reply = app_server.slack.command(
        "/deal", "new Stranger 1k", user_id="U9", team_id="TNOTINSTALLED", response_url=app_server.fake.response_url()
    )
    assert reply.status < 500
    with app_server.runtime.engine.connect() as conn:
        assert conn.execute(sa.select(sa.func.count()).select_from(Deal)).scalar_one() == 0
