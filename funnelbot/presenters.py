"""Plain, immutable snapshots of domain rows, so Block Kit builders never touch the ORM."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from sqlalchemy import orm as so

from funnelbot import deals as domain
from funnelbot.models import OPEN, Deal, Stage


@dataclass(frozen=True)
class StageInfo:
    key: str
    name_en: str
    name_zh: str
    kind: str
    position: int
    stall_days: int | None = None
    probability: Decimal = Decimal("0")
    criteria: tuple[tuple[int, str], ...] = ()

    def name(self, lang: str) -> str:
        return self.name_zh if lang == "zh" else self.name_en


@dataclass(frozen=True)
class DealInfo:
    number: int
    version: int
    name: str
    amount: Decimal
    owner_id: str
    stage: StageInfo
    status: str
    source: str | None
    expected_close: dt.date | None
    next_step: str | None
    next_step_due: dt.date | None
    lost_reason: str | None
    created_at: dt.datetime
    last_activity_at: dt.datetime
    # Whether "Advance ▸" means a next open stage (False at the last open stage).
    has_next_stage: bool = True


@dataclass(frozen=True)
class HistoryEntry:
    from_stage: StageInfo | None
    to_stage: StageInfo
    at: dt.datetime
    by: str


@dataclass(frozen=True)
class NoteInfo:
    author: str
    text: str
    at: dt.datetime


@dataclass(frozen=True)
class ConfirmationInfo:
    text: str
    by: str
    at: dt.datetime


@dataclass(frozen=True)
class DealDetail:
    deal: DealInfo
    history: tuple[HistoryEntry, ...]
    notes: tuple[NoteInfo, ...]
    confirmations: tuple[ConfirmationInfo, ...]


def stage_info(stage: Stage | domain.Row, criteria: Iterable[Any] | None = None) -> StageInfo:
    """A snapshot of a stage: an ORM object (its own criteria) or a cached row (with the
    criteria rows given)."""
    return StageInfo(
        key=stage.key,
        name_en=stage.name_en,
        name_zh=stage.name_zh,
        kind=stage.kind,
        position=stage.position,
        stall_days=stage.stall_days,
        probability=stage.probability,
        criteria=tuple((c.id, c.text) for c in (stage.criteria if criteria is None else criteria)),
    )


def deal_info(
    deal: Deal, *, last_open_position: int | None = None, stage: StageInfo | None = None
) -> DealInfo:
    has_next = last_open_position is None or deal.stage.position < last_open_position
    return DealInfo(
        number=deal.number,
        version=deal.version,
        name=deal.name,
        amount=deal.amount,
        owner_id=deal.owner_id,
        stage=stage or stage_info(deal.stage),
        status=deal.status,
        source=deal.source,
        expected_close=deal.expected_close,
        next_step=deal.next_step,
        next_step_due=deal.next_step_due,
        lost_reason=deal.lost_reason,
        created_at=deal.created_at,
        last_activity_at=deal.last_activity_at,
        has_next_stage=has_next,
    )


def last_open_position(session: so.Session, team_id: str) -> int:
    return max(s.position for s in stage_infos(session, team_id).values() if s.kind == OPEN)


def deal_infos(session: so.Session, team_id: str, deals: Sequence[Deal]) -> list[DealInfo]:
    last = last_open_position(session, team_id)
    return [deal_info(d, last_open_position=last) for d in deals]


def _stage_infos(team: domain.TeamStages) -> dict[int, StageInfo]:
    return {row.id: stage_info(row, team.criteria.get(row.id, ())) for row in team.stages}


def stage_infos(session: so.Session, team_id: str) -> dict[int, StageInfo]:
    """Snapshots of the team's active stages by id, made once per stages revision."""
    return domain.team_stages(session, team_id).view("presenters.stage_infos", _stage_infos)


def deal_detail(
    session: so.Session, deal: Deal, records: domain.DealRecords | None = None
) -> DealDetail:
    """Everything a deal card shows; `records` when the caller knows them already."""
    active = stage_infos(session, deal.team_id)
    removed: dict[int, StageInfo] = {}

    def info(stage_id: int) -> StageInfo:
        if stage_id in active:
            return active[stage_id]
        if stage_id not in removed:  # history may name a removed stage
            stage = session.get(Stage, stage_id)
            assert stage is not None
            removed[stage_id] = stage_info(stage)
        return removed[stage_id]

    if records is None:
        records = domain.deal_records(session, deal)
    return DealDetail(
        deal=deal_info(
            deal,
            last_open_position=last_open_position(session, deal.team_id),
            stage=info(deal.stage_id),
        ),
        history=tuple(
            HistoryEntry(
                from_stage=info(from_id) if from_id is not None else None,
                to_stage=info(to_id),
                at=at,
                by=by,
            )
            for from_id, to_id, at, by in records.history
        ),
        notes=tuple(NoteInfo(*row) for row in records.notes),
        confirmations=tuple(ConfirmationInfo(*row) for row in records.confirmations),
    )
