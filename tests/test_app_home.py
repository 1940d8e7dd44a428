"""The App Home tab (SPEC §3 "Other surfaces"): on `app_home_opened` the app publishes the
viewer's own open deals by stage, what needs them first (stalled deals, overdue next
steps) above the rest, and for managers the team funnel; it republishes after the viewer
changes a deal. Slack's limits hold (≤ 100 blocks) however many deals there are. Every
test runs on SQLite and PostgreSQL.
"""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

import pytest
from fakeslack import check_view
from helpers import ADVANCE, SHOW, TEAM, click, create_deal, run_command
from settingskit import Clock, HomeLayout, home_layout, home_publishes, wait_home

T0 = dt.datetime(2026, 3, 2, 9, 0, tzinfo=dt.UTC)  # a Monday
LATER = T0 + dt.timedelta(days=20)
ATTENTION, TEAM_TITLE = "Needs you first", "Team funnel"


@pytest.fixture
def clock() -> Clock:
    return Clock(T0)


@pytest.fixture
def runtime_options(clock: Clock) -> dict:
    return {"clock": clock}


def open_home(app, user: str) -> tuple[dict, HomeLayout]:
    """Send app_home_opened for `user`; the view published for them in answer."""
    count = len(home_publishes(app, user))
    reply = app.slack.app_home_opened(user_id=user)
    assert reply.status == 200, reply
    view = wait_home(app, user, count + 1)
    return view, layout_of(view)


def layout_of(view: dict) -> HomeLayout:
    assert view["type"] == "home"
    assert check_view(view) == []
    assert len(view["blocks"]) <= 100
    return home_layout(view, attention_title=ATTENTION, team_title=TEAM_TITLE)


def change(app, text: str, user: str) -> HomeLayout:
    """`/deal <text>` as `user`, which changes a deal; the Home view then published for
    them (waiting for it, so no publish is still in flight afterwards)."""
    seen = len(home_publishes(app, user))
    if text.startswith("new "):
        create_deal(app, text[4:], user)
    else:
        run_command(app, text, user)
    return layout_of(wait_home(app, user, seen + 1))


def pipeline(app, clock: Clock) -> None:
    """U1's pipeline as of LATER: #1 idle in Lead for 20 days (stalled), #2 fresh in
    Proposal, #3 in Interest with a next step overdue, #4 fresh in Interest, #5 is U2's,
    #6 is U1's but won. Both reps have their Home open, so each change republishes it."""
    open_home(app, "U1")
    open_home(app, "U2")
    change(app, "new Alpha 10k", "U1")
    clock.set(LATER - dt.timedelta(days=1))
    change(app, "new Beta 20k stage:proposal", "U1")
    change(app, "new Gamma 30k stage:interest", "U1")
    change(app, f"next #3 send the quote due:{(LATER - dt.timedelta(days=2)).date()}", "U1")
    change(app, "new Delta 40k stage:interest", "U1")
    change(app, "new Epsilon 50k", "U2")
    change(app, "new Zeta 60k", "U1")
    change(app, "won #6", "U1")
    clock.set(LATER)


def test_home_lists_my_open_deals_by_stage_with_what_needs_me_first(app_server, clock) -> None:
    pipeline(app_server, clock)
    view, home = open_home(app_server, "U1")
    assert home.headers[0] == "Your pipeline"
    # Each open deal of mine once, with a Show button; nobody else's, nothing closed.
    assert sorted(home.show_buttons) == [1, 2, 3, 4]
    assert home.stages == {
        "Lead": (1, [1]),
        "Interest": (2, [home.stages["Interest"][1][0], home.stages["Interest"][1][1]]),
        "Proposal": (1, [2]),
    }
    assert sorted(home.stages["Interest"][1]) == [3, 4]
    # Stages in funnel order.
    assert list(home.stages) == ["Lead", "Interest", "Proposal"]
    # What needs me comes first: the stalled deal and the overdue next step, with why.
    assert home.attention_index is not None and home.first_stage_index is not None
    assert home.attention_index < home.first_stage_index
    reasons = dict(home.attention)
    assert set(reasons) == {1, 3}
    assert "no activity for 20 days" in reasons[1]
    assert "next step was due" in reasons[3]
    # ... each with buttons to act on it at once.
    attention_actions = [
        b for b in view["blocks"] if b.get("block_id", "").startswith("home-attention-")
    ]
    assert {b["block_id"] for b in attention_actions} == {"home-attention-1", "home-attention-3"}
    for block in attention_actions:
        ids = [e["action_id"] for e in block["elements"]]
        assert ADVANCE in ids
    # A rep does not see the team funnel.
    assert home.team_index is None and TEAM_TITLE not in home.headers


def test_home_is_published_for_the_user_who_opened_it(app_server, clock) -> None:
    pipeline(app_server, clock)
    before = len(app_server.fake.calls_to("views.publish"))
    _, home = open_home(app_server, "U2")
    calls = app_server.fake.calls_to("views.publish")[before:]
    assert [c.params["user_id"] for c in calls] == ["U2"]
    assert all(c.ok for c in app_server.fake.calls_to("views.publish")), calls
    assert home.show_buttons == [5]
    assert home.attention == []  # created a day ago: nothing needs U2 yet


def test_a_manager_also_sees_the_team_funnel(app_server, clock) -> None:
    pipeline(app_server, clock)
    view, home = open_home(app_server, "UMGR")
    assert home.team_index is not None
    assert TEAM_TITLE in home.headers
    team_text = "\n".join(
        b["text"]["text"] for b in view["blocks"][home.team_index :] if b.get("text")
    )
    # All open deals of the team, per stage: Lead #1 #5, Interest #3 #4, Proposal #2.
    assert "*Lead*  2 · $60,000" in team_text
    assert "*Interest*  2 · $70,000" in team_text
    assert "*Proposal*  1 · $20,000" in team_text
    # The manager owns nothing: their own part says so.
    assert home.show_buttons == []
    assert "no open deals" in "\n".join(
        b["text"]["text"] for b in view["blocks"][: home.team_index] if b.get("text")
    )


def test_an_admin_sees_the_team_funnel_too(app_server, clock) -> None:
    pipeline(app_server, clock)
    _, home = open_home(app_server, "UADMIN")
    assert home.team_index is not None


def test_home_in_chinese_for_a_chinese_user(app_server, clock) -> None:
    app_server.fake.users["U1"] = {"locale": "zh-CN"}
    pipeline(app_server, clock)
    view = open_home_raw(app_server, "U1")
    texts = [b["text"]["text"] for b in view["blocks"] if b.get("text")]
    assert any("线索" in t for t in texts) and any("意向" in t for t in texts)


def open_home_raw(app, user: str) -> dict:
    count = len(home_publishes(app, user))
    app.slack.app_home_opened(user_id=user)
    view = wait_home(app, user, count + 1)
    assert check_view(view) == []
    return view


def test_home_is_republished_after_the_viewer_changes_a_deal(app_server, clock) -> None:
    pipeline(app_server, clock)
    _, home = open_home(app_server, "U1")
    assert home.stage_of(4) == "Interest"

    home = change(app_server, "advance #4", "U1")
    assert home.stage_of(4) == "Proposal"
    assert home.stages["Proposal"][0] == 2

    seen = len(home_publishes(app_server, "U1"))
    click(app_server, ADVANCE, "2:1", "U1")
    home = layout_of(wait_home(app_server, "U1", seen + 1))
    assert home.stage_of(2) == "Negotiation"
    # Show buttons carry the deal's new version.
    values = [
        b["accessory"]["value"]
        for b in home.blocks
        if (b.get("accessory") or {}).get("action_id") == SHOW
    ]
    assert "2:2" in values

    home = change(app_server, "won #2", "U1")
    assert 2 not in home.show_buttons

    # Someone else's change does not publish U1's Home.
    seen = len(home_publishes(app_server, "U1"))
    change(app_server, "note #5 called", "U2")
    assert len(home_publishes(app_server, "U1")) == seen


def test_no_home_is_built_for_someone_who_never_opened_it(app_server) -> None:
    run_command(app_server, "new Quiet 1k", "U7")
    run_command(app_server, "advance #1", "U7")
    assert home_publishes(app_server, "U7") == []
    open_home(app_server, "U7")
    seen = len(home_publishes(app_server, "U7"))
    change(app_server, "advance #1", "U7")
    assert len(home_publishes(app_server, "U7")) == seen + 1


def test_a_refused_change_does_not_republish(app_server, clock) -> None:
    pipeline(app_server, clock)
    open_home(app_server, "U2")
    seen = len(home_publishes(app_server, "U2"))
    run_command(app_server, "advance #1", "U2")  # U1's deal: refused
    run_command(app_server, "show #5", "U2")
    assert len(home_publishes(app_server, "U2")) == seen


def test_the_messages_tab_is_ignored(app_server) -> None:
    reply = app_server.slack.event(
        {"type": "app_home_opened", "user": "U1", "channel": "DU1", "tab": "messages"}
    )
    assert reply.status == 200
    open_home(app_server, "U1")  # a later Home opening still works
    assert len(home_publishes(app_server, "U1")) == 1


def test_empty_home(app_server) -> None:
    view, home = open_home(app_server, "U9")
    assert home.show_buttons == [] and home.attention == []
    assert any("no open deals" in (b.get("text") or {}).get("text", "") for b in view["blocks"])


# --- many deals ----------------------------------------------------------------------------


def _bulk(app, owner: str, count: int, at: dt.datetime) -> None:
    """`count` open deals of `owner`, spread over the four open stages, created at `at`."""
    from funnelbot import deals

    stages = ("lead", "interest", "proposal", "negotiation")
    actor = deals.Actor(user_id=owner)
    with app.runtime.sessions.begin() as session:
        deals.ensure_workspace(session, TEAM, at)
        for i in range(count):
            deals.create_deal(
                session,
                TEAM,
                actor,
                name=f"Bulk deal {i + 1:03d} " + "x" * 60,
                amount=Decimal(1000 + i),
                stage=deals.find_stage(session, TEAM, stages[i % 4]),
                now=at + dt.timedelta(seconds=i),
            )


@pytest.mark.parametrize("user", ["U1", "UMGR"])
def test_home_stays_within_slacks_limits_with_80_deals(app_server, clock, user) -> None:
    _bulk(app_server, user, 72, T0)  # stalled by LATER
    _bulk(app_server, user, 8, LATER - dt.timedelta(hours=1))
    _bulk(app_server, "U2", 5, T0)
    clock.set(LATER)
    view, home = open_home(app_server, user)
    assert len(view["blocks"]) <= 100
    # No deal is listed twice, and only the viewer's.
    assert len(home.show_buttons) == len(set(home.show_buttons))
    assert set(home.show_buttons) <= set(range(1, 81))
    assert len(home.show_buttons) >= 40
    # The stage headings count every open deal of the viewer, shown or not.
    assert {name: count for name, (count, _) in home.stages.items()} == {
        "Lead": 20,
        "Interest": 20,
        "Proposal": 20,
        "Negotiation": 20,
    }
    # Every stage lists a fair share of its deals, and the view is used up to the limit.
    assert min(len(numbers) for _, numbers in home.stages.values()) >= 10
    assert len(view["blocks"]) >= 95
    # Deals that did not fit are pointed to, not silently dropped.
    if len(home.show_buttons) < 80:
        text = "\n".join(
            t["text"]
            for b in view["blocks"]
            for t in ([b["text"]] if b.get("text") else []) + list(b.get("elements") or [])
            if isinstance(t, dict) and isinstance(t.get("text"), str)
        )
        assert "/deal list" in text
    # What needs the viewer is still first, and bounded.
    assert home.attention_index is not None
    assert home.attention_index < (home.first_stage_index or 0)
    assert 1 <= len(home.attention) <= 10
    if user == "UMGR":
        assert home.team_index is not None
        assert "*Lead*  22" in view["blocks"][home.team_index + 1]["text"]["text"]


def test_home_view_with_fifty_stages_keeps_the_team_part() -> None:
    """A funnel of 50 open stages (the most `funnelbot stages` allows) still fits: the
    team funnel is never cut off, and stages that do not fit are summed up."""
    from funnelbot import blocks
    from funnelbot.i18n import Translator
    from funnelbot.presenters import DealInfo, StageInfo

    now = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
    by_stage = []
    number = 0
    for position in range(1, 51):
        stage = StageInfo(f"s{position}", f"Stage {position}", f"阶段{position}", "open", position)
        deals = []
        for _ in range(3):
            number += 1
            deals.append(
                DealInfo(
                    number,
                    1,
                    f"Deal {number}",
                    Decimal(100),
                    "U1",
                    stage,
                    "open",
                    None,
                    None,
                    None,
                    None,
                    None,
                    now,
                    now,
                )
            )
        by_stage.append((stage.key, stage.name_en, deals, 3))
    attention = [(by_stage[0][2][0], "idle")]
    view = blocks.home_view(
        Translator("en"), attention=attention, by_stage=by_stage, team={"funnel": "*Lead* 1"}
    )
    assert check_view(view) == []
    assert len(view["blocks"]) <= 100
    home = layout_of(view)
    assert home.team_index is not None
    assert view["blocks"][-1]["text"]["text"] == "*Lead* 1"
    assert len(set(home.show_buttons)) == len(home.show_buttons) >= 1
    texts = [e["text"] for b in view["blocks"] if b["type"] == "context" for e in b["elements"]]
    assert any("more deals in further stages" in t for t in texts), texts
