"""`funnelbot import`: deals with their stage history from CSV (SPEC §6), all or nothing.

Every row is validated before anything is written; bad rows are reported by line number
(the header is line 1) and a failed import keeps nothing.
"""

from __future__ import annotations

import csv
import datetime as dt
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from decimal import Decimal
from typing import IO
from zoneinfo import ZoneInfo

import sqlalchemy as sa
from sqlalchemy import orm as so

from funnelbot import deals as domain
from funnelbot import parsing
from funnelbot.errors import UserError
from funnelbot.models import LOST, OPEN, WON, Deal, Stage, Workspace

REQUIRED = (
    "name",
    "amount",
    "owner",
    "source",
    "stage",
    "status",
    "lost_reason",
    "created_at",
    "closed_at",
)
ENTERED = "entered:"
IMPORTER = "import"

OwnerLookup = Callable[[str], str | None]


@dataclass
class ImportReport:
    rows: int = 0
    deals: int = 0
    history: int = 0
    errors: list[str] = field(default_factory=list)


@dataclass
class _Row:
    line: int
    name: str
    amount: Decimal
    owner: str
    source: str | None
    status: str
    lost_reason: str | None
    created_at: dt.datetime
    closed_at: dt.datetime | None
    expected_close: dt.date | None
    history: list[tuple[dt.datetime, Stage]]


def parse_when(text: str, zone: ZoneInfo) -> dt.datetime:
    """An ISO date or date-time; naive values are in the workspace time zone."""
    value = text.strip()
    try:
        if len(value) == 10:
            return dt.datetime.combine(dt.date.fromisoformat(value), dt.time(), zone).astimezone(
                dt.UTC
            )
        parsed = dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError as exc:
        raise UserError("error.bad_date", value=text) from exc
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=zone)
    return parsed.astimezone(dt.UTC)


class Importer:
    def __init__(
        self, session: so.Session, team_id: str, tz: str, lookup_owner: OwnerLookup | None
    ) -> None:
        self.session = session
        self.team_id = team_id
        self.zone = ZoneInfo(tz)
        self.lookup_owner = lookup_owner
        domain.ensure_workspace(session, team_id, domain.utcnow())
        stages = session.scalars(sa.select(Stage).where(Stage.team_id == team_id)).all()
        self.stages = {s.key: s for s in stages}
        self.owners: dict[str, str] = {}

    def owner(self, text: str) -> str:
        value = text.strip()
        if not value:
            raise UserError("import.owner_required")
        if "@" not in value:
            return value
        if value not in self.owners:
            found = self.lookup_owner(value) if self.lookup_owner else None
            if not found:
                raise UserError("import.owner_unknown", email=value)
            self.owners[value] = found
        return self.owners[value]

    def stage(self, key: str) -> Stage:
        stage = self.stages.get(key.strip().lower())
        if stage is None:
            raise UserError("error.unknown_stage", stage=key, choices=", ".join(self.stages))
        return stage

    def parse_row(self, line: int, row: dict[str, str]) -> _Row:
        get = lambda k: (row.get(k) or "").strip()  # noqa: E731
        name = domain.clean_name(get("name"))
        amount = parsing.parse_amount(get("amount")) if get("amount") else Decimal("0.00")
        status = get("status").lower() or OPEN
        if status not in (OPEN, WON, LOST):
            raise UserError("import.bad_status", status=get("status"))
        stage = self.stage(get("stage"))
        if (stage.kind == OPEN) != (status == OPEN) or (status != OPEN and stage.kind != status):
            raise UserError("import.stage_status", stage=stage.key, status=status)
        created = parse_when(get("created_at"), self.zone) if get("created_at") else None
        if created is None:
            raise UserError("import.created_required")
        closed = parse_when(get("closed_at"), self.zone) if get("closed_at") else None
        if status != OPEN and closed is None:
            raise UserError("import.closed_required")
        expected = None
        if get("expected_close"):
            expected = parse_when(get("expected_close"), self.zone).astimezone(self.zone).date()
        entries: list[tuple[dt.datetime, Stage]] = []
        for column, value in row.items():
            if column and column.startswith(ENTERED) and value and value.strip():
                entries.append((parse_when(value, self.zone), self.stage(column[len(ENTERED) :])))
        entries.sort(key=lambda e: (e[0], e[1].kind != OPEN, e[1].position))
        if not entries:
            entries = [(created, stage)]
        if entries[-1][1].id != stage.id:
            entries.append((closed or max(entries[-1][0], created), stage))
        return _Row(
            line=line,
            name=name,
            amount=amount,
            owner=self.owner(get("owner")),
            source=domain.clean_optional(get("source"), field="source"),
            status=status,
            lost_reason=get("lost_reason") or None if status == LOST else None,
            created_at=created,
            closed_at=closed if status != OPEN else None,
            expected_close=expected,
            history=entries,
        )

    def write(self, rows: Iterable[_Row]) -> tuple[int, int]:
        workspace = self.session.get(Workspace, self.team_id, with_for_update=True)
        assert workspace is not None
        deals = history = 0
        ranks = domain.team_stages(self.session, self.team_id).ranks
        for row in rows:
            number = workspace.next_deal_number
            workspace.next_deal_number += 1
            last_at = row.history[-1][0]
            final = row.history[-1][1]
            furthest: int | None = None
            for _, entered in row.history:
                furthest = domain.further(ranks, furthest, entered.id)
            assert furthest is not None
            lost_from = (
                row.history[-2][1].id if row.status == LOST and len(row.history) > 1 else None
            )
            deal = Deal(
                team_id=self.team_id,
                number=number,
                name=row.name,
                name_folded=row.name.casefold(),
                amount=row.amount,
                owner_id=row.owner,
                stage_id=final.id,
                status=row.status,
                source=row.source,
                expected_close=row.expected_close,
                lost_reason=row.lost_reason,
                created_by=IMPORTER,
                created_at=row.created_at,
                updated_at=last_at,
                last_activity_at=last_at,
                closed_at=row.closed_at,
                version=len(row.history),
                furthest_stage_id=furthest,
                lost_from_stage_id=lost_from,
            )
            self.session.add(deal)
            self.session.flush()
            previous: tuple[dt.datetime, Stage] | None = None
            rows = []
            for version, (at, stage) in enumerate(row.history, start=1):
                rows.append(
                    domain.history_row(
                        deal,
                        from_stage_id=previous[1].id if previous else None,
                        to=stage,
                        at=at,
                        by=IMPORTER,
                        deal_version=version,
                        entered_at=previous[0] if previous else None,
                    )
                )
                previous = (at, stage)
            if rows:
                domain.append_history(self.session, *rows)
            history += len(rows)
            deals += 1
        self.session.flush()
        return deals, history


def _first_line(last_line: int, row: dict[str | None, object]) -> int:
    """The line a record starts on: `line_num` is its last line, and a quoted field may
    hold line breaks (LF, CRLF or CR: the file is read with newline="")."""
    breaks = 0
    for value in row.values():
        for text in value if isinstance(value, list) else [value]:
            if isinstance(text, str):
                breaks += text.count("\n") + text.count("\r") - text.count("\r\n")
    return last_line - breaks


def run_import(
    session: so.Session,
    team_id: str,
    source: IO[str],
    *,
    tz: str,
    lookup_owner: OwnerLookup | None,
    translate: Callable[[UserError], str],
) -> ImportReport:
    """Validate every row, then write them all in the caller's transaction (or nothing)."""
    report = ImportReport()
    reader = csv.DictReader(source)
    header = reader.fieldnames or []
    missing = [c for c in REQUIRED if c not in header]
    if missing:
        report.errors.append(f"line 1: missing columns: {', '.join(missing)}")
        return report
    importer = Importer(session, team_id, tz, lookup_owner)
    for column in header:
        if (
            column.startswith(ENTERED)
            and column[len(ENTERED) :].strip().lower() not in importer.stages
        ):
            report.errors.append(f"line 1: unknown stage in column {column!r}")
    parsed: list[_Row] = []
    for row in reader:
        report.rows += 1
        line = _first_line(reader.line_num, row)
        try:
            parsed.append(importer.parse_row(line, row))
        except UserError as err:
            report.errors.append(f"line {line}: {translate(err)}")
    if report.errors:
        return report
    report.deals, report.history = importer.write(parsed)
    return report
