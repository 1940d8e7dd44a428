"""Modal submissions (New deal, Edit, Note, Lost) as Slack sends them: view_submission
payloads whose state values have Slack's element shapes. Field errors come back in the
HTTP response (`response_action: errors`) and change nothing. Every test runs on SQLite
and PostgreSQL.
"""

from __future__ import annotations

import datetime as dt
import json
from decimal import Decimal
from typing import Any

import pytest
from helpers import (
    LOST,
    NOTE,
    V_EDIT,
    V_LOST,
    V_NEW,
    V_NOTE,
    ack_json,
    all_text,
    button_values,
    click_modal,
    command_modal,
    create_deal,
    date_value,
    deal_count,
    deal_row,
    header_texts,
    moves,
    note_rows,
    run_command,
    select_value,
    send_command,
    snapshot,
    state,
    submit,
    text_value,
    user_value,
    wait_response,
    wait_view_open,
)


def _fill(view: dict[str, Any], answers: dict[str, Any]) -> dict[str, Any]:
    """State values for a view Slack drew: each input's block id and action id as drawn,
    with an answer shaped like that element's type (None: left empty)."""
    values: dict[str, Any] = {}
    for block in view["blocks"]:
        if block.get("type") != "input":
            continue
        element = block["element"]
        answer = answers.get(block["block_id"])
        kind = element["type"]
        if kind == "plain_text_input":
            shaped = {"type": kind, "value": answer}
        elif kind == "users_select":
            shaped = {"type": kind, "selected_user": answer}
        elif kind == "static_select":
            option = next((o for o in element["options"] if o["value"] == answer), None)
            shaped = {"type": kind, "selected_option": option}
        elif kind == "datepicker":
            shaped = {"type": kind, "selected_date": answer}
        else:
            raise AssertionError(f"unexpected element {kind}")
        values[block["block_id"]] = {element["action_id"]: shaped}
    return values


def _new_deal_state(**over: Any) -> dict[str, Any]:
    fields = {
        "name": "Initech",
        "amount": "5万",
        "owner": "U2",
        "stage": "proposal",
        "source": "referral",
        "close": "2026-12-31",
    }
    fields.update(over)
    return state(
        text_value("name", fields["name"]),
        text_value("amount", fields["amount"]),
        user_value("owner", fields["owner"]),
        select_value("stage", fields["stage"]),
        text_value("source", fields["source"]),
        date_value("close", fields["close"]),
    )


# --- New deal -------------------------------------------------------------------------


def test_new_deal_modal_opened_by_the_command_creates_the_deal(app_server) -> None:
    _, url, trigger = send_command(app_server, "")
    view = wait_view_open(app_server, trigger)
    values = _fill(
        view,
        {
            "name": "Initech  Platform",
            "amount": "¥50,000",
            "owner": "U2",
            "stage": "interest",
            "source": "trade show",
            "close": "2027-03-01",
        },
    )
    reply = submit(app_server, view["callback_id"], values, metadata=view["private_metadata"])
    assert ack_json(reply).get("response_action") in (None, "clear")

    answer = wait_response(app_server, url)
    assert "#1" in answer["text"]
    assert header_texts(answer) == ["#1 Initech  Platform"]
    row = deal_row(app_server, 1)
    assert row["name"] == "Initech  Platform"
    assert row["amount"] == Decimal("50000")
    assert (row["owner_id"], row["created_by"]) == ("U2", "U1")
    assert (row["stage"], row["status"]) == ("interest", "open")
    assert row["source"] == "trade show"
    assert row["expected_close"] == dt.date(2027, 3, 1)
    assert moves(app_server, 1) == [(None, "interest")]


def test_new_deal_modal_with_only_the_required_fields(app_server) -> None:
    url = app_server.fake.response_url()
    values = _new_deal_state(name="Hooli", amount=None, source=None, close=None, owner="U1")
    submit(app_server, V_NEW, values, metadata={"response_url": url})
    wait_response(app_server, url)
    row = deal_row(app_server, 1)
    assert (row["name"], row["amount"], row["source"], row["expected_close"]) == (
        "Hooli",
        Decimal("0"),
        None,
        None,
    )


def test_new_deal_without_response_url_is_answered_by_dm(app_server) -> None:
    submit(app_server, V_NEW, _new_deal_state(), user="U3", metadata={})
    call = app_server.fake.wait_for("chat.postMessage", lambda c: c.params.get("channel") == "U3")
    assert "#1" in call.params["text"]
    assert "Initech" in all_text(call.params)
    assert deal_row(app_server, 1)["amount"] == Decimal("50000")


@pytest.mark.parametrize(
    ("field", "typed", "expected_in_message"),
    [
        ("amount", "abc", "abc"),
        ("amount", "-5000", "-5000"),
        ("amount", "5,00", "5,00"),
        ("amount", "1e5", "1e5"),
        ("amount", "1000000000000000", "1000000000000000"),
        ("name", "", None),
        ("name", "   ", None),
        ("name", "N" * 201, "200"),
    ],
)
def test_new_deal_field_errors_change_nothing(
    app_server, field: str, typed: str, expected_in_message: str | None
) -> None:
    run_command(app_server, "list")  # the workspace exists: compare everything after this
    before = snapshot(app_server)
    url = app_server.fake.response_url()
    reply = submit(
        app_server, V_NEW, _new_deal_state(**{field: typed}), metadata={"response_url": url}
    )
    body = ack_json(reply)
    assert body["response_action"] == "errors"
    assert set(body["errors"]) == {field}
    message = body["errors"][field]
    assert message.strip()
    if expected_in_message:
        assert expected_in_message in message
    assert snapshot(app_server) == before
    assert deal_count(app_server) == 0


def test_new_deal_errors_on_several_fields_at_once(app_server) -> None:
    reply = submit(app_server, V_NEW, _new_deal_state(name="", amount="lots"), metadata={})
    body = ack_json(reply)
    assert body["response_action"] == "errors"
    assert set(body["errors"]) == {"name", "amount"}
    assert deal_count(app_server) == 0


# --- Edit -----------------------------------------------------------------------------


def test_edit_modal_saves(app_server) -> None:
    create_deal(app_server, '"Acme Corp" 50k source:web')
    view = command_modal(app_server, "edit #1")
    assert view["callback_id"] == V_EDIT
    meta = json.loads(view["private_metadata"])
    values = _fill(
        view,
        {
            "name": "Acme Corporation",
            "amount": "75,000.50",
            "source": None,  # cleared
            "close": "2027-01-15",
            "next_step": "Call procurement",
            "next_due": "2026-12-05",
        },
    )
    reply = submit(app_server, V_EDIT, values, metadata=view["private_metadata"])
    assert ack_json(reply).get("response_action") in (None, "clear")
    answer = wait_response(app_server, meta["response_url"])
    assert header_texts(answer) == ["#1 Acme Corporation"]
    row = deal_row(app_server, 1)
    assert row["name"] == "Acme Corporation"
    assert row["amount"] == Decimal("75000.50")
    assert row["source"] is None
    assert row["expected_close"] == dt.date(2027, 1, 15)
    assert (row["next_step"], row["next_step_due"]) == ("Call procurement", dt.date(2026, 12, 5))
    assert row["stage"] == "lead" and len(moves(app_server, 1)) == 1  # no stage change
    # the renamed deal is found by its new name
    assert header_texts(run_command(app_server, "show acme")) == ["#1 Acme Corporation"]


def test_stale_edit_is_refused(app_server) -> None:
    create_deal(app_server, '"Acme Corp" 50k')
    view = command_modal(app_server, "edit #1")  # drawn for version 1
    run_command(app_server, "advance #1")  # version 2
    before = snapshot(app_server)
    values = _fill(view, {"name": "Renamed", "amount": "1"})
    reply = submit(app_server, V_EDIT, values, metadata=view["private_metadata"])
    body = ack_json(reply)
    assert body["response_action"] == "errors"
    (message,) = body["errors"].values()
    assert "changed" in message.lower() and "#1" in message
    assert snapshot(app_server) == before
    assert deal_row(app_server, 1)["name"] == "Acme Corp"


def test_edit_field_errors_change_nothing(app_server) -> None:
    create_deal(app_server, '"Acme Corp" 50k')
    before = snapshot(app_server)
    meta = {"response_url": app_server.fake.response_url(), "number": 1, "version": 1}
    values = state(
        text_value("name", "Acme Corp"),
        text_value("amount", "-1"),
        text_value("source", None),
        date_value("close", None),
        text_value("next_step", "x" * 10_000),
        date_value("next_due", None),
    )
    body = ack_json(submit(app_server, V_EDIT, values, metadata=meta))
    assert body["response_action"] == "errors"
    assert set(body["errors"]) == {"amount", "next_step"}
    assert "-1" in body["errors"]["amount"]
    assert "2000" in body["errors"]["next_step"].replace(",", "")
    assert snapshot(app_server) == before


def test_edit_by_someone_else_is_refused(app_server) -> None:
    create_deal(app_server, '"Acme Corp" 50k', user="U1")
    _, url, _ = send_command(app_server, "edit #1", user="U2")
    answer = wait_response(app_server, url)
    assert "U1" in answer["text"]
    # even a forged submission for the right version changes nothing
    before = snapshot(app_server)
    meta = {"response_url": url, "number": 1, "version": 1}
    values = state(text_value("name", "Mine now"), text_value("amount", "1"))
    body = ack_json(submit(app_server, V_EDIT, values, user="U2", metadata=meta))
    assert body["response_action"] == "errors"
    assert "U1" in " ".join(body["errors"].values())
    assert snapshot(app_server) == before


# --- Note -----------------------------------------------------------------------------


def test_note_modal(app_server) -> None:
    create_deal(app_server, '"Acme Corp"')
    view = click_modal(app_server, NOTE, "1:1")
    meta = json.loads(view["private_metadata"])
    text = "Demo went well.\nThey want a pilot — 3 seats."
    values = _fill(view, {"note": text})
    reply = submit(app_server, V_NOTE, values, metadata=view["private_metadata"])
    assert ack_json(reply).get("response_action") in (None, "clear")
    answer = wait_response(app_server, meta["response_url"])
    assert answer["replace_original"] is True
    assert text in all_text(answer)
    assert [(n["author"], n["text"]) for n in note_rows(app_server, 1)] == [("U1", text)]


def test_note_modal_empty_or_too_long_is_refused(app_server) -> None:
    create_deal(app_server, '"Acme Corp"')
    before = snapshot(app_server)
    meta = {"response_url": app_server.fake.response_url(), "number": 1, "version": 1}
    for typed in ("", "   ", "n" * 10_000):
        body = ack_json(submit(app_server, V_NOTE, text_value("note", typed), metadata=meta))
        assert body["response_action"] == "errors", typed[:10]
        assert set(body["errors"]) == {"note"}
    assert "2000" in body["errors"]["note"].replace(",", "")
    assert snapshot(app_server) == before


# --- Lost -----------------------------------------------------------------------------


def test_lost_modal_stores_the_reason(app_server) -> None:
    create_deal(app_server, '"Acme Corp" stage:proposal')
    view = click_modal(app_server, LOST, "1:1")
    meta = json.loads(view["private_metadata"])
    values = _fill(view, {"reason": "Chose a competitor: 20% cheaper"})
    reply = submit(app_server, V_LOST, values, metadata=view["private_metadata"])
    assert ack_json(reply).get("response_action") in (None, "clear")
    answer = wait_response(app_server, meta["response_url"])
    assert answer["replace_original"] is True
    assert button_values(answer, "deal_reopen") == ["1:2"]
    row = deal_row(app_server, 1)
    assert (row["stage"], row["status"]) == ("lost", "lost")
    assert row["lost_reason"] == "Chose a competitor: 20% cheaper"
    assert moves(app_server, 1) == [(None, "proposal"), ("proposal", "lost")]
    assert row["version"] == 2  # one change, one version


def test_lost_modal_for_a_stale_version_is_refused(app_server) -> None:
    create_deal(app_server, '"Acme Corp"')
    view = click_modal(app_server, LOST, "1:1")
    run_command(app_server, "advance #1")
    before = snapshot(app_server)
    values = _fill(view, {"reason": "too late"})
    body = ack_json(submit(app_server, V_LOST, values, metadata=view["private_metadata"]))
    assert body["response_action"] == "errors"
    assert snapshot(app_server) == before
    assert deal_row(app_server, 1)["status"] == "open"


def test_lost_modal_reason_too_long_is_refused(app_server) -> None:
    create_deal(app_server, '"Acme Corp"')
    before = snapshot(app_server)
    meta = {"response_url": app_server.fake.response_url(), "number": 1, "version": 1}
    body = ack_json(submit(app_server, V_LOST, text_value("reason", "r" * 10_000), metadata=meta))
    assert body["response_action"] == "errors"
    assert set(body["errors"]) == {"reason"}
    assert "2000" in body["errors"]["reason"].replace(",", "")
    assert snapshot(app_server) == before
