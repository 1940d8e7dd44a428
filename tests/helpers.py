"""Helpers for Slack-level tests: send a command or click like Slack, read the answer the
app posts back (response_url, views.open, DM), and look straight into the database.

Everything here speaks Slack's wire formats, or reads the tables (SQLAlchemy Core on the
models' tables); nothing calls the product's logic except through its HTTP endpoint, so
a test built on these can fail.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator, Mapping
from typing import Any

import sqlalchemy as sa
from slackclient import DEFAULT_TEAM, Reply

TEAM = DEFAULT_TEAM

# Action ids and view callback ids of funnelbot/ids.py, spelled out so a rename shows up.
ADVANCE, WON, LOST, NOTE, EDIT, SHOW, REOPEN = (
    "deal_advance",
    "deal_won",
    "deal_lost",
    "deal_note",
    "deal_edit",
    "deal_show",
    "deal_reopen",
)
V_NEW, V_EDIT, V_NOTE, V_LOST = "deal_new", "deal_edit", "deal_note", "deal_lost"


# --------------------------------------------------------------------------------------
# Slack -> app -> Slack


def _path_of(url: str) -> str:
    return "/response/" + url.rsplit("/", 1)[1]


def wait_response(app: Any, url: str, timeout: float = 10) -> dict[str, Any]:
    """The payload the app posted to `url` (a response_url of the fake)."""
    path = _path_of(url)
    call = app.fake.wait_for(
        "response_url", lambda c: c.params.get("_path") == path, timeout=timeout
    )
    return call.params


def responses_to(app: Any, url: str) -> list[dict[str, Any]]:
    path = _path_of(url)
    return [c.params for c in app.fake.calls_to("response_url") if c.params.get("_path") == path]


def send_command(
    app: Any, text: str, user: str = "U1", *, team: str = TEAM, command: str = "/deal"
) -> tuple[Reply, str, str]:
    """POST a slash command; returns (HTTP reply, response_url, trigger_id)."""
    url = app.fake.response_url()
    trigger = f"trig-{uuid.uuid4().hex}"
    reply = app.slack.command(
        command, text, user_id=user, team_id=team, response_url=url, trigger_id=trigger
    )
    assert reply.status == 200, reply
    return reply, url, trigger


def run_command(
    app: Any, text: str, user: str = "U1", *, team: str = TEAM, command: str = "/deal"
) -> dict[str, Any]:
    """Send `/deal <text>` and return what the app answered through the response_url."""
    _, url, _ = send_command(app, text, user, team=team, command=command)
    return wait_response(app, url)


def wait_view_open(app: Any, trigger: str, timeout: float = 10) -> dict[str, Any]:
    """The view the app opened with views.open for this trigger_id."""
    call = app.fake.wait_for(
        "views.open", lambda c: c.params.get("trigger_id") == trigger, timeout=timeout
    )
    view = call.params["view"]
    return view if isinstance(view, dict) else json.loads(view)


def command_modal(app: Any, text: str, user: str = "U1", *, team: str = TEAM) -> dict[str, Any]:
    """Send a command that should open a modal; return that modal."""
    _, _, trigger = send_command(app, text, user, team=team)
    return wait_view_open(app, trigger)


def send_click(
    app: Any,
    action_id: str,
    value: str,
    user: str = "U1",
    *,
    team: str = TEAM,
    response_url: str | None = None,
    trigger_id: str | None = None,
) -> tuple[Reply, str, str]:
    url = response_url or app.fake.response_url()
    trigger = trigger_id or f"trig-{uuid.uuid4().hex}"
    reply = app.slack.block_action(
        user_id=user,
        action_id=action_id,
        value=value,
        team_id=team,
        response_url=url,
        trigger_id=trigger,
    )
    assert reply.status == 200, reply
    return reply, url, trigger


def click(
    app: Any, action_id: str, value: str, user: str = "U1", *, team: str = TEAM
) -> dict[str, Any]:
    """Click a message button; return what the app answered through the response_url."""
    _, url, _ = send_click(app, action_id, value, user, team=team)
    return wait_response(app, url)


def click_modal(
    app: Any, action_id: str, value: str, user: str = "U1", *, team: str = TEAM
) -> dict[str, Any]:
    """Click a button that should open a modal; return that modal."""
    _, _, trigger = send_click(app, action_id, value, user, team=team)
    return wait_view_open(app, trigger)


def submit(
    app: Any,
    callback_id: str,
    values: Mapping[str, Any],
    user: str = "U1",
    *,
    metadata: Mapping[str, Any] | str | None = None,
    team: str = TEAM,
) -> Reply:
    """Submit a modal with Slack-shaped state values; returns the HTTP reply (the ack)."""
    if metadata is None:
        meta = ""
    elif isinstance(metadata, str):
        meta = metadata
    else:
        meta = json.dumps(dict(metadata))
    reply = app.slack.view_submission(
        user_id=user,
        callback_id=callback_id,
        state_values=values,
        private_metadata=meta,
        team_id=team,
    )
    assert reply.status == 200, reply
    return reply


# Slack's view.state.values shapes; block id and action id are the same in funnelbot.
def text_value(block: str, value: str | None) -> dict[str, Any]:
    return {block: {block: {"type": "plain_text_input", "value": value}}}


def user_value(block: str, user: str | None) -> dict[str, Any]:
    return {block: {block: {"type": "users_select", "selected_user": user}}}


def select_value(block: str, value: str | None, label: str = "x") -> dict[str, Any]:
    option = (
        None if value is None else {"text": {"type": "plain_text", "text": label}, "value": value}
    )
    return {block: {block: {"type": "static_select", "selected_option": option}}}


def date_value(block: str, day: str | None) -> dict[str, Any]:
    return {block: {block: {"type": "datepicker", "selected_date": day}}}


def state(*parts: Mapping[str, Any]) -> dict[str, Any]:
    merged: dict[str, Any] = {}
    for part in parts:
        merged.update(part)
    return merged


def ack_json(reply: Reply) -> dict[str, Any]:
    """The JSON an ack carried ({} for an empty 200)."""
    return json.loads(reply.body) if reply.body.strip() else {}


# --------------------------------------------------------------------------------------
# Reading messages


def text_objects(node: Any) -> Iterator[dict[str, Any]]:
    """Every Block Kit text object (`{"type": "plain_text"|"mrkdwn", "text": ...}`)."""
    if isinstance(node, dict):
        if node.get("type") in ("plain_text", "mrkdwn") and isinstance(node.get("text"), str):
            yield node
        for value in node.values():
            yield from text_objects(value)
    elif isinstance(node, list):
        for item in node:
            yield from text_objects(item)


def all_text(payload: Mapping[str, Any]) -> str:
    """The fallback text and every text in the blocks, joined: for "does it say X"."""
    parts = [str(payload.get("text") or "")]
    parts += [t["text"] for t in text_objects(payload.get("blocks") or [])]
    return "\n".join(parts)


def plain_texts(payload: Mapping[str, Any]) -> list[str]:
    return [
        t["text"] for t in text_objects(payload.get("blocks") or []) if t["type"] == "plain_text"
    ]


def mrkdwn_texts(payload: Mapping[str, Any]) -> list[str]:
    return [t["text"] for t in text_objects(payload.get("blocks") or []) if t["type"] == "mrkdwn"]


def buttons(payload: Mapping[str, Any]) -> list[dict[str, Any]]:
    """Every button element in the message's blocks, in order."""
    found: list[dict[str, Any]] = []
    for block in payload.get("blocks") or []:
        if block.get("type") == "actions":
            found += [e for e in block.get("elements", []) if e.get("type") == "button"]
        accessory = block.get("accessory")
        if isinstance(accessory, dict) and accessory.get("type") == "button":
            found.append(accessory)
    return found


def button_values(payload: Mapping[str, Any], action_id: str) -> list[str]:
    return [b["value"] for b in buttons(payload) if b.get("action_id") == action_id]


def header_texts(payload: Mapping[str, Any]) -> list[str]:
    return [b["text"]["text"] for b in payload.get("blocks") or [] if b.get("type") == "header"]


def view_blocks_by_id(view: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    return {b["block_id"]: b for b in view.get("blocks", []) if "block_id" in b}


# --------------------------------------------------------------------------------------
# The database, read directly


def _engine(app_or_engine: Any) -> sa.Engine:
    if isinstance(app_or_engine, sa.Engine):
        return app_or_engine
    return app_or_engine.runtime.engine


def _tables() -> Any:
    from funnelbot import models

    return models


def deal_row(app: Any, number: int, team: str = TEAM) -> dict[str, Any] | None:
    """The deal's columns (plus its stage key as `stage`), or None."""
    m = _tables()
    deals, stages = m.Deal.__table__, m.Stage.__table__
    query = (
        sa.select(deals, stages.c.key.label("stage"))
        .join(stages, stages.c.id == deals.c.stage_id)
        .where(deals.c.team_id == team, deals.c.number == number)
    )
    with _engine(app).connect() as conn:
        row = conn.execute(query).mappings().one_or_none()
    return dict(row) if row is not None else None


def deal_count(app: Any, team: str = TEAM) -> int:
    deals = _tables().Deal.__table__
    with _engine(app).connect() as conn:
        return conn.execute(
            sa.select(sa.func.count()).select_from(deals).where(deals.c.team_id == team)
        ).scalar_one()


def history_rows(app: Any, number: int, team: str = TEAM) -> list[dict[str, Any]]:
    """Stage changes of the deal in insertion order: from/to stage keys, by, version, at."""
    m = _tables()
    changes, deals = m.StageChange.__table__, m.Deal.__table__
    src, dst = m.Stage.__table__.alias("src"), m.Stage.__table__.alias("dst")
    query = (
        sa.select(
            src.c.key.label("from_stage"),
            dst.c.key.label("to_stage"),
            changes.c.by,
            changes.c.deal_version,
            changes.c.at,
        )
        .select_from(changes)
        .join(deals, deals.c.id == changes.c.deal_id)
        .outerjoin(src, src.c.id == changes.c.from_stage_id)
        .join(dst, dst.c.id == changes.c.to_stage_id)
        .where(deals.c.team_id == team, deals.c.number == number)
        .order_by(changes.c.id)
    )
    with _engine(app).connect() as conn:
        return [dict(r) for r in conn.execute(query).mappings()]


def moves(app: Any, number: int, team: str = TEAM) -> list[tuple[str | None, str]]:
    return [(r["from_stage"], r["to_stage"]) for r in history_rows(app, number, team)]


def note_rows(app: Any, number: int, team: str = TEAM) -> list[dict[str, Any]]:
    m = _tables()
    notes, deals = m.Note.__table__, m.Deal.__table__
    query = (
        sa.select(notes.c.author, notes.c.text, notes.c.at)
        .join(deals, deals.c.id == notes.c.deal_id)
        .where(deals.c.team_id == team, deals.c.number == number)
        .order_by(notes.c.id)
    )
    with _engine(app).connect() as conn:
        return [dict(r) for r in conn.execute(query).mappings()]


# Bookkeeping a request may write without changing anything a user owns.
NOT_USER_DATA = frozenset({"alembic_version", "seen_requests"})


def snapshot(app: Any) -> dict[str, list[tuple[Any, ...]]]:
    """Every row of every user-data table, in primary-key order: equal = unchanged."""
    out: dict[str, list[tuple[Any, ...]]] = {}
    with _engine(app).connect() as conn:
        inspector = sa.inspect(conn)  # on this connection: SQLite's BEGIN IMMEDIATE is held
        for table in sorted(inspector.get_table_names()):
            if table in NOT_USER_DATA or table.startswith("slack_"):
                continue
            pk = inspector.get_pk_constraint(table).get("constrained_columns") or []
            order = ", ".join(f'"{c}"' for c in pk) or "1"
            rows = conn.execute(sa.text(f'SELECT * FROM "{table}" ORDER BY {order}')).all()
            out[table] = [tuple(repr(v) for v in row) for row in rows]
    return out


def create_deal(
    app: Any, text: str, user: str = "U1", *, team: str = TEAM
) -> tuple[int, dict[str, Any]]:
    """`/deal new <text>`; returns the new deal's number (from the DB) and the answer."""
    before = deal_count(app, team)
    answer = run_command(app, f"new {text}", user, team=team)
    assert deal_count(app, team) == before + 1, all_text(answer)
    number = before + 1
    return number, answer
