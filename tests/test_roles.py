"""Who may change a deal (SPEC §8): its owner, a manager or an admin; nobody else, by any
door (text command, button, modal submission). A refusal names the owner and says who
else can, and changes nothing. Managers come from the environment, from `/funnel
settings` and from a Slack user group; admins from the environment and from Slack's own
workspace admins. Only admins open settings. Every test runs on SQLite and PostgreSQL.
"""

from __future__ import annotations

import pytest
from helpers import (
    ADVANCE,
    EDIT,
    LOST,
    NOTE,
    REOPEN,
    V_EDIT,
    V_LOST,
    V_NOTE,
    WON,
    ack_json,
    all_text,
    click,
    create_deal,
    date_value,
    deal_row,
    history_rows,
    mrkdwn_texts,
    note_rows,
    run_command,
    send_click,
    send_command,
    state,
    submit,
    text_value,
    wait_response,
)
from settingskit import (
    SNOOZE,
    V_CRITERIA,
    V_SETTINGS,
    V_SNOOZE,
    business_snapshot,
    funnel,
    no_view_opened,
    save_settings,
)

OWNER, REP = "U1", "U2"


def _deal(app, name: str = "Acme 50k", owner: str = OWNER) -> int:
    number, _ = create_deal(app, name, owner)
    return number


def assert_refused(message: dict, number: int, owner: str = OWNER) -> None:
    """The refusal names the owner as a mention and says managers and admins can."""
    text = all_text(message)
    assert any(f"<@{owner}>" in t for t in mrkdwn_texts(message)) or f"<@{owner}>" in (
        message.get("text") or ""
    ), message
    assert f"#{number}" in text
    assert "manager" in text and "admin" in text, text
    assert "&lt;@" not in text


def assert_refused_text(text: str, number: int, owner: str = OWNER) -> None:
    assert f"<@{owner}>" in text and f"#{number}" in text, text
    assert "manager" in text and "admin" in text, text


# --- a rep cannot change a colleague's deal ---------------------------------------------------

TEXT_COMMANDS = [
    "advance #{n}",
    "move #{n} proposal",
    "move #{n} won",
    "won #{n}",
    "lost #{n} too expensive",
    "note #{n} I was here",
    "next #{n} call them due:2030-01-01",
    "assign #{n} <@U2|bob>",
    "edit #{n}",
]


def test_rep_cannot_change_anothers_deal_by_text_command(app_server) -> None:
    number = _deal(app_server)
    before = business_snapshot(app_server)
    for template in TEXT_COMMANDS:
        text = template.format(n=number)
        _, url, trigger = send_command(app_server, text, REP)
        answer = wait_response(app_server, url)
        assert answer["response_type"] == "ephemeral"
        assert_refused(answer, number)
        assert no_view_opened(app_server, trigger, wait=0), text
    assert business_snapshot(app_server) == before
    row = deal_row(app_server, number)
    assert (row["stage"], row["status"], row["owner_id"], row["version"]) == (
        "lead",
        "open",
        OWNER,
        1,
    )
    assert note_rows(app_server, number) == []


def test_rep_cannot_reopen_anothers_closed_deal(app_server) -> None:
    number = _deal(app_server)
    run_command(app_server, f"won #{number}", OWNER)
    before = business_snapshot(app_server)
    assert_refused(run_command(app_server, f"reopen #{number}", REP), number)
    assert_refused(click(app_server, REOPEN, f"{number}:2", REP), number)
    assert business_snapshot(app_server) == before
    assert deal_row(app_server, number)["status"] == "won"


def test_refusal_by_name_prefix_too(app_server) -> None:
    number = _deal(app_server, '"Globex Corp" 5k')
    assert_refused(run_command(app_server, "advance globex", REP), number)
    assert deal_row(app_server, number)["stage"] == "lead"


@pytest.mark.parametrize("action", [ADVANCE, WON])
def test_rep_cannot_change_anothers_deal_by_button(app_server, action) -> None:
    number = _deal(app_server)
    before = business_snapshot(app_server)
    answer = click(app_server, action, f"{number}:1", REP)
    assert_refused(answer, number)
    assert business_snapshot(app_server) == before


@pytest.mark.parametrize("action", [LOST, NOTE, EDIT, SNOOZE])
def test_rep_cannot_open_a_change_modal_on_anothers_deal(app_server, action) -> None:
    number = _deal(app_server)
    before = business_snapshot(app_server)
    _, url, trigger = send_click(app_server, action, f"{number}:1", REP)
    assert_refused(wait_response(app_server, url), number)
    assert no_view_opened(app_server, trigger)
    assert business_snapshot(app_server) == before


def _submissions() -> list[tuple[str, dict]]:
    """Each change modal's callback id and a valid state for it."""
    return [
        (
            V_EDIT,
            state(
                text_value("name", "Hijacked"),
                text_value("amount", "1"),
                text_value("source", None),
                date_value("close", None),
                text_value("next_step", None),
                date_value("next_due", None),
            ),
        ),
        (V_NOTE, text_value("note", "sneaky note")),
        (V_LOST, text_value("reason", "because")),
        (V_SNOOZE, state(date_value("until", "2099-01-01"), text_value("reason", None))),
        (V_CRITERIA, {"criteria": {"criteria": {"type": "checkboxes", "selected_options": []}}}),
    ]


def test_rep_cannot_change_anothers_deal_by_modal_submission(app_server) -> None:
    """A modal opened by someone who may (or forged) is refused when a rep submits it."""
    number = _deal(app_server)
    before = business_snapshot(app_server)
    url = app_server.fake.response_url()
    for callback_id, values in _submissions():
        meta = {"number": number, "version": 1, "response_url": url}
        reply = submit(app_server, callback_id, values, REP, metadata=meta)
        ack = ack_json(reply)
        assert ack.get("response_action") == "errors", (callback_id, ack)
        (message,) = ack["errors"].values()
        assert_refused_text(message, number)
        assert set(ack["errors"]) <= set(values), (callback_id, ack)
    assert business_snapshot(app_server) == before
    assert deal_row(app_server, number)["name"] == "Acme"


# --- who can ----------------------------------------------------------------------------------


def _make_role(app, who: str) -> None:
    """Turn `who` into a manager or admin the way the workspace would."""
    if who == "UNEW":  # a manager named in /funnel settings
        assert save_settings(app, "UADMIN", managers=["UNEW"]).ack == {}
    elif who == "UGRP":  # a member of the manager user group named in settings
        app.fake.usergroups = {"S1": ["UGRP", "UOTHER"]}
        assert save_settings(app, "UADMIN", manager_group="S1").ack == {}
    elif who == "UWSADM":  # a Slack workspace admin
        app.fake.users["UWSADM"] = {"is_admin": True}
    elif who == "UOWNER":  # the Slack workspace owner
        app.fake.users["UOWNER"] = {"is_owner": True}


ROLES = ["UMGR", "UNEW", "UGRP", "UADMIN", "UWSADM", "UOWNER"]


@pytest.mark.parametrize("who", ROLES)
def test_managers_and_admins_can_change_any_deal(app_server, who) -> None:
    _make_role(app_server, who)
    number = _deal(app_server)
    answer = run_command(app_server, f"advance #{number}", who)
    assert "Interest" in all_text(answer), all_text(answer)
    run_command(app_server, f"note #{number} checked in", who)
    click(app_server, ADVANCE, f"{number}:3", who)
    assert deal_row(app_server, number)["stage"] == "proposal"
    # A modal submission too: the Lost modal, for the version now shown.
    url = app_server.fake.response_url()
    reply = submit(
        app_server,
        V_LOST,
        text_value("reason", "budget cut"),
        who,
        metadata={"number": number, "version": 4, "response_url": url},
    )
    assert ack_json(reply) == {}
    row = deal_row(app_server, number)
    assert (row["status"], row["lost_reason"]) == ("lost", "budget cut")
    assert {r["by"] for r in history_rows(app_server, number)[1:]} == {who}
    assert [n["author"] for n in note_rows(app_server, number)] == [who]
    # Reassigning is theirs to do as well.
    run_command(app_server, f"reopen #{number}", who)
    run_command(app_server, f"assign #{number} <@U3|carol>", who)
    assert deal_row(app_server, number)["owner_id"] == "U3"


def test_owner_can_change_own_deal_and_loses_it_when_reassigned(app_server) -> None:
    number = _deal(app_server)
    run_command(app_server, f"assign #{number} <@{REP}|bob>", OWNER)
    assert deal_row(app_server, number)["owner_id"] == REP
    # The new owner may change it; the old one no longer may.
    run_command(app_server, f"advance #{number}", REP)
    assert deal_row(app_server, number)["stage"] == "interest"
    assert_refused(run_command(app_server, f"advance #{number}", OWNER), number, owner=REP)
    assert deal_row(app_server, number)["stage"] == "interest"


def test_an_unknown_manager_group_makes_nobody_a_manager(app_server) -> None:
    app_server.fake.usergroups = {}
    assert save_settings(app_server, "UADMIN", manager_group="S404").ack == {}
    number = _deal(app_server)
    assert_refused(run_command(app_server, f"advance #{number}", "UGRP"), number)
    assert deal_row(app_server, number)["stage"] == "lead"


def test_a_group_member_who_is_not_in_the_group_is_a_rep(app_server) -> None:
    app_server.fake.usergroups = {"S1": ["UGRP"]}
    assert save_settings(app_server, "UADMIN", manager_group="S1").ack == {}
    number = _deal(app_server)
    assert_refused(run_command(app_server, f"won #{number}", REP), number)
    run_command(app_server, f"won #{number}", "UGRP")
    assert deal_row(app_server, number)["status"] == "won"


def test_slack_admin_flag_false_is_a_rep(app_server) -> None:
    app_server.fake.users["UPLAIN"] = {"is_admin": False, "is_owner": False}
    number = _deal(app_server)
    assert_refused(run_command(app_server, f"advance #{number}", "UPLAIN"), number)


# --- only admins change settings -------------------------------------------------------------


@pytest.mark.parametrize(
    ("who", "allowed"),
    [
        ("U1", False),
        ("UMGR", False),
        ("UGRP", False),
        ("UNEW", False),
        ("UADMIN", True),
        ("UWSADM", True),
    ],
)
def test_only_admins_open_settings(app_server, who, allowed) -> None:
    _make_role(app_server, who)
    _, url, trigger = send_command(app_server, "settings", who, command="/funnel")
    if allowed:
        view = app_server.fake.wait_for(
            "views.open", lambda c: c.params.get("trigger_id") == trigger
        ).params["view"]
        assert view["callback_id"] == V_SETTINGS
    else:
        answer = wait_response(app_server, url)
        assert "<@UADMIN>" in all_text(answer)
        assert no_view_opened(app_server, trigger)


def test_settings_admins_from_the_environment_are_named_in_order(app_server) -> None:
    answer = funnel(app_server, "settings", "UMGR")
    assert any("<@UADMIN>" in t for t in mrkdwn_texts(answer))
