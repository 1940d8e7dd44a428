"""Exit criteria (准出标准, SPEC §2): a checklist a deal must meet before it leaves its
stage forward. Every forward door (`advance`, `move` forward, `won`, the Advance and Won
buttons, a nudge's Advance button) asks for it in a modal first and changes nothing
until every item is ticked; the confirmations are stored (who, when, which item) and
shown on the card. Moving back needs none; a checklist drawn for an older version is
refused. Every test runs on SQLite and PostgreSQL.
"""

from __future__ import annotations

import datetime as dt
import json

import pytest
import sqlalchemy as sa
from helpers import (
    ADVANCE,
    TEAM,
    WON,
    ack_json,
    all_text,
    button_values,
    click,
    create_deal,
    deal_row,
    history_rows,
    moves,
    run_command,
    send_click,
    send_command,
    submit,
    wait_response,
    wait_view_open,
)
from settingskit import (
    V_CRITERIA,
    Clock,
    add_criteria,
    business_snapshot,
    confirmation_rows,
    modal_state,
)

from funnelbot.deals import stages_changed

ITEMS = ["Budget confirmed", "Decision maker identified", "Pain point agreed"]
T0 = dt.datetime(2026, 3, 2, 10, 0, tzinfo=dt.UTC)


@pytest.fixture
def clock() -> Clock:
    return Clock(T0)


@pytest.fixture
def runtime_options(clock: Clock) -> dict:
    return {"clock": clock}


def interest_deal(app, name: str = "Acme 50k", user: str = "U1") -> tuple[int, list[int]]:
    """A deal in Interest, the stage that now carries ITEMS as its exit criteria."""
    number, _ = create_deal(app, f"{name} stage:interest", user)
    ids = add_criteria(app, "interest", ITEMS)
    return number, ids


def checklist(view: dict) -> dict:
    (block,) = [b for b in view["blocks"] if b.get("block_id") == "criteria"]
    return block


def command_opens_checklist(app, text: str, user: str = "U1") -> tuple[dict, str]:
    _, url, trigger = send_command(app, text, user)
    return wait_view_open(app, trigger), url


def tick(app, view: dict, ids: list[int], user: str = "U1") -> dict:
    """Submit the checklist with these items ticked; the ack's JSON."""
    values = modal_state(view, criteria=[str(i) for i in ids])
    reply = submit(app, V_CRITERIA, values, user, metadata=view["private_metadata"])
    return ack_json(reply)


# --- advance asks first ---------------------------------------------------------------------


def test_advance_opens_the_checklist_and_moves_nothing(app_server) -> None:
    number, ids = interest_deal(app_server)
    before = business_snapshot(app_server)
    view, _ = command_opens_checklist(app_server, f"advance #{number}")
    assert view["callback_id"] == V_CRITERIA
    block = checklist(view)
    assert block["type"] == "input" and block["element"]["type"] == "checkboxes"
    options = block["element"]["options"]
    assert [o["text"]["text"] for o in options] == ITEMS
    assert [o["value"] for o in options] == [str(i) for i in ids]
    assert "initial_options" not in block["element"]  # nothing is ticked for the user
    assert "Interest" in all_text({"blocks": view["blocks"]})
    meta = json.loads(view["private_metadata"])
    assert (meta["number"], meta["version"]) == (number, 1)
    # Nothing moved, nothing was confirmed.
    assert business_snapshot(app_server) == before
    assert deal_row(app_server, number)["stage"] == "interest"
    assert confirmation_rows(app_server, number) == []


@pytest.mark.parametrize("ticked", [[], [0], [0, 2]])
def test_an_incomplete_checklist_is_sent_back(app_server, ticked) -> None:
    number, ids = interest_deal(app_server)
    view, _ = command_opens_checklist(app_server, f"advance #{number}")
    before = business_snapshot(app_server)
    ack = tick(app_server, view, [ids[i] for i in ticked])
    assert ack["response_action"] == "errors"
    assert set(ack["errors"]) == {"criteria"}
    assert "every item" in ack["errors"]["criteria"].lower()
    assert business_snapshot(app_server) == before
    assert deal_row(app_server, number)["stage"] == "interest"


def test_a_complete_checklist_advances_and_is_recorded(app_server, clock) -> None:
    number, ids = interest_deal(app_server)
    view, url = command_opens_checklist(app_server, f"advance #{number}")
    clock.set(T0 + dt.timedelta(minutes=5))
    assert tick(app_server, view, ids) == {}
    row = deal_row(app_server, number)
    assert (row["stage"], row["version"]) == ("proposal", 2)
    assert moves(app_server, number)[-1] == ("interest", "proposal")
    assert history_rows(app_server, number)[-1]["by"] == "U1"
    rows = confirmation_rows(app_server, number)
    assert [r["criterion_id"] for r in rows] == ids
    assert [r["text"] for r in rows] == ITEMS
    assert {r["stage"] for r in rows} == {"interest"}
    assert {r["by"] for r in rows} == {"U1"}
    assert {r["at"] for r in rows} == {T0 + dt.timedelta(minutes=5)}
    # The answer (where the command came from) is the card, confirmations on it.
    card = wait_response(app_server, url)
    text = all_text(card)
    assert "Proposal" in text and "Exit criteria confirmed" in text
    for item in ITEMS:
        assert item in text
    # ... and so is the card shown later.
    text = all_text(run_command(app_server, f"show #{number}"))
    assert all(item in text for item in ITEMS)
    # The next stage has no criteria: advancing again needs no checklist.
    run_command(app_server, f"advance #{number}")
    assert deal_row(app_server, number)["stage"] == "negotiation"
    assert len(confirmation_rows(app_server, number)) == 3


def test_unticked_extra_values_do_not_count(app_server) -> None:
    """Ticking ids of other stages' items (a forged payload) does not fill the list."""
    number, ids = interest_deal(app_server)
    other = add_criteria(app_server, "proposal", ["Quote sent"])
    view, _ = command_opens_checklist(app_server, f"advance #{number}")
    ack = tick(app_server, view, [ids[0], ids[1], other[0]])
    assert ack["response_action"] == "errors"
    assert deal_row(app_server, number)["stage"] == "interest"


def test_a_removed_criterion_is_not_asked(app_server) -> None:
    number, ids = interest_deal(app_server)
    with app_server.runtime.engine.begin() as conn:
        conn.execute(
            sa.text("UPDATE exit_criteria SET active = :f WHERE id = :i"), {"f": False, "i": ids[1]}
        )
        stages_changed(conn, [TEAM])
    view, _ = command_opens_checklist(app_server, f"advance #{number}")
    assert [o["value"] for o in checklist(view)["element"]["options"]] == [
        str(ids[0]),
        str(ids[2]),
    ]
    assert tick(app_server, view, [ids[0], ids[2]]) == {}
    assert deal_row(app_server, number)["stage"] == "proposal"
    assert [r["criterion_id"] for r in confirmation_rows(app_server, number)] == [
        ids[0],
        ids[2],
    ]


def test_a_stage_without_criteria_advances_at_once(app_server) -> None:
    number, _ = create_deal(app_server, "Plain")
    add_criteria(app_server, "interest", ITEMS)  # Lead, where the deal is, has none
    _, url, trigger = send_command(app_server, f"advance #{number}")
    assert "Interest" in all_text(wait_response(app_server, url))
    assert deal_row(app_server, number)["stage"] == "interest"
    assert not [
        c for c in app_server.fake.calls_to("views.open") if c.params["trigger_id"] == trigger
    ]


# --- the buttons ----------------------------------------------------------------------------


def test_the_advance_button_asks_the_same(app_server) -> None:
    number, ids = interest_deal(app_server)
    before = business_snapshot(app_server)
    _, url, trigger = send_click(app_server, ADVANCE, f"{number}:1")
    view = wait_view_open(app_server, trigger)
    assert view["callback_id"] == V_CRITERIA
    assert business_snapshot(app_server) == before
    assert tick(app_server, view, ids[:1])["response_action"] == "errors"
    assert tick(app_server, view, ids) == {}
    assert deal_row(app_server, number)["stage"] == "proposal"
    assert len(confirmation_rows(app_server, number)) == 3
    # The card the button was on gets the answer.
    assert "Proposal" in all_text(wait_response(app_server, url))


def test_a_nudges_advance_button_asks_the_same(app_server, clock) -> None:
    from funnelbot import jobs

    number, ids = interest_deal(app_server)
    clock.set(T0 + dt.timedelta(days=20))  # Interest stalls after 14 days
    jobs.run_job(app_server.runtime.jobs, "stalled-nudges", clock())
    dm = app_server.fake.wait_for("chat.postMessage", lambda c: c.params["channel"] == "DU1")
    nudge = dm.params
    values = button_values(nudge, ADVANCE)
    assert values == [f"{number}:1"]
    before = business_snapshot(app_server)
    _, _, trigger = send_click(app_server, ADVANCE, values[0])
    view = wait_view_open(app_server, trigger)
    assert view["callback_id"] == V_CRITERIA
    assert business_snapshot(app_server) == before
    assert tick(app_server, view, ids) == {}
    assert deal_row(app_server, number)["stage"] == "proposal"
    assert [r["by"] for r in confirmation_rows(app_server, number)] == ["U1"] * 3


# --- other forward changes ------------------------------------------------------------------


def test_move_forward_asks_and_then_lands_where_asked(app_server) -> None:
    """`move #n negotiation` from Interest: the checklist, then Negotiation (not the next
    stage)."""
    number, ids = interest_deal(app_server)
    view, _ = command_opens_checklist(app_server, f"move #{number} negotiation")
    assert deal_row(app_server, number)["stage"] == "interest"
    assert tick(app_server, view, ids) == {}
    assert deal_row(app_server, number)["stage"] == "negotiation"
    assert moves(app_server, number)[-1] == ("interest", "negotiation")
    assert len(confirmation_rows(app_server, number)) == 3


@pytest.mark.parametrize("how", ["won command", "move won", "won button"])
def test_winning_is_forward_too(app_server, how) -> None:
    number, ids = interest_deal(app_server)
    if how == "won button":
        _, _, trigger = send_click(app_server, WON, f"{number}:1")
        view = wait_view_open(app_server, trigger)
    else:
        text = f"won #{number}" if how == "won command" else f"move #{number} won"
        view, _ = command_opens_checklist(app_server, text)
    row = deal_row(app_server, number)
    assert (row["stage"], row["status"]) == ("interest", "open")
    assert tick(app_server, view, ids) == {}
    row = deal_row(app_server, number)
    assert (row["stage"], row["status"]) == ("won", "won")
    assert moves(app_server, number)[-1] == ("interest", "won")
    assert len(confirmation_rows(app_server, number)) == 3


def test_moving_back_and_losing_need_no_criteria(app_server) -> None:
    number, _ = create_deal(app_server, "Acme stage:proposal")
    add_criteria(app_server, "proposal", ["Quote sent"])
    answer = run_command(app_server, f"move #{number} interest")
    assert "Interest" in all_text(answer)
    assert deal_row(app_server, number)["stage"] == "interest"
    add_criteria(app_server, "interest", ITEMS)
    run_command(app_server, f"move #{number} lead")
    assert deal_row(app_server, number)["stage"] == "lead"
    # Lost is not forward either.
    run_command(app_server, f"move #{number} interest")
    run_command(app_server, f"lost #{number} no budget")
    row = deal_row(app_server, number)
    assert (row["status"], row["lost_reason"]) == ("lost", "no budget")
    assert confirmation_rows(app_server, number) == []
    assert not app_server.fake.calls_to("views.open")


def test_criteria_are_asked_again_after_coming_back(app_server) -> None:
    """Confirmations belong to one departure: back in the stage, the list is asked again."""
    number, ids = interest_deal(app_server)
    view, _ = command_opens_checklist(app_server, f"advance #{number}")
    assert tick(app_server, view, ids) == {}
    run_command(app_server, f"move #{number} interest")
    view, _ = command_opens_checklist(app_server, f"advance #{number}")
    assert json.loads(view["private_metadata"])["version"] == 3
    assert tick(app_server, view, ids) == {}
    assert len(confirmation_rows(app_server, number)) == 6


# --- stale checklists -----------------------------------------------------------------------


def test_a_stale_checklist_is_refused(app_server) -> None:
    number, ids = interest_deal(app_server)
    view, _ = command_opens_checklist(app_server, f"advance #{number}")
    run_command(app_server, f"note #{number} spoke to the CFO")  # version 2 now
    before = business_snapshot(app_server)
    ack = tick(app_server, view, ids)
    assert ack["response_action"] == "errors"
    (message,) = ack["errors"].values()
    assert "changed" in message
    assert business_snapshot(app_server) == before
    assert deal_row(app_server, number)["stage"] == "interest"
    assert confirmation_rows(app_server, number) == []


def test_a_checklist_for_a_deal_that_moved_meanwhile_is_refused(app_server) -> None:
    number, ids = interest_deal(app_server)
    view, _ = command_opens_checklist(app_server, f"advance #{number}")
    run_command(app_server, f"move #{number} lead")  # elsewhere, meanwhile
    before = business_snapshot(app_server)
    ack = tick(app_server, view, ids)
    assert ack["response_action"] == "errors"
    assert "changed" in next(iter(ack["errors"].values()))
    assert business_snapshot(app_server) == before
    assert deal_row(app_server, number)["stage"] == "lead"


def test_a_double_submission_advances_once(app_server) -> None:
    number, ids = interest_deal(app_server)
    view, _ = command_opens_checklist(app_server, f"advance #{number}")
    assert tick(app_server, view, ids) == {}
    ack = tick(app_server, view, ids)
    assert ack["response_action"] == "errors"
    assert deal_row(app_server, number)["stage"] == "proposal"
    assert len(confirmation_rows(app_server, number)) == 3
    assert len(history_rows(app_server, number)) == 2


def test_a_rep_cannot_confirm_anothers_checklist(app_server) -> None:
    number, ids = interest_deal(app_server)
    view, _ = command_opens_checklist(app_server, f"advance #{number}", "U1")
    before = business_snapshot(app_server)
    ack = tick(app_server, view, ids, user="U2")
    assert ack["response_action"] == "errors"
    assert "<@U1>" in next(iter(ack["errors"].values()))
    assert business_snapshot(app_server) == before


def test_a_manager_confirms_for_the_rep(app_server) -> None:
    number, ids = interest_deal(app_server)
    view, _ = command_opens_checklist(app_server, f"advance #{number}", "UMGR")
    assert tick(app_server, view, ids, user="UMGR") == {}
    assert {r["by"] for r in confirmation_rows(app_server, number)} == {"UMGR"}
    assert history_rows(app_server, number)[-1]["by"] == "UMGR"


def test_checklist_in_chinese(app_server) -> None:
    app_server.fake.users["U1"] = {"locale": "zh-CN"}
    number, ids = interest_deal(app_server)
    view, _ = command_opens_checklist(app_server, f"advance #{number}")
    assert "意向" in all_text({"blocks": view["blocks"]})
    ack = tick(app_server, view, ids[:1])
    assert ack["response_action"] == "errors"
    assert not ack["errors"]["criteria"].isascii()


def test_click_on_a_closed_deal_needs_no_checklist(app_server) -> None:
    number, ids = interest_deal(app_server)
    run_command(app_server, f"lost #{number}")
    answer = click(app_server, ADVANCE, f"{number}:2")
    assert "closed" in all_text(answer)
    assert not app_server.fake.calls_to("views.open")
