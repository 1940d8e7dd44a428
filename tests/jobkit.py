"""Helpers for the scheduled-job tests: a settable clock, deals built at explicit past
instants through the domain (funnelbot.deals), and readers for what the fake Slack got.

Deals are built through the product's domain functions because the jobs' input is the
history those functions write; every expected value is still computed in the tests from
what they asked for, never read back from the product's own metrics.
"""

from __future__ import annotations

import datetime as dt
import io
import re
from collections.abc import Callable
from decimal import Decimal
from typing import Any

import sqlalchemy as sa
from helpers import TEAM, text_objects

UTC = dt.UTC
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def utc(y: int, m: int, d: int, hh: int = 0, mm: int = 0) -> dt.datetime:
    return dt.datetime(y, m, d, hh, mm, tzinfo=UTC)


class Clock:
    """A clock the test moves by hand; handed to build_runtime(clock=...)."""

    def __init__(self, now: dt.datetime) -> None:
        self.now = now

    def __call__(self) -> dt.datetime:
        return self.now

    def set(self, now: dt.datetime) -> None:
        self.now = now


# --- building deals through the domain ----------------------------------------------------


def _sessions(target: Any) -> Any:
    """The session factory of an AppServer, a Runtime or an Engine."""
    if isinstance(target, sa.Engine):
        from funnelbot import db

        return db.make_session_factory(target)
    runtime = getattr(target, "runtime", target)
    return runtime.sessions


def actor(user: str) -> Any:
    from funnelbot.deals import Actor

    return Actor(user_id=user, is_admin=True)


def workspace(target: Any, at: dt.datetime, team: str = TEAM) -> None:
    from funnelbot import deals

    with _sessions(target).begin() as session:
        deals.ensure_workspace(session, team, at)


def new_deal(
    target: Any,
    name: str,
    owner: str,
    at: dt.datetime,
    *,
    stage: str = "lead",
    amount: int | Decimal = 0,
    source: str | None = None,
    expected_close: dt.date | None = None,
    team: str = TEAM,
) -> int:
    """Create a deal at instant `at` (its creation and last activity); returns its number."""
    from funnelbot import deals

    with _sessions(target).begin() as session:
        deals.ensure_workspace(session, team, at)
        deal = deals.create_deal(
            session,
            team,
            actor(owner),
            name=name,
            amount=Decimal(amount),
            owner_id=owner,
            stage=deals.find_stage(session, team, stage),
            source=source,
            expected_close=expected_close,
            now=at,
        )
        return deal.number


def change(
    target: Any, number: int, work: Callable[..., Any], *, team: str = TEAM, **kwargs: Any
) -> None:
    """Apply one domain change `work(session, deal, actor, **kwargs)` to deal #number."""
    from funnelbot import deals

    with _sessions(target).begin() as session:
        deal = deals.get_deal(session, team, number)
        work(session, deal, actor(deal.owner_id), **kwargs)


def move(target: Any, number: int, stage: str, at: dt.datetime, *, team: str = TEAM) -> None:
    from funnelbot import deals

    with _sessions(target).begin() as session:
        deal = deals.get_deal(session, team, number)
        deals.move(
            session, deal, actor(deal.owner_id), deals.find_stage(session, team, stage), now=at
        )


def win(target: Any, number: int, at: dt.datetime, *, team: str = TEAM) -> None:
    from funnelbot import deals

    change(target, number, deals.win, team=team, now=at)


def lose(
    target: Any, number: int, at: dt.datetime, reason: str = "price", *, team: str = TEAM
) -> None:
    from funnelbot import deals

    with _sessions(target).begin() as session:
        deal = deals.get_deal(session, team, number)
        deals.lose(session, deal, actor(deal.owner_id), reason, now=at)


def note(
    target: Any, number: int, at: dt.datetime, text: str = "called", *, team: str = TEAM
) -> None:
    from funnelbot import deals

    with _sessions(target).begin() as session:
        deal = deals.get_deal(session, team, number)
        deals.add_note(session, deal, actor(deal.owner_id), text, now=at)


def next_step(
    target: Any, number: int, text: str, due: dt.date, at: dt.datetime, *, team: str = TEAM
) -> None:
    from funnelbot import deals

    with _sessions(target).begin() as session:
        deal = deals.get_deal(session, team, number)
        deals.set_next_step(session, deal, actor(deal.owner_id), text, due, now=at)


def snooze(target: Any, number: int, until: dt.date, at: dt.datetime, *, team: str = TEAM) -> None:
    from funnelbot import deals

    with _sessions(target).begin() as session:
        deal = deals.get_deal(session, team, number)
        deals.snooze(session, deal, actor(deal.owner_id), until, None, now=at, today=at.date())


# --- reading what Slack got ---------------------------------------------------------------


def posts(fake: Any, channel: str | None = None, *, thread: bool | None = None) -> list[Any]:
    """chat.postMessage calls Slack accepted, to `channel`; thread=True/False: replies only /
    top-level only."""
    found = []
    for call in fake.calls_to("chat.postMessage", ok=True):
        if channel is not None and call.params.get("channel") != channel:
            continue
        if thread is not None and bool(call.params.get("thread_ts")) != thread:
            continue
        found.append(call)
    return found


def dms_opened(fake: Any) -> list[str]:
    """User ids of every accepted conversations.open call, in order."""
    return [str(c.params.get("users")) for c in fake.calls_to("conversations.open", ok=True)]


def texts(params: dict[str, Any]) -> str:
    parts = [str(params.get("text") or "")]
    parts += [t["text"] for t in text_objects(params.get("blocks") or [])]
    return "\n".join(parts)


def deal_numbers(params: dict[str, Any]) -> list[int]:
    """Deal numbers a nudge/escalation/thread message names as `#N`, in order, unique."""
    seen: list[int] = []
    for block in params.get("blocks") or []:
        if block.get("type") != "section" or "text" not in block:
            continue
        if block["text"]["type"] != "plain_text":
            continue
        for match in re.finditer(r"(?m)^#(\d+) ", block["text"]["text"]):
            number = int(match.group(1))
            if number not in seen:
                seen.append(number)
    return seen


QUIET_METHODS = frozenset({"users.info", "auth.test", "views.publish"})


def slack_api_calls(fake: Any) -> list[Any]:
    """Every call except look-ups (users.info for locales and time zones) and App Home
    refreshes (views.publish, sent in the background after a command changed a deal)."""
    return [c for c in fake.calls if c.method not in QUIET_METHODS]


def decode_png(data: bytes) -> Any:
    """The image as an array (rows, columns, channels); fails unless it is a real PNG."""
    from matplotlib import image

    assert data[:8] == PNG_MAGIC, data[:16]
    return image.imread(io.BytesIO(data), format="png")


def uploads(fake: Any) -> list[dict[str, Any]]:
    """Files completed with files.completeUploadExternal: the fake's record, bytes included."""
    done = []
    for call in fake.calls_to("files.completeUploadExternal", ok=True):
        for f in call.params.get("files") or []:
            known = fake.files.get(str(f.get("id")))
            if known is not None:
                done.append({**known, "channel_id": call.params.get("channel_id")})
    return done
