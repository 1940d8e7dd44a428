"""The `stalled-nudges` job (SPEC §4): one DM per rep listing exactly their stalled deals,
with working Advance / Note / Snooze / Lost buttons; once per day; a 72-hour quiet period
per deal; escalation to the managers on the third nudge without any change; each rep
nudged from 09:00 in their own time zone. Every test runs on SQLite and PostgreSQL.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest
from helpers import (
    ADVANCE,
    LOST,
    NOTE,
    V_LOST,
    all_text,
    date_value,
    deal_row,
    moves,
    note_rows,
    send_click,
    state,
    submit,
    text_value,
    wait_response,
    wait_view_open,
)
from jobkit import (
    Clock,
    deal_numbers,
    dms_opened,
    lose,
    move,
    new_deal,
    next_step,
    posts,
    slack_api_calls,
    snooze,
    texts,
    utc,
    win,
    workspace,
)

SNOOZE = "deal_snooze"
V_SNOOZE = "deal_snooze"
DAY = dt.timedelta(days=1)
HOUR = dt.timedelta(hours=1)
T = utc(2026, 11, 17, 9, 30)  # a Tuesday, after 09:00 in UTC


@pytest.fixture
def clock() -> Clock:
    return Clock(T)


@pytest.fixture
def runtime_options(clock: Clock) -> dict[str, Any]:
    return {"clock": clock}


def nudge(app: Any, now: dt.datetime) -> list[str]:
    from funnelbot.jobs import run_job

    return run_job(app.runtime.jobs, "stalled-nudges", now)


def dm_to(app: Any, user: str) -> list[dict[str, Any]]:
    return [c.params for c in posts(app.fake, "D" + user)]


def nudge_buttons(params: dict[str, Any], number: int) -> dict[str, str]:
    """action_id -> value of the buttons drawn for deal #number in a nudge DM."""
    found: dict[str, str] = {}
    for block in params.get("blocks") or []:
        if block.get("type") == "actions" and block.get("block_id") == f"nudge-{number}":
            for element in block["elements"]:
                found[element["action_id"]] = element["value"]
    return found


def test_one_dm_per_rep_listing_exactly_their_stalled_deals(app_server) -> None:
    app = app_server
    today = T.date()
    # U1: stalled: 1 (lead idle 8 d > 7), 3 (proposal idle 20 d > 14), 4 (next step due
    # yesterday, though touched two days ago), 8 (lead idle 7 d + 1 h).
    new_deal(app, "Lead idle 8d", "U1", T - 8 * DAY, amount=1000)  # 1
    new_deal(app, "Interest idle 10d", "U1", T - 10 * DAY, stage="interest")  # 2: fresh (14)
    new_deal(app, "Proposal idle 20d", "U1", T - 20 * DAY, stage="proposal")  # 3
    new_deal(app, "Nego step overdue", "U1", T - 3 * DAY, stage="negotiation")  # 4
    next_step(app, 4, "send contract", today - DAY, T - 2 * DAY)
    new_deal(app, "Snoozed lead", "U1", T - 20 * DAY)  # 5: snoozed
    snooze(app, 5, today + 3 * DAY, T - DAY)
    new_deal(app, "Lost long ago", "U1", T - 40 * DAY)  # 6: closed
    lose(app, 6, T - 30 * DAY)
    new_deal(app, "Won long ago", "U1", T - 40 * DAY, stage="negotiation")  # 7: closed
    win(app, 7, T - 30 * DAY)
    new_deal(app, "Lead just over", "U1", T - 7 * DAY - HOUR)  # 8
    new_deal(app, "Lead just under", "U1", T - 7 * DAY + HOUR)  # 9: fresh
    new_deal(app, "Step due today", "U1", T - DAY, stage="interest")  # 10: due today, not past
    next_step(app, 10, "call", today, T - DAY)
    # U2: 11 stalled (negotiation idle 11 d > 10), 12 fresh (lead idle 6 d).
    new_deal(app, "Nego idle 11d", "U2", T - 11 * DAY, stage="negotiation")  # 11
    new_deal(app, "Lead idle 6d", "U2", T - 6 * DAY)  # 12
    # U3: nothing stalled, so no DM at all.
    new_deal(app, "Fresh", "U3", T - DAY)  # 13
    expected = {"U1": [1, 3, 4, 8], "U2": [11]}

    lines = nudge(app, T)
    assert len(lines) == 2, lines

    assert sorted(dms_opened(app.fake)) == ["U1", "U2"]
    calls = slack_api_calls(app.fake)
    for user, numbers in expected.items():
        [message] = dm_to(app, user)
        # conversations.open came first, then the post to the D… channel it returned
        opened = next(
            i
            for i, c in enumerate(calls)
            if c.method == "conversations.open" and c.params.get("users") == user
        )
        posted = next(
            i
            for i, c in enumerate(calls)
            if c.method == "chat.postMessage" and c.params.get("channel") == "D" + user
        )
        assert opened < posted
        assert sorted(deal_numbers(message)) == numbers, texts(message)
        assert str(len(numbers)) in message["text"]
        for number in numbers:
            row = deal_row(app, number)
            value = f"{number}:{row['version']}"
            drawn = nudge_buttons(message, number)
            wanted = {NOTE, SNOOZE, LOST} | ({ADVANCE} if row["stage"] != "negotiation" else set())
            # negotiation is the last open stage: "Advance" would not close the deal, so
            # the DM offers Note / Snooze / Lost there (won is reached through Lost's sibling
            # buttons on the deal card)
            assert set(drawn) == wanted, (number, drawn)
            assert set(drawn.values()) == {value}, (number, drawn)
    assert dm_to(app, "U3") == []
    # why each deal is listed
    u1 = texts(dm_to(app, "U1")[0])
    assert "no activity for 8 days" in u1
    assert "next step was due" in u1
    # nobody escalated on a first nudge
    assert "UMGR" not in dms_opened(app.fake)


def test_nudge_buttons_work(app_server, clock: Clock) -> None:
    app = app_server
    today = T.date()
    new_deal(app, "Advance me", "U1", T - 8 * DAY)  # 1 lead
    new_deal(app, "Snooze me", "U1", T - 20 * DAY, stage="proposal")  # 2
    new_deal(app, "Lose me", "U1", T - 15 * DAY, stage="interest")  # 3
    new_deal(app, "Leave me", "U1", T - 9 * DAY)  # 4 lead: the control
    nudge(app, T)
    [dm] = dm_to(app, "U1")
    assert sorted(deal_numbers(dm)) == [1, 2, 3, 4]

    # Advance ▸ advances the deal, once: a second click on the same button is stale.
    advance_value = nudge_buttons(dm, 1)[ADVANCE]
    assert advance_value == "1:1"
    _, url, _ = send_click(app, ADVANCE, advance_value, "U1")
    answer = wait_response(app, url)
    assert deal_row(app, 1)["stage"] == "interest"
    assert moves(app, 1) == [(None, "lead"), ("lead", "interest")]
    assert "#1" in all_text(answer)
    _, url, _ = send_click(app, ADVANCE, advance_value, "U1")
    wait_response(app, url)
    assert deal_row(app, 1)["stage"] == "interest"
    assert len(moves(app, 1)) == 2

    # Snooze opens a modal with a date; submitting it sets snoozed_until (+ the reason note).
    snooze_value = nudge_buttons(dm, 2)[SNOOZE]
    _, _, trigger = send_click(app, SNOOZE, snooze_value, "U1")
    view = wait_view_open(app, trigger)
    assert view["callback_id"] == V_SNOOZE
    until = today + 5 * DAY
    reply = submit(
        app,
        V_SNOOZE,
        state(date_value("until", until.isoformat()), text_value("reason", "customer on holiday")),
        "U1",
        metadata=view["private_metadata"],
    )
    assert reply.body.strip() in ("", "{}"), reply
    assert deal_row(app, 2)["snoozed_until"] == until
    assert [n["text"] for n in note_rows(app, 2)] == ["customer on holiday"]

    # Lost opens the lost modal; submitting it closes the deal.
    lost_value = nudge_buttons(dm, 3)[LOST]
    _, _, trigger = send_click(app, LOST, lost_value, "U1")
    view = wait_view_open(app, trigger)
    assert view["callback_id"] == V_LOST
    submit(
        app,
        V_LOST,
        text_value("reason", "budget cut"),
        "U1",
        metadata=view["private_metadata"],
    )
    row = deal_row(app, 3)
    assert (row["status"], row["lost_reason"]) == ("lost", "budget cut")

    # Note opens the note modal (not submitted: #4 stays stalled, the control).
    _, _, trigger = send_click(app, NOTE, nudge_buttons(dm, 4)[NOTE], "U1")
    assert wait_view_open(app, trigger)["callback_id"] == "deal_note"

    # 72 h later: only the untouched #4 (#1 is fresh, #2 snoozed, #3 lost).
    app.fake.reset()
    clock.set(T + 3 * DAY)
    nudge(app, T + 3 * DAY)
    [dm] = dm_to(app, "U1")
    assert deal_numbers(dm) == [4]
    # the day before the snooze ends: nothing (and #4 is in its quiet period)
    app.fake.reset()
    nudge(app, T + 4 * DAY)
    assert dm_to(app, "U1") == []
    # the snooze date itself: #2 is nudged again, drawn for its new version
    app.fake.reset()
    nudge(app, T + 5 * DAY)
    [dm] = dm_to(app, "U1")
    assert deal_numbers(dm) == [2]
    assert nudge_buttons(dm, 2)[SNOOZE] == f"2:{deal_row(app, 2)['version']}"
    assert deal_row(app, 2)["version"] > 1


def test_once_a_day_72h_quiet_period_and_escalation(app_server) -> None:
    app = app_server
    fake = app.fake
    x = new_deal(app, "Xylo", "U1", T - 8 * DAY)  # lead, never touched
    y = new_deal(app, "Yak", "U1", T - 8 * DAY)  # lead, changed after its first nudge
    z = new_deal(app, "Zeta", "U2", T - 20 * DAY, stage="proposal")  # never touched

    nudge(app, T)
    assert sorted(deal_numbers(dm_to(app, "U1")[0])) == [x, y]
    assert deal_numbers(dm_to(app, "U2")[0]) == [z]
    assert "UMGR" not in dms_opened(fake)

    # The same day again: nothing at all is sent.
    fake.reset()
    assert nudge(app, T + 2 * HOUR) == []
    assert slack_api_calls(fake) == []

    # 24 h later: every deal is within 72 h of its last nudge.
    nudge(app, T + DAY)
    assert slack_api_calls(fake) == []
    # U1 changes Yak: a next step due the day after tomorrow (fresh activity, new version)
    next_step(app, y, "demo", (T + 2 * DAY).date(), T + DAY + HOUR)
    nudge(app, T + 2 * DAY)
    assert slack_api_calls(fake) == []

    # 72 h after the first: X and Z for the second time, Y (step now overdue) for the first
    # time since its change. Nobody escalated.
    nudge(app, T + 3 * DAY)
    assert sorted(deal_numbers(dm_to(app, "U1")[0])) == [x, y]
    assert deal_numbers(dm_to(app, "U2")[0]) == [z]
    assert "UMGR" not in dms_opened(fake)
    fake.reset()
    for day in (4, 5):
        nudge(app, T + day * DAY)
    assert slack_api_calls(fake) == []

    # Third nudge without any change since the first: X and Z go to the managers; Y was
    # changed after its first nudge, so this is only its second.
    nudge(app, T + 6 * DAY)
    assert sorted(deal_numbers(dm_to(app, "U1")[0])) == [x, y]
    assert deal_numbers(dm_to(app, "U2")[0]) == [z]
    [escalation] = dm_to(app, "UMGR")
    assert dms_opened(fake).count("UMGR") == 1
    assert sorted(deal_numbers(escalation)) == [x, z]
    assert "<@U1>" in texts(escalation) and "<@U2>" in texts(escalation)
    assert "three times" in escalation["text"]

    # Y's third nudge since its change is escalated; X and Z are not escalated twice.
    fake.reset()
    nudge(app, T + 9 * DAY)
    [escalation] = dm_to(app, "UMGR")
    assert deal_numbers(escalation) == [y]


def test_each_rep_is_nudged_from_9_in_their_own_time_zone(app_server) -> None:
    app = app_server
    fake = app.fake
    fake.users["UTOKYO"] = {"tz": "Asia/Tokyo", "tz_offset": 9 * 3600}
    day = utc(2026, 11, 17)
    tokyo = new_deal(app, "Tokyo deal", "UTOKYO", day - 9 * DAY)
    # stalled (lead: 7 days) from 00:30 UTC on `day`, so a late run the evening before
    # does not nudge it already
    london = new_deal(app, "UTC deal", "UUTC", day - 7 * DAY + dt.timedelta(minutes=30))

    # 23:59 UTC = 08:59 in Tokyo: nobody yet (the UTC deal is not stalled yet either).
    assert nudge(app, day - dt.timedelta(minutes=1)) == []
    assert dm_to(app, "UTOKYO") == [] and dm_to(app, "UUTC") == []

    # 01:00 UTC = 10:00 in Tokyo: the Tokyo rep, but not the UTC rep (01:00 for them).
    nudge(app, day + HOUR)
    assert [deal_numbers(m) for m in dm_to(app, "UTOKYO")] == [[tokyo]]
    assert dm_to(app, "UUTC") == []

    # 08:59 UTC: still nothing for the UTC rep, nothing more for Tokyo.
    nudge(app, day + 9 * HOUR - dt.timedelta(minutes=1))
    assert dm_to(app, "UUTC") == []
    assert len(dm_to(app, "UTOKYO")) == 1

    # 09:00 UTC: the UTC rep.
    nudge(app, day + 9 * HOUR)
    assert [deal_numbers(m) for m in dm_to(app, "UUTC")] == [[london]]
    assert len(dm_to(app, "UTOKYO")) == 1


def test_no_stalled_deals_no_messages(app_server) -> None:
    app = app_server
    workspace(app, T - 30 * DAY)
    new_deal(app, "Fresh", "U1", T - DAY)
    new_deal(app, "Moved", "U1", T - 30 * DAY)
    move(app, 2, "proposal", T - 2 * DAY)
    assert nudge(app, T) == []
    assert slack_api_calls(app.fake) == []


def test_undeliverable_nudge_is_retried_and_does_not_stop_the_others(app_server) -> None:
    app = app_server
    fake = app.fake
    new_deal(app, "Alpha", "U1", T - 8 * DAY)
    new_deal(app, "Beta", "U2", T - 8 * DAY)
    # U1 (first in line) cannot be reached this time.
    fake.fail_next("conversations.open", error="user_disabled")
    lines = nudge(app, T)
    assert any("could not nudge U1" in line for line in lines), lines
    assert dm_to(app, "U1") == []
    assert [deal_numbers(m) for m in dm_to(app, "U2")] == [[2]]

    # An hour later, the same day: U1's nudge goes out; U2 is not nudged twice.
    nudge(app, T + HOUR)
    assert [deal_numbers(m) for m in dm_to(app, "U1")] == [[1]]
    assert len(dm_to(app, "U2")) == 1
    fake.reset()
    assert nudge(app, T + 2 * HOUR) == []
    assert slack_api_calls(fake) == []
