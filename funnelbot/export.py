"""`funnelbot export`: deals, stage history and notes as CSV or JSON (SPEC §6).

Timestamps are ISO 8601 with their UTC offset and microseconds; history and notes come
in commit order per deal. Amounts are exact decimal strings.
"""

from __future__ import annotations

import csv
import datetime as dt
import json
from collections.abc import Iterator
from decimal import Decimal
from typing import IO, Any

import sqlalchemy as sa
from sqlalchemy import orm as so

from funnelbot.models import Deal, Note, Stage, StageChange

KINDS = ("deals", "history", "notes")
COLUMNS = {
    "deals": [
        "id",
        "name",
        "amount",
        "owner",
        "stage",
        "status",
        "source",
        "lost_reason",
        "expected_close",
        "created_at",
        "updated_at",
    ],
    "history": ["deal_id", "from_stage", "to_stage", "at", "by"],
    "notes": ["deal_id", "author", "text", "at"],
}


def iso(value: dt.datetime | dt.date | None) -> str | None:
    if value is None:
        return None
    if isinstance(value, dt.datetime):
        return value.isoformat(timespec="microseconds")
    return value.isoformat()


def _rows(session: so.Session, team_id: str, kind: str) -> Iterator[dict[str, Any]]:
    if kind == "deals":
        query = (
            sa.select(Deal, Stage.key)
            .join(Stage, Stage.id == Deal.stage_id)
            .where(Deal.team_id == team_id)
            .order_by(Deal.number)
        )
        for deal, stage_key in session.execute(query.execution_options(yield_per=1000)):
            yield {
                "id": deal.number,
                "name": deal.name,
                "amount": str(deal.amount),
                "owner": deal.owner_id,
                "stage": stage_key,
                "status": deal.status,
                "source": deal.source,
                "lost_reason": deal.lost_reason,
                "expected_close": iso(deal.expected_close),
                "created_at": iso(deal.created_at),
                "updated_at": iso(deal.updated_at),
            }
    elif kind == "history":
        from_stage = so.aliased(Stage)
        to_stage = so.aliased(Stage)
        query = (
            sa.select(Deal.number, from_stage.key, to_stage.key, StageChange.at, StageChange.by)
            .join(Deal, Deal.id == StageChange.deal_id)
            .outerjoin(from_stage, from_stage.id == StageChange.from_stage_id)
            .join(to_stage, to_stage.id == StageChange.to_stage_id)
            .where(StageChange.team_id == team_id)
            .order_by(Deal.number, StageChange.id)
        )
        for number, src, dst, at, by in session.execute(query.execution_options(yield_per=5000)):
            yield {"deal_id": number, "from_stage": src, "to_stage": dst, "at": iso(at), "by": by}
    elif kind == "notes":
        query = (
            sa.select(Deal.number, Note.author, Note.text, Note.at)
            .join(Deal, Deal.id == Note.deal_id)
            .where(Note.team_id == team_id)
            .order_by(Deal.number, Note.id)
        )
        for number, author, text, at in session.execute(query):
            yield {"deal_id": number, "author": author, "text": text, "at": iso(at)}
    else:
        raise ValueError(kind)


def _json_default(value: object) -> object:
    if isinstance(value, Decimal):
        return str(value)
    raise TypeError(type(value))


def write(session: so.Session, team_id: str, kind: str, fmt: str, out: IO[str]) -> int:
    """Write every row of `kind` to `out`; returns the row count."""
    count = 0
    if fmt == "csv":
        writer = csv.DictWriter(out, fieldnames=COLUMNS[kind], lineterminator="\n")
        writer.writeheader()
        for row in _rows(session, team_id, kind):
            writer.writerow({k: "" if v is None else v for k, v in row.items()})
            count += 1
        return count
    out.write("[")
    for row in _rows(session, team_id, kind):
        out.write(
            ("," if count else "")
            + "\n"
            + json.dumps(row, ensure_ascii=False, default=_json_default)
        )
        count += 1
    out.write("\n]\n")
    return count
