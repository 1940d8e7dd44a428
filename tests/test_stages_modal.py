"""`/funnel stages` in Slack: the modal edits the funnel with the rules of `stages apply`."""

from __future__ import annotations

import json

import sqlalchemy as sa

from funnelbot import deals as domain
from funnelbot.models import Deal, Stage, StageChange


def _open_modal(app_server, user: str = "UADMIN") -> dict:
    s, fake = app_server.slack, app_server.fake
    s.command("/funnel", "stages", user_id=user, response_url=fake.response_url())
    return fake.wait_for("views.open").params["view"]


def _state_from(view: dict, changes: dict[str, object]) -> dict:
    """Slack's view state for the modal as drawn, with `changes` typed in."""
    state: dict[str, dict] = {}
    for block in view["blocks"]:
        if block["type"] != "input":
            continue
        bid, element = block["block_id"], block["element"]
        kind = element["type"]
        value = changes.get(bid, element.get("initial_value"))
        if kind == "checkboxes":
            chosen = element["options"] if changes.get(bid) else []
            state[bid] = {bid: {"type": kind, "selected_options": chosen}}
        elif kind == "static_select":
            option = next((o for o in element["options"] if o["value"] == changes.get(bid)), None)
            state[bid] = {bid: {"type": kind, "selected_option": option}}
        else:
            state[bid] = {bid: {"type": kind, "value": None if value is None else str(value)}}
    return state


def _keys(app_server, team: str = "T0TEST") -> list[str]:
    with app_server.runtime.sessions() as session:
        return [s.key for s in domain.open_stages(session, team)]


def test_add_sample_testing_between_proposal_and_negotiation(app_server):
    view = _open_modal(app_server)
    assert json.loads(view["private_metadata"])["keys"] == ["lead", "interest", "proposal", "negotiation"]
    state = _state_from(
        view,
        {"new_key": "sample_testing", "new_name_en": "Sample testing", "new_name_zh": "样品测试",
         "new_stall": 10, "new_prob": "0.5", "new_pos": "3.5"},
    )
    reply = app_server.slack.view_submission(
        user_id="UADMIN", callback_id="funnel_stages", state_values=state, private_metadata=view["private_metadata"]
    )
    assert reply.status == 200 and "errors" not in reply.body
    assert _keys(app_server) == ["lead", "interest", "proposal", "sample_testing", "negotiation"]
    # A deal advanced from proposal passes through the new stage.
    s, fake = app_server.slack, app_server.fake
    s.command("/deal", "new Probe 1k stage:proposal", user_id="U1", response_url=fake.response_url())
    fake.wait_for_count("response_url", 2)
    s.command("/deal", "advance #1", user_id="U1", response_url=fake.response_url())
    fake.wait_for_count("response_url", 3)
    with app_server.runtime.sessions() as session:
        deal = session.scalars(sa.select(Deal).where(Deal.team_id == "T0TEST")).one()
        assert deal.stage.key == "sample_testing"


def test_remove_stage_with_deals_needs_a_destination(app_server):
    s, fake = app_server.slack, app_server.fake
    s.command("/deal", "new Holder 1k stage:interest", user_id="U1", response_url=fake.response_url())
    fake.wait_for("response_url")
    view = _open_modal(app_server)
    state = _state_from(view, {"s1_remove": True})
    reply = app_server.slack.view_submission(
        user_id="UADMIN", callback_id="funnel_stages", state_values=state, private_metadata=view["private_metadata"]
    )
    body = json.loads(reply.body)
    assert body["response_action"] == "errors" and "move_to" in body["errors"]
    assert _keys(app_server) == ["lead", "interest", "proposal", "negotiation"]
    state = _state_from(view, {"s1_remove": True, "move_to": "proposal"})
    reply = app_server.slack.view_submission(
        user_id="UADMIN", callback_id="funnel_stages", state_values=state, private_metadata=view["private_metadata"]
    )
    assert "errors" not in reply.body
    assert _keys(app_server) == ["lead", "proposal", "negotiation"]
    with app_server.runtime.sessions() as session:
        deal = session.scalars(sa.select(Deal).where(Deal.team_id == "T0TEST")).one()
        assert deal.stage.key == "proposal"
        rows = session.execute(
            sa.select(StageChange.from_stage_id, StageChange.to_stage_id).where(StageChange.deal_id == deal.id)
            .order_by(StageChange.id)
        ).all()
        interest = session.scalars(sa.select(Stage).where(Stage.team_id == "T0TEST", Stage.key == "interest")).one()
        assert len(rows) == 2 and rows[1][0] == interest.id and not interest.active


def test_reps_cannot_open_the_stages_modal(app_server):
    s, fake = app_server.slack, app_server.fake
    url = fake.response_url()
    s.command("/funnel", "stages", user_id="U2", response_url=url)
    answer = fake.wait_for("response_url")
    assert "manager" in answer.params["text"].lower()
    assert not fake.calls_to("views.open")
