"""Deal-card buttons (SPEC §3): a button acts on the deal version it was drawn for; a
stale or double click changes nothing and says so. Modals open only for the drawn
version. Every test runs on SQLite and PostgreSQL.
"""

from __future__ import annotations

import json

from helpers import (
    ADVANCE,
    EDIT,
    LOST,
    NOTE,
    REOPEN,
    SHOW,
    V_EDIT,
    V_LOST,
    V_NOTE,
    WON,
    all_text,
    button_values,
    click,
    click_modal,
    create_deal,
    deal_row,
    header_texts,
    history_rows,
    moves,
    run_command,
    send_click,
    snapshot,
    view_blocks_by_id,
    wait_response,
    wait_view_open,
)


def _is_stale_answer(answer: dict) -> bool:
    text = answer["text"].lower()
    return "nothing changed" in text and "changed since" in text


def test_advance_button_acts_and_redraws_the_card(app_server) -> None:
    create_deal(app_server, '"Acme Corp" 10k')
    answer = click(app_server, ADVANCE, "1:1")
    assert answer["replace_original"] is True
    assert header_texts(answer) == ["#1 Acme Corp"]
    assert "Interest" in answer["text"]
    assert button_values(answer, ADVANCE) == ["1:2"]  # the new card acts on the new version
    row = deal_row(app_server, 1)
    assert (row["stage"], row["version"]) == ("interest", 2)
    assert moves(app_server, 1) == [(None, "lead"), ("lead", "interest")]
    assert history_rows(app_server, 1)[-1]["by"] == "U1"

    answer = click(app_server, ADVANCE, "1:2")
    assert deal_row(app_server, 1)["stage"] == "proposal"
    assert button_values(answer, ADVANCE) == ["1:3"]


def test_won_then_reopen_buttons(app_server) -> None:
    create_deal(app_server, "Acme stage:negotiation")
    answer = click(app_server, WON, "1:1")
    assert answer["replace_original"] is True
    row = deal_row(app_server, 1)
    assert (row["stage"], row["status"]) == ("won", "won")
    assert button_values(answer, REOPEN) == ["1:2"]
    assert button_values(answer, ADVANCE) == [] and button_values(answer, WON) == []

    answer = click(app_server, REOPEN, "1:2")
    assert answer["replace_original"] is True
    row = deal_row(app_server, 1)
    assert (row["stage"], row["status"]) == ("negotiation", "open")
    assert moves(app_server, 1) == [
        (None, "negotiation"),
        ("negotiation", "won"),
        ("won", "negotiation"),
    ]


def test_double_click_changes_the_deal_once(app_server) -> None:
    create_deal(app_server, "Acme")
    first = click(app_server, ADVANCE, "1:1")
    second = click(app_server, ADVANCE, "1:1")
    assert not _is_stale_answer(first)
    assert _is_stale_answer(second)
    assert "#1" in second["text"]
    # the stale answer shows the deal as it is now, with buttons for the current version
    assert "Interest" in all_text(second)
    assert button_values(second, ADVANCE) == ["1:2"]
    row = deal_row(app_server, 1)
    assert (row["stage"], row["version"]) == ("interest", 2)
    assert moves(app_server, 1) == [(None, "lead"), ("lead", "interest")]


def test_double_click_on_won_and_reopen(app_server) -> None:
    create_deal(app_server, "Acme")
    click(app_server, WON, "1:1")
    assert _is_stale_answer(click(app_server, WON, "1:1"))
    click(app_server, REOPEN, "1:2")
    assert _is_stale_answer(click(app_server, REOPEN, "1:2"))
    assert moves(app_server, 1) == [(None, "lead"), ("lead", "won"), ("won", "lead")]
    assert deal_row(app_server, 1)["status"] == "open"


def test_button_drawn_before_a_text_command_is_stale(app_server) -> None:
    create_deal(app_server, "Acme")
    run_command(app_server, "advance #1")  # version 2 now
    before = snapshot(app_server)
    answer = click(app_server, WON, "1:1")
    assert _is_stale_answer(answer)
    assert snapshot(app_server) == before
    assert deal_row(app_server, 1)["status"] == "open"


def test_lost_button_opens_the_lost_modal(app_server) -> None:
    create_deal(app_server, '"Acme Corp"')
    _, url, trigger = send_click(app_server, LOST, "1:1")
    view = wait_view_open(app_server, trigger)
    assert view["callback_id"] == V_LOST
    meta = json.loads(view["private_metadata"])
    assert (meta["number"], meta["version"], meta["response_url"]) == (1, 1, url)
    assert "reason" in view_blocks_by_id(view)
    assert deal_row(app_server, 1)["status"] == "open"  # opening changes nothing


def test_note_button_opens_the_note_modal(app_server) -> None:
    create_deal(app_server, '"Acme Corp"')
    view = click_modal(app_server, NOTE, "1:1")
    assert view["callback_id"] == V_NOTE
    meta = json.loads(view["private_metadata"])
    assert (meta["number"], meta["version"]) == (1, 1)
    assert "note" in view_blocks_by_id(view)


def test_edit_button_opens_the_edit_modal_filled_in(app_server) -> None:
    create_deal(app_server, '"Acme Corp" 12,500 source:fair close:2027-01-31')
    view = click_modal(app_server, EDIT, "1:1")
    assert view["callback_id"] == V_EDIT
    by_id = view_blocks_by_id(view)
    assert by_id["name"]["element"]["initial_value"] == "Acme Corp"
    assert by_id["source"]["element"]["initial_value"] == "fair"
    assert by_id["close"]["element"]["initial_date"] == "2027-01-31"
    assert json.loads(view["private_metadata"])["version"] == 1


def test_modal_buttons_refuse_stale_versions(app_server) -> None:
    create_deal(app_server, "Acme")
    run_command(app_server, "advance #1")  # version 2: every 1:1 button is stale
    for action in (LOST, NOTE, EDIT):
        _, url, trigger = send_click(app_server, action, "1:1")
        answer = wait_response(app_server, url)
        assert _is_stale_answer(answer), action
        opened = [
            c
            for c in app_server.fake.calls_to("views.open")
            if c.params.get("trigger_id") == trigger
        ]
        assert opened == [], action
    row = deal_row(app_server, 1)
    assert (row["stage"], row["status"], row["version"]) == ("interest", "open", 2)


def test_show_button(app_server) -> None:
    create_deal(app_server, '"Acme Corp" 5k')
    run_command(app_server, "note #1 first call went well")
    answer = click(app_server, SHOW, "1:1")  # SHOW is read-only: any version shows the deal
    assert header_texts(answer) == ["#1 Acme Corp"]
    assert "first call went well" in all_text(answer)
    assert button_values(answer, ADVANCE) == ["1:2"]


def test_buttons_of_someone_elses_deal_are_refused(app_server) -> None:
    create_deal(app_server, "Acme", user="U1")
    before = snapshot(app_server)
    answer = click(app_server, ADVANCE, "1:1", user="U2")
    assert "U1" in answer["text"]
    assert snapshot(app_server) == before
    _, url, trigger = send_click(app_server, LOST, "1:1", user="U2")
    assert "U1" in wait_response(app_server, url)["text"]
    assert not [
        c for c in app_server.fake.calls_to("views.open") if c.params.get("trigger_id") == trigger
    ]
    assert snapshot(app_server) == before
