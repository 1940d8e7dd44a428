"""`/funnel settings` (SPEC §3, §7, §8): only admins open and save it; the modal starts
from the effective configuration; saved values are validated, stored in
`workspaces.settings`, win over the environment at once, and move the weekly report's
slot in a running scheduler. Every test runs on SQLite and PostgreSQL.
"""

from __future__ import annotations

import datetime as dt
import json
from zoneinfo import ZoneInfo

import pytest
import sqlalchemy as sa
from fakeslack import check_view
from helpers import (
    ADVANCE,
    all_text,
    click,
    create_deal,
    deal_row,
    history_rows,
    mrkdwn_texts,
    run_command,
    send_command,
    view_blocks_by_id,
    wait_response,
)
from settingskit import (
    V_SETTINGS,
    business_snapshot,
    funnel,
    modal_state,
    no_view_opened,
    open_settings,
    save_settings,
    stored_settings,
    submit_settings,
)

# --- who may open it --------------------------------------------------------------------


@pytest.mark.parametrize("user", ["U1", "UMGR"])
def test_non_admin_is_refused_and_told_who_can(app_server, user) -> None:
    _, url, trigger = send_command(app_server, "settings", user, command="/funnel")
    answer = wait_response(app_server, url)
    assert answer["response_type"] == "ephemeral"
    text = all_text(answer)
    assert "admin" in text.lower()
    # The admins are named as real mentions (mrkdwn), not as escaped text.
    assert any("<@UADMIN>" in t for t in mrkdwn_texts(answer)), answer
    assert "&lt;@" not in text
    assert no_view_opened(app_server, trigger)
    assert stored_settings(app_server) in (None, {})


@pytest.mark.parametrize("settings_overrides", [{"admins": frozenset()}])
def test_refusal_without_any_admin_points_to_slack_admins(app_server) -> None:
    answer = funnel(app_server, "settings", "U1")
    assert "Slack workspace admin" in all_text(answer)


def test_refusal_in_chinese_for_a_chinese_user(app_server) -> None:
    app_server.fake.users["U8"] = {"locale": "zh-CN"}
    answer = funnel(app_server, "settings", "U8")
    text = all_text(answer)
    assert "管理员" in text and "<@UADMIN>" in text


def _initial(view: dict, block_id: str):
    element = view_blocks_by_id(view)[block_id]["element"]
    for key in (
        "initial_option",
        "initial_value",
        "initial_time",
        "initial_users",
        "initial_conversation",
    ):
        if key in element:
            value = element[key]
            return value["value"] if key == "initial_option" else value
    return None


def test_admin_gets_the_modal_prefilled_from_the_environment(app_server) -> None:
    view, _ = open_settings(app_server, "UADMIN")
    assert view["callback_id"] == V_SETTINGS
    assert check_view(view) == []
    ids = view_blocks_by_id(view)
    for block_id in (
        "report_channel",
        "weekly_day",
        "weekly_time",
        "nudge_hour",
        "timezone",
        "language",
        "currency",
        "managers",
        "manager_group",
    ):
        assert ids[block_id]["type"] == "input", block_id
    assert _initial(view, "weekly_day") == "mon"
    assert _initial(view, "weekly_time") == "09:00"
    assert _initial(view, "nudge_hour") == "9"
    assert _initial(view, "timezone") == "UTC"
    assert _initial(view, "language") == "en"
    assert _initial(view, "currency") == "USD"
    assert _initial(view, "managers") == ["UMGR"]
    assert _initial(view, "report_channel") is None
    assert _initial(view, "manager_group") is None
    # Every weekday and every hour is offered; the labels are in the admin's language.
    days = ids["weekly_day"]["element"]["options"]
    assert [o["value"] for o in days] == ["mon", "tue", "wed", "thu", "fri", "sat", "sun"]
    assert days[4]["text"]["text"] == "Friday"
    assert len(ids["nudge_hour"]["element"]["options"]) == 24
    assert {o["value"] for o in ids["language"]["element"]["options"]} == {"en", "zh"}


@pytest.mark.parametrize(
    "settings_overrides",
    [
        {
            "timezone": "Europe/Berlin",
            "language": "zh",
            "currency": "EUR",
            "report_channel": "C0ENV",
            "managers": frozenset({"UM1", "UM2"}),
        }
    ],
)
def test_modal_prefill_follows_other_environment_values(app_server) -> None:
    view, _ = open_settings(app_server, "UADMIN")
    assert _initial(view, "timezone") == "Europe/Berlin"
    assert _initial(view, "language") == "zh"
    assert _initial(view, "currency") == "EUR"
    assert _initial(view, "report_channel") == "C0ENV"
    assert _initial(view, "managers") == ["UM1", "UM2"]


@pytest.mark.parametrize("flag", ["is_admin", "is_owner"])
def test_slack_workspace_admin_can_open_settings(app_server, flag) -> None:
    app_server.fake.users["UWSADM"] = {flag: True}
    view, _ = open_settings(app_server, "UWSADM")
    assert view["callback_id"] == V_SETTINGS
    assert _initial(view, "currency") == "USD"
    saved = save_settings(app_server, "UWSADM", currency="EUR")
    assert saved.ack == {}
    assert stored_settings(app_server)["currency"] == "EUR"


# --- saving -----------------------------------------------------------------------------

EVERYTHING = {
    "report_channel": "C0REPORT",
    "weekly_day": "fri",
    "weekly_time": "16:30",
    "nudge_hour": "8",
    "timezone": "Asia/Shanghai",
    "language": "zh",
    "currency": "cny",
    "managers": ["UMGR", "UNEW"],
    "manager_group": "S1",
}


def test_valid_values_are_stored_and_confirmed(app_server) -> None:
    saved = save_settings(app_server, "UADMIN", **EVERYTHING)
    assert saved.ack == {}, saved.ack
    stored = stored_settings(app_server)
    assert stored == {
        "report_channel": "C0REPORT",
        "weekly_day": "fri",
        "weekly_time": "16:30",
        "nudge_hour": 8,
        "timezone": "Asia/Shanghai",
        "language": "zh",
        "currency": "CNY",
        "managers": ["UMGR", "UNEW"],
        "manager_group": "S1",
    }
    # The admin's Slack is English: the confirmation is too, and repeats the schedule.
    assert saved.answer is not None
    assert saved.answer["response_type"] == "ephemeral"
    text = all_text(saved.answer)
    assert "Settings saved" in text
    assert "Friday" in text and "16:30" in text and "Asia/Shanghai" in text and "08:00" in text

    # Opening the modal again shows what was stored.
    view, _ = open_settings(app_server, "UADMIN")
    assert _initial(view, "report_channel") == "C0REPORT"
    assert _initial(view, "weekly_day") == "fri"
    assert _initial(view, "weekly_time") == "16:30"
    assert _initial(view, "nudge_hour") == "8"
    assert _initial(view, "timezone") == "Asia/Shanghai"
    assert _initial(view, "language") == "zh"
    assert _initial(view, "currency") == "CNY"
    assert _initial(view, "managers") == ["UMGR", "UNEW"]
    assert _initial(view, "manager_group") == "S1"


def test_saving_again_replaces_and_clears_optional_values(app_server) -> None:
    assert save_settings(app_server, "UADMIN", **EVERYTHING).ack == {}
    saved = save_settings(
        app_server, "UADMIN", report_channel=None, manager_group="", managers=[], weekly_day="tue"
    )
    assert saved.ack == {}
    stored = stored_settings(app_server)
    assert stored["weekly_day"] == "tue"
    assert stored["timezone"] == "Asia/Shanghai"  # kept as it was shown
    for cleared in ("report_channel", "manager_group"):
        assert cleared not in stored, stored
    assert stored["managers"] == []  # "no managers" is a choice that wins too


@pytest.mark.parametrize(
    ("changes", "block_ids"),
    [
        ({"timezone": "Mars/Olympus_Mons"}, {"timezone"}),
        ({"timezone": "../../etc/passwd"}, {"timezone"}),
        ({"currency": "XYZ"}, {"currency"}),
        ({"currency": "US"}, {"currency"}),
        ({"currency": "12$"}, {"currency"}),
        ({"weekly_time": "25:00"}, {"weekly_time"}),
        ({"weekly_time": "9am"}, {"weekly_time"}),
        ({"weekly_day": "someday"}, {"weekly_day"}),
        ({"language": "fr"}, {"language"}),
        (
            {"timezone": "Nowhere/City", "currency": "ABC", "weekly_time": "24:61"},
            {"timezone", "currency", "weekly_time"},
        ),
    ],
)
def test_invalid_values_are_shown_beside_their_fields_and_nothing_is_stored(
    app_server, changes, block_ids
) -> None:
    create_deal(app_server, "Acme 5k")  # the workspace exists; its settings stay empty
    before = business_snapshot(app_server)
    good = {k: v for k, v in EVERYTHING.items() if k not in changes}
    saved = save_settings(app_server, "UADMIN", **good, **changes)
    assert set(saved.errors) == block_ids, saved.ack
    for block_id in block_ids:
        assert saved.errors[block_id].strip(), block_id
    # Every error names a block that exists in the modal (Slack rejects others).
    assert set(saved.errors) <= set(view_blocks_by_id(saved.view))
    assert business_snapshot(app_server) == before
    assert stored_settings(app_server) == {}


def test_error_messages_say_what_is_wrong(app_server) -> None:
    saved = save_settings(
        app_server, "UADMIN", timezone="Mars/Base", currency="XYZ", weekly_time="25:00"
    )
    errors = saved.errors
    assert "time zone" in errors["timezone"] and "Asia/Shanghai" in errors["timezone"]
    assert "currency" in errors["currency"].lower() and "USD" in errors["currency"]
    assert "HH:MM" in errors["weekly_time"]


def test_a_forged_submission_by_a_non_admin_is_refused(app_server) -> None:
    view, _ = open_settings(app_server, "UADMIN")  # a valid modal, submitted by someone else
    before = business_snapshot(app_server)
    ack = submit_settings(
        app_server, modal_state(view, currency="EUR"), "U1", view["private_metadata"]
    )
    assert ack["response_action"] == "errors"
    (message,) = ack["errors"].values()
    assert "admin" in message.lower()
    assert business_snapshot(app_server) == before
    assert not (stored_settings(app_server) or {}).get("currency")


# --- stored values win over the environment ---------------------------------------------


def test_stored_language_and_currency_win_over_the_environment(app_server) -> None:
    app_server.fake.users["U1"] = {"locale": None}  # Slack does not say
    app_server.fake.users["U2"] = {"locale": "en-US"}
    number, before = create_deal(app_server, "Acme 50000", "U1")
    assert "$50,000" in all_text(before)  # the environment: en, USD

    assert save_settings(app_server, "UADMIN", language="zh", currency="CNY").ack == {}

    card = run_command(app_server, f"show #{number}", "U1")
    text = all_text(card)
    assert "¥50,000" in text and "$" not in text
    assert "线索" in text  # the stage in Chinese: the workspace default is now zh
    # Someone whose Slack is in English still gets English, in the stored currency.
    card = run_command(app_server, f"show #{number}", "U2")
    text = all_text(card)
    assert "Lead" in text and "¥50,000" in text and "$" not in text
    # Errors follow the same rule.
    assert "没有" in all_text(run_command(app_server, "show #999", "U1"))


@pytest.mark.parametrize("settings_overrides", [{"language": "zh", "currency": "CNY"}])
def test_stored_english_wins_over_a_chinese_environment(app_server) -> None:
    app_server.fake.users["U1"] = {"locale": None}
    create_deal(app_server, "Acme 50000", "U1")
    assert "¥50,000" in all_text(run_command(app_server, "show #1", "U1"))
    assert save_settings(app_server, "UADMIN", language="en", currency="USD").ack == {}
    text = all_text(run_command(app_server, "show #1", "U1"))
    assert "$50,000" in text and "Lead" in text


def test_stored_timezone_decides_today(app_server) -> None:
    """`/deal next … due:today` is the workspace's today once a time zone is stored."""
    assert save_settings(app_server, "UADMIN", timezone="Pacific/Kiritimati").ack == {}
    create_deal(app_server, "Acme")
    run_command(app_server, "next #1 call back due:today")
    expected = dt.datetime.now(ZoneInfo("Pacific/Kiritimati")).date()
    assert deal_row(app_server, 1)["next_step_due"] == expected


def test_a_manager_added_in_settings_can_change_anothers_deal(app_server) -> None:
    number, _ = create_deal(app_server, "Acme 5k", "U1")
    refused = run_command(app_server, f"advance #{number}", "UNEW")
    assert "<@U1>" in all_text(refused)
    assert deal_row(app_server, number)["stage"] == "lead"

    assert save_settings(app_server, "UADMIN", managers=["UMGR", "UNEW"]).ack == {}
    answer = run_command(app_server, f"advance #{number}", "UNEW")
    assert "Interest" in all_text(answer)
    assert deal_row(app_server, number)["stage"] == "interest"
    assert history_rows(app_server, number)[-1]["by"] == "UNEW"
    # The environment's manager, kept in the list, still is one.
    click(app_server, ADVANCE, f"{number}:2", "UMGR")
    assert deal_row(app_server, number)["stage"] == "proposal"


def test_removing_a_manager_in_settings_sticks(app_server) -> None:
    """The modal shows the environment's managers; taking one out there takes effect."""
    number, _ = create_deal(app_server, "Acme 5k", "U1")
    assert save_settings(app_server, "UADMIN", managers=["UNEW"]).ack == {}
    assert stored_settings(app_server)["managers"] == ["UNEW"]
    assert "<@U1>" in all_text(run_command(app_server, f"advance #{number}", "UMGR"))
    assert deal_row(app_server, number)["stage"] == "lead"
    view, _ = open_settings(app_server, "UADMIN")
    assert _initial(view, "managers") == ["UNEW"]
    # No managers at all is a choice too.
    assert save_settings(app_server, "UADMIN", managers=[]).ack == {}
    view, _ = open_settings(app_server, "UADMIN")
    assert _initial(view, "managers") is None
    assert "<@U1>" in all_text(run_command(app_server, f"advance #{number}", "UNEW"))
    assert deal_row(app_server, number)["stage"] == "lead"


def test_settings_json_survives_other_keys(app_server) -> None:
    """Values stored by other parts of the app (e.g. the report link) are kept."""
    create_deal(app_server, "Acme")
    with app_server.runtime.engine.begin() as conn:
        conn.execute(
            sa.text("UPDATE workspaces SET settings = :s WHERE team_id = 'T0TEST'"),
            {"s": json.dumps({"last_report_link": "https://example.com/r"})},
        )
    app_server.runtime.services.configs.forget("T0TEST")
    assert save_settings(app_server, "UADMIN", currency="EUR").ack == {}
    stored = stored_settings(app_server)
    assert stored["last_report_link"] == "https://example.com/r"
    assert stored["currency"] == "EUR"


# --- the scheduler follows the saved schedule -----------------------------------------------


def _next_slot(now: dt.datetime, weekday: int, hour: int, minute: int, zone: str) -> dt.datetime:
    local = now.astimezone(ZoneInfo(zone))
    day = local.date() + dt.timedelta(days=(weekday - local.weekday()) % 7)
    slot = dt.datetime.combine(day, dt.time(hour, minute), ZoneInfo(zone))
    return slot if slot > local else slot + dt.timedelta(days=7)


@pytest.mark.parametrize("settings_overrides", [{"scheduler_enabled": True}])
def test_saved_schedule_moves_the_weekly_report(app_server) -> None:
    runtime = app_server.runtime
    runtime.start_scheduler()
    try:
        assert runtime.scheduler is not None
        before = runtime.scheduler.next_runs()["weekly-report"]
        now = dt.datetime.now(dt.UTC)
        assert before == _next_slot(now, 0, 9, 0, "UTC")

        saved = save_settings(
            app_server, "UADMIN", weekly_day="fri", weekly_time="16:30", timezone="Asia/Shanghai"
        )
        assert saved.ack == {}
        after = runtime.scheduler.next_runs()["weekly-report"]
        expected = _next_slot(dt.datetime.now(dt.UTC), 4, 16, 30, "Asia/Shanghai")
        assert after == expected
        local = after.astimezone(ZoneInfo("Asia/Shanghai"))
        assert (local.weekday(), local.hour, local.minute) == (4, 16, 30)
        # The other jobs keep running.
        runs = runtime.scheduler.next_runs()
        assert runs["reminders"] is not None and runs["stalled-nudges"] is not None
    finally:
        runtime.scheduler.stop()
        runtime.scheduler = None


@pytest.mark.parametrize("settings_overrides", [{"scheduler_enabled": True}])
def test_a_scheduler_started_later_uses_the_stored_schedule(app_server) -> None:
    saved = save_settings(
        app_server, "UADMIN", weekly_day="wed", weekly_time="07:15", timezone="America/New_York"
    )
    assert saved.ack == {}
    runtime = app_server.runtime
    runtime.start_scheduler()
    try:
        runs = runtime.scheduler.next_runs()
        expected = _next_slot(dt.datetime.now(dt.UTC), 2, 7, 15, "America/New_York")
        assert runs["weekly-report"] == expected
    finally:
        runtime.scheduler.stop()
        runtime.scheduler = None
