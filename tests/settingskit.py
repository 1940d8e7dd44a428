"""Helpers for the settings, roles, App Home and exit-criteria tests: open and submit the
`/funnel settings` modal the way Slack would, read `workspaces.settings` and the exit
confirmations with plain SQL, and take an App Home view apart.

Like helpers.py, everything goes through the app's HTTP endpoint or plain SQL; nothing
here calls the product's own listeners.
"""

from __future__ import annotations

import copy
import datetime as dt
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import sqlalchemy as sa
from helpers import (
    SHOW,
    TEAM,
    ack_json,
    send_command,
    snapshot,
    submit,
    wait_response,
    wait_view_open,
)

from funnelbot.deals import stages_changed

V_SETTINGS, V_CRITERIA, V_SNOOZE = "funnel_settings", "deal_criteria", "deal_snooze"
SNOOZE = "deal_snooze"
SETTINGS_BLOCKS = (
    "report_channel",
    "weekly_day",
    "weekly_time",
    "nudge_hour",
    "timezone",
    "language",
    "currency",
    "managers",
    "manager_group",
)
# Tables a request changes whatever it does (the replay guard): not business state.
NOISE_TABLES = frozenset({"seen_requests"})


class Clock:
    """A clock the test moves by hand; handed to build_runtime(clock=...)."""

    def __init__(self, now: dt.datetime) -> None:
        self.now = now

    def __call__(self) -> dt.datetime:
        return self.now

    def set(self, now: dt.datetime) -> None:
        self.now = now

    def advance(self, **delta: float) -> None:
        self.now += dt.timedelta(**delta)


# --- commands -------------------------------------------------------------------------


def funnel(app: Any, text: str, user: str = "U1") -> dict[str, Any]:
    """`/funnel <text>`; what the app answered through the response_url."""
    _, url, _ = send_command(app, text, user, command="/funnel")
    return wait_response(app, url)


def no_view_opened(app: Any, trigger: str, wait: float = 0.3) -> bool:
    """True when no views.open used this trigger_id (after the answer already came)."""
    import time

    time.sleep(wait)
    return not [c for c in app.fake.calls_to("views.open") if c.params.get("trigger_id") == trigger]


# --- the settings modal ---------------------------------------------------------------


def open_settings(app: Any, user: str = "UADMIN") -> tuple[dict[str, Any], str]:
    """`/funnel settings` as `user`; returns (the modal opened, the command's response_url)."""
    _, url, trigger = send_command(app, "settings", user, command="/funnel")
    return wait_view_open(app, trigger), url


def _option(element: Mapping[str, Any], value: str) -> dict[str, Any]:
    for option in element.get("options") or []:
        if option.get("value") == value:
            return copy.deepcopy(option)
    # Not one of the choices: what a forged payload could carry.
    return {"text": {"type": "plain_text", "text": value}, "value": value}


def element_state(element: Mapping[str, Any], value: Any = ...) -> dict[str, Any]:
    """Slack's `view.state.values[block][action]` for an element: its initial value, or
    `value` when given (as the user would have chosen it)."""
    kind = element["type"]
    state: dict[str, Any] = {"type": kind}
    given = value is not ...
    if kind == "plain_text_input":
        state["value"] = value if given else element.get("initial_value")
    elif kind == "static_select":
        if given:
            state["selected_option"] = None if value is None else _option(element, str(value))
        else:
            state["selected_option"] = copy.deepcopy(element.get("initial_option"))
    elif kind == "conversations_select":
        state["selected_conversation"] = value if given else element.get("initial_conversation")
    elif kind == "timepicker":
        state["selected_time"] = value if given else element.get("initial_time")
    elif kind == "datepicker":
        state["selected_date"] = value if given else element.get("initial_date")
    elif kind == "users_select":
        state["selected_user"] = value if given else element.get("initial_user")
    elif kind == "multi_users_select":
        state["selected_users"] = list(value if given else element.get("initial_users") or [])
    elif kind == "checkboxes":
        if given:
            state["selected_options"] = [_option(element, str(v)) for v in value]
        else:
            state["selected_options"] = copy.deepcopy(element.get("initial_options") or [])
    else:  # pragma: no cover - a new element type needs a line here
        raise AssertionError(f"no state shape for {kind}")
    return state


def modal_state(view: Mapping[str, Any], **changes: Any) -> dict[str, Any]:
    """The state Slack submits for `view` after the user changed `changes` (block id ->
    value); every other input keeps its initial value."""
    values: dict[str, Any] = {}
    unknown = set(changes)
    for block in view.get("blocks", []):
        if block.get("type") != "input":
            continue
        element = block["element"]
        block_id, action_id = block["block_id"], element["action_id"]
        given = changes.get(block_id, ...)
        unknown.discard(block_id)
        values[block_id] = {action_id: element_state(element, given)}
    assert not unknown, f"the modal has no input blocks {sorted(unknown)}"
    return values


@dataclass
class Saved:
    ack: dict[str, Any]
    answer: dict[str, Any] | None
    view: dict[str, Any] = field(default_factory=dict)

    @property
    def errors(self) -> dict[str, str]:
        assert self.ack.get("response_action") == "errors", self.ack
        return self.ack["errors"]


def save_settings(app: Any, user: str = "UADMIN", **changes: Any) -> Saved:
    """Open `/funnel settings` as `user`, change `changes`, submit. On success the answer
    is what came back through the command's response_url."""
    view, url = open_settings(app, user)
    reply = submit(
        app, V_SETTINGS, modal_state(view, **changes), user, metadata=view["private_metadata"]
    )
    ack = ack_json(reply)
    answer = wait_response(app, url) if not ack else None
    return Saved(ack=ack, answer=answer, view=view)


def submit_settings(
    app: Any, values: Mapping[str, Any], user: str, metadata: str = ""
) -> dict[str, Any]:
    """Submit a settings modal state directly (e.g. a forged one); returns the ack JSON."""
    return ack_json(submit(app, V_SETTINGS, values, user, metadata=metadata))


# --- the database ---------------------------------------------------------------------


def stored_settings(app: Any, team: str = TEAM) -> dict[str, Any] | None:
    """`workspaces.settings` of the team, as stored (None: no workspace row yet)."""
    with app.runtime.engine.connect() as conn:
        raw = conn.execute(
            sa.text("SELECT settings FROM workspaces WHERE team_id = :t"), {"t": team}
        ).scalar_one_or_none()
    if raw is None:
        return None
    return json.loads(raw) if isinstance(raw, str) else dict(raw)


def business_snapshot(app: Any) -> dict[str, list[tuple[Any, ...]]]:
    """Every row of every table but the replay guard's: equal snapshots = nothing changed."""
    return {k: v for k, v in snapshot(app).items() if k not in NOISE_TABLES}


def add_criteria(app: Any, stage_key: str, texts: list[str], team: str = TEAM) -> list[int]:
    """Give the team's stage an exit checklist (rows in exit_criteria); returns their ids."""
    ids = []
    with app.runtime.engine.begin() as conn:
        stage_id = conn.execute(
            sa.text("SELECT id FROM stages WHERE team_id = :t AND key = :k"),
            {"t": team, "k": stage_key},
        ).scalar_one()
        for position, text in enumerate(texts):
            conn.execute(
                sa.text(
                    "INSERT INTO exit_criteria (team_id, stage_id, position, text, active) "
                    "VALUES (:t, :s, :p, :x, :a)"
                ),
                {"t": team, "s": stage_id, "p": position, "x": text, "a": True},
            )
        ids = list(
            conn.execute(
                sa.text("SELECT id FROM exit_criteria WHERE stage_id = :s ORDER BY position"),
                {"s": stage_id},
            ).scalars()
        )
        stages_changed(conn, [team])
    return ids


def confirmation_rows(app: Any, number: int, team: str = TEAM) -> list[dict[str, Any]]:
    """Exit confirmations of deal #number: criterion id and text, stage key, by, at (aware)."""
    from funnelbot import models as m

    confirmations, deals = m.ExitConfirmation.__table__, m.Deal.__table__
    criteria, stages = m.ExitCriterion.__table__, m.Stage.__table__
    query = (
        sa.select(
            confirmations.c.criterion_id,
            criteria.c.text,
            stages.c.key.label("stage"),
            confirmations.c.by,
            confirmations.c.at,
        )
        .join(deals, deals.c.id == confirmations.c.deal_id)
        .join(criteria, criteria.c.id == confirmations.c.criterion_id)
        .join(stages, stages.c.id == criteria.c.stage_id)
        .where(deals.c.team_id == team, deals.c.number == number)
        .order_by(confirmations.c.id)
    )
    with app.runtime.engine.connect() as conn:
        return [dict(r) for r in conn.execute(query).mappings()]


# --- App Home -------------------------------------------------------------------------


def home_publishes(app: Any, user: str) -> list[dict[str, Any]]:
    """Every Home view published for `user` that the fake accepted, oldest first."""
    views = []
    for call in app.fake.calls_to("views.publish", ok=True):
        if call.params.get("user_id") != user:
            continue
        view = call.params["view"]
        views.append(view if isinstance(view, dict) else json.loads(view))
    return views


def wait_home(app: Any, user: str, count: int = 1, timeout: float = 10) -> dict[str, Any]:
    """The `count`-th Home view published for `user` (waiting for it)."""
    app.fake.wait_for(
        "views.publish",
        lambda c: len(home_publishes(app, user)) >= count,
        timeout=timeout,
    )
    return home_publishes(app, user)[count - 1]


_STAGE_HEADING = re.compile(r"^\*(?P<name>.+)\* \((?P<count>\d+)\)$")


@dataclass
class HomeLayout:
    """An App Home view taken apart: what is where, in order."""

    blocks: list[dict[str, Any]]
    headers: list[str] = field(default_factory=list)
    # Deals listed under "needs you", in order, with the reason line shown.
    attention: list[tuple[int, str]] = field(default_factory=list)
    attention_index: int | None = None
    # Stage name -> (count shown in the heading, deal numbers listed with a Show button).
    stages: dict[str, tuple[int, list[int]]] = field(default_factory=dict)
    first_stage_index: int | None = None
    show_buttons: list[int] = field(default_factory=list)
    team_index: int | None = None

    def stage_of(self, number: int) -> str | None:
        found = [name for name, (_, numbers) in self.stages.items() if number in numbers]
        assert len(found) <= 1, (number, found)
        return found[0] if found else None


def home_layout(view: Mapping[str, Any], *, attention_title: str, team_title: str) -> HomeLayout:
    blocks = list(view["blocks"])
    layout = HomeLayout(blocks=blocks)
    current: str | None = None
    in_attention = False
    for index, block in enumerate(blocks):
        kind = block.get("type")
        text = (block.get("text") or {}).get("text", "")
        if kind == "header":
            layout.headers.append(text)
            if text == team_title:
                layout.team_index = index
                current, in_attention = None, False
            continue
        if kind == "divider":
            in_attention = False
            continue
        if kind == "section" and text == f"*{attention_title}*":
            layout.attention_index, in_attention = index, True
            continue
        heading = _STAGE_HEADING.match(text) if kind == "section" else None
        if heading and layout.team_index is None:
            current = heading["name"]
            layout.stages[current] = (int(heading["count"]), [])
            if layout.first_stage_index is None:
                layout.first_stage_index = index
            in_attention = False
            continue
        accessory = block.get("accessory") or {}
        if accessory.get("action_id") == SHOW:
            number = int(accessory["value"].split(":")[0])
            layout.show_buttons.append(number)
            if current is not None:
                layout.stages[current][1].append(number)
            continue
        if in_attention and kind == "section":
            first, _, why = text.partition("\n")
            match = re.match(r"#(\d+) ", first)
            if match:
                layout.attention.append((int(match[1]), why))
    return layout
