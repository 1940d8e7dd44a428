"""The deal domain: rules and changes, knowing nothing of Slack.

Every function takes the caller's session and never commits: the caller owns the
transaction (`with sessions.begin() as session:`). A change bumps the deal's version
(`save_deal` writes it `WHERE version = :old`) and appends its stage-history row in the
same transaction, so concurrent edits cannot lose either.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any, TypeVar

import sqlalchemy as sa
from sqlalchemy import orm as so
from sqlalchemy.dialects import postgresql

from funnelbot.errors import (
    Ambiguous,
    AtLastOpenStage,
    CriteriaRequired,
    Forbidden,
    NotFound,
    StaleVersion,
    UserError,
)
from funnelbot.models import (
    LOST,
    OPEN,
    WON,
    Deal,
    ExitConfirmation,
    ExitCriterion,
    Note,
    Reminder,
    Stage,
    StageChange,
    Workspace,
    new_revision,
    stage_rank,
)

T = TypeVar("T")
TEMPLATE_TEAM = "*"
MAX_NAME = 200
MAX_TEXT = 2000  # a Slack section holds 3000 characters; leave room for the frame
MAX_SHORT = 100
MAX_AMOUNT = Decimal("1e15")
ONE_TICK = dt.timedelta(microseconds=1)


@dataclass(frozen=True)
class Actor:
    """Who is acting, and the roles that decide what they may change."""

    user_id: str
    is_manager: bool = False
    is_admin: bool = False

    def may_change(self, deal: Deal) -> bool:
        return self.is_admin or self.is_manager or deal.owner_id == self.user_id


def utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


# --- workspace and stages -------------------------------------------------------------


def ensure_workspace(session: so.Session, team_id: str, now: dt.datetime) -> Workspace:
    """The workspace row, created on first sight with a copy of the default stages."""
    workspace = session.get(Workspace, team_id)
    if workspace is not None:
        return workspace
    if session.bind is not None and session.bind.dialect.name == "postgresql":
        # Two replicas meeting a new team at once: the loser waits, then sees the row.
        stmt = (
            postgresql.insert(Workspace)
            .values(team_id=team_id, next_deal_number=1, settings={}, created_at=now)
            .on_conflict_do_nothing()
            # RETURNING, not rowcount: an ORM-enabled INSERT reports rowcount -1.
            .returning(Workspace.team_id)
        )
        inserted = session.execute(stmt).first() is not None
    else:
        session.add(Workspace(team_id=team_id, next_deal_number=1, settings={}, created_at=now))
        session.flush()
        inserted = 1
    if inserted:
        template = session.scalars(sa.select(Stage).where(Stage.team_id == TEMPLATE_TEAM)).all()
        for stage in template:
            session.add(
                Stage(
                    team_id=team_id,
                    key=stage.key,
                    name_en=stage.name_en,
                    name_zh=stage.name_zh,
                    position=stage.position,
                    kind=stage.kind,
                    stall_days=stage.stall_days,
                    probability=stage.probability,
                    active=True,
                )
            )
        session.flush()
    workspace = session.get(Workspace, team_id, populate_existing=True)
    assert workspace is not None
    return workspace


_STAGES_MEMO = "funnelbot.team_stages"
# Revisions read along with other rows in this transaction (saves the separate read).
_REVISIONS_MEMO = "funnelbot.stages_revisions"
_stages, _criteria, _workspaces = Stage.__table__, ExitCriterion.__table__, Workspace.__table__
# Core statements built once (no ORM objects, no per-call compilation).
_STAGES_REVISION = sa.select(_workspaces.c.stages_revision).where(
    _workspaces.c.team_id == sa.bindparam("team")
)
# The revision as a column another query can carry (bound to the same `team` parameter).
TEAM_STAGES_REVISION = _STAGES_REVISION.scalar_subquery()
_TEAM_STAGES = (
    sa.select(_stages)
    .where(_stages.c.team_id == sa.bindparam("team"))
    .order_by(_stages.c.position, _stages.c.id)
)
_ACTIVE_CRITERIA = (
    sa.select(_criteria)
    .join(_stages, _stages.c.id == _criteria.c.stage_id)
    .where(_stages.c.team_id == sa.bindparam("team"), _stages.c.active, _criteria.c.active)
    .order_by(_criteria.c.stage_id, _criteria.c.position, _criteria.c.id)
)
Row = sa.Row[Any]


@dataclass(frozen=True, eq=False)
class TeamStages:
    """A team's active stages in funnel order and their active exit criteria, as
    immutable rows (`row.key`, `row.position`, …); shared by every session of this
    process while the revision holds."""

    stages: tuple[Row, ...]
    criteria: dict[int, tuple[Row, ...]]
    # Funnel rank (models.stage_rank) of every stage the team ever had, removed ones too:
    # history and deals' furthest stages may name those.
    ranks: dict[int, int]
    _views: dict[str, Any] = field(default_factory=dict)

    @property
    def open(self) -> tuple[Row, ...]:
        return tuple(row for row in self.stages if row.kind == OPEN)

    def view(self, name: str, build: Callable[[TeamStages], T]) -> T:
        """Something derived from these rows (e.g. presenters' snapshots), built once."""
        if name not in self._views:
            self._views[name] = build(self)
        return self._views[name]  # type: ignore[no-any-return]

    def row(self, stage_id: int) -> Row | None:
        return next((row for row in self.stages if row.id == stage_id), None)


# (team, stages_revision) -> TeamStages.
_team_stages_cache: dict[tuple[str, int], TeamStages] = {}
_TEAM_STAGES_CACHE_SIZE = 1000


def team_stages(session: so.Session, team_id: str) -> TeamStages:
    """The team's stages as rows, once per transaction: from this process's cache while
    the workspace's `stages_revision` is the one they were read under (one small read),
    else from the tables. A change of a stage or criterion in the session forgets them."""
    memo: dict[str, TeamStages] = session.info.setdefault(_STAGES_MEMO, {})
    if team_id in memo:
        return memo[team_id]
    params = {"team": team_id}
    revision = session.info.get(_REVISIONS_MEMO, {}).get(team_id)
    if revision is None:
        revision = session.execute(_STAGES_REVISION, params).scalar()
    key = (team_id, revision) if revision is not None else None
    found = _team_stages_cache.get(key) if key else None
    if found is None:
        every = session.execute(_TEAM_STAGES, params).all()
        criteria: dict[int, list[Row]] = {}
        for row in session.execute(_ACTIVE_CRITERIA, params):
            criteria.setdefault(row.stage_id, []).append(row)
        found = TeamStages(
            stages=tuple(row for row in every if row.active),
            criteria={k: tuple(v) for k, v in criteria.items()},
            ranks={row.id: stage_rank(row.kind, row.position) for row in every},
        )
        if key:
            if len(_team_stages_cache) >= _TEAM_STAGES_CACHE_SIZE:
                _team_stages_cache.clear()
            _team_stages_cache[key] = found
    memo[team_id] = found
    return found


def note_revision(session: so.Session, team_id: str, revision: int | None) -> None:
    """A statement of this transaction also read the team's stages revision (e.g. as
    `TEAM_STAGES_REVISION`): `team_stages` will not read it again."""
    if revision is not None:
        session.info.setdefault(_REVISIONS_MEMO, {})[team_id] = revision


def _forget_stages(session: so.Session) -> None:
    session.info.pop(_STAGES_MEMO, None)
    session.info.pop(_REVISIONS_MEMO, None)


def _persistent(session: so.Session, cls: type[Stage | ExitCriterion], row: Row) -> Any:
    """The session's object for this row: the one it has, else one made from the row
    without SQL (as if loaded by a query)."""
    found = session.identity_map.get(so.util.identity_key(cls, row.id))
    if found is not None:
        return found
    obj = cls(**row._asdict())
    so.make_transient_to_detached(obj)
    session.add(obj)
    return obj


def stage_object(session: so.Session, team_id: str, stage_id: int) -> Stage:
    """One active stage as the session's ORM object, exit criteria included, without SQL
    when the team's stages are cached."""
    team = team_stages(session, team_id)
    values = team.row(stage_id)
    if values is None:  # not an active stage of this team
        stage = session.get(Stage, stage_id)
        if stage is None or stage.team_id != team_id:
            raise NotFound("error.unknown_stage", stage=str(stage_id), choices="")
        return stage
    stage = _persistent(session, Stage, values)
    if "criteria" in sa.inspect(stage).unloaded:
        so.attributes.set_committed_value(
            stage,
            "criteria",
            [_persistent(session, ExitCriterion, c) for c in team.criteria.get(stage_id, ())],
        )
    return stage  # type: ignore[no-any-return]


def funnel_stages(session: so.Session, team_id: str) -> list[Stage]:
    """Active stages in funnel order: open stages by position, then won, then lost."""
    stages = [
        stage_object(session, team_id, row.id) for row in team_stages(session, team_id).stages
    ]
    return sorted(stages, key=lambda s: (s.position, s.id))


@sa.event.listens_for(so.Session, "after_transaction_end")
def _forget_stages_after_transaction(
    session: so.Session, transaction: so.SessionTransaction
) -> None:
    if transaction.parent is None:  # a flush's own subtransaction ends too
        _forget_stages(session)


@sa.event.listens_for(so.Session, "after_flush")
def _forget_stages_after_change(session: so.Session, _context: object) -> None:
    """A stage or criterion changed: forget the memo, and give the team's stages a new
    revision so every process (this one too) reads them afresh."""
    changed = (*session.new, *session.dirty, *session.deleted)
    teams = {obj.team_id for obj in changed if isinstance(obj, Stage | ExitCriterion)}
    if teams:
        _forget_stages(session)
        stages_changed(session.connection(), teams)


def stages_changed(connection: sa.Connection, team_ids: Iterable[str]) -> None:
    """Tell every process that these teams' stages or criteria changed (ORM changes do
    this by themselves; call it after changing those tables with plain SQL)."""
    connection.execute(
        sa.update(_workspaces)
        .where(_workspaces.c.team_id.in_(sorted(team_ids)))
        .values(stages_revision=new_revision())
    )


def open_stages(session: so.Session, team_id: str) -> list[Stage]:
    return [s for s in funnel_stages(session, team_id) if s.kind == OPEN]


def stage_of_kind(session: so.Session, team_id: str, kind: str) -> Stage:
    """The team's first active stage of a kind: its won or lost stage, or its first open one."""
    ids = [row.id for row in team_stages(session, team_id).stages if row.kind == kind]
    if not ids:
        raise LookupError(f"team {team_id} has no active {kind} stage")
    return stage_object(session, team_id, ids[0])


def find_stage(session: so.Session, team_id: str, text: str) -> Stage:
    """A stage by key, English or Chinese name, or an unambiguous prefix of one."""
    wanted = text.strip().casefold()
    stages = funnel_stages(session, team_id)
    names = {s.id: (s.key.casefold(), s.name_en.casefold(), s.name_zh.casefold()) for s in stages}
    exact = [s for s in stages if wanted in names[s.id]]
    if len(exact) == 1:
        return exact[0]
    prefixed = [s for s in stages if wanted and any(n.startswith(wanted) for n in names[s.id])]
    if len(prefixed) == 1:
        return prefixed[0]
    raise UserError("error.unknown_stage", stage=text, choices=", ".join(s.key for s in stages))


# --- validation -----------------------------------------------------------------------


def clean_name(name: str) -> str:
    name = name.strip()
    if not name:
        raise UserError("error.name_required")
    if len(name) > MAX_NAME:
        raise UserError("error.name_too_long", length=len(name), limit=MAX_NAME)
    return name


def clean_text(text: str, *, field: str = "text", limit: int = MAX_TEXT) -> str:
    text = text.strip()
    if not text:
        raise UserError("error.text_required", field=field)
    if len(text) > limit:
        raise UserError("error.text_too_long", field=field, length=len(text), limit=limit)
    return text


def clean_optional(text: str | None, *, field: str, limit: int = MAX_SHORT) -> str | None:
    if text is None or not text.strip():
        return None
    return clean_text(text, field=field, limit=limit)


def clean_amount(amount: Decimal | None) -> Decimal:
    if amount is None:
        return Decimal("0.00")
    if not amount.is_finite() or amount < 0:
        raise UserError("error.bad_amount", value=str(amount))
    if amount >= MAX_AMOUNT:
        raise UserError("error.amount_too_large", value=str(amount))
    return amount.quantize(Decimal("0.01"))


# --- reading deals --------------------------------------------------------------------


# The deal, and its team's stages revision in the same round trip (see team_stages).
_DEAL_BY_NUMBER = sa.select(
    Deal,
    sa.select(_workspaces.c.stages_revision)
    .where(_workspaces.c.team_id == Deal.team_id)
    .scalar_subquery(),
).where(Deal.team_id == sa.bindparam("team"), Deal.number == sa.bindparam("number"))


def get_deal(session: so.Session, team_id: str, number: int) -> Deal:
    found = session.execute(_DEAL_BY_NUMBER, {"team": team_id, "number": number}).one_or_none()
    if found is None:
        raise NotFound("error.deal_not_found", ref=f"#{number}")
    deal, revision = found
    note_revision(session, team_id, revision)
    return deal  # type: ignore[no-any-return]


def resolve_ref(session: so.Session, team_id: str, number: int | None, prefix: str | None) -> Deal:
    """`#42`, `42`, or a case-insensitive name prefix that names exactly one deal."""
    if number is not None:
        return get_deal(session, team_id, number)
    assert prefix is not None
    folded = prefix.casefold()
    escaped = folded.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    matches = session.scalars(
        sa.select(Deal)
        .where(Deal.team_id == team_id, Deal.name_folded.like(escaped + "%", escape="\\"))
        # Open deals first: the one a rep is working on is the one they mean.
        .order_by(sa.case((Deal.status == OPEN, 0), else_=1), Deal.number.desc())
        .limit(11)
    ).all()
    if not matches:
        raise NotFound("error.deal_not_found", ref=prefix)
    exact = [d for d in matches if d.name_folded == folded]
    if len(matches) == 1:
        return matches[0]
    if len(exact) == 1:
        return exact[0]
    open_matches = [d for d in matches if d.status == OPEN]
    if len(open_matches) == 1:
        return open_matches[0]
    raise Ambiguous(prefix, [(d.number, d.name) for d in matches[:10]])


def list_deals(
    session: so.Session,
    team_id: str,
    *,
    owner_id: str | None = None,
    stage: Stage | None = None,
    status: str | None = OPEN,
    limit: int = 20,
) -> tuple[list[Deal], int]:
    """A page of deals (most recently active first) and how many match in all."""
    query = sa.select(Deal).where(Deal.team_id == team_id)
    if owner_id:
        query = query.where(Deal.owner_id == owner_id)
    if stage is not None:
        query = query.where(Deal.stage_id == stage.id)
    elif status:
        query = query.where(Deal.status == status)
    total = session.scalar(sa.select(sa.func.count()).select_from(query.subquery())) or 0
    deals = session.scalars(query.order_by(Deal.last_activity_at.desc()).limit(limit)).all()
    return list(deals), total


_changes, _notes, _confirmations = (
    StageChange.__table__,
    Note.__table__,
    ExitConfirmation.__table__,
)
_RECENT_NOTES = (
    sa.select(_notes.c.id, _notes.c.author, _notes.c.text, _notes.c.at)
    .where(_notes.c.deal_id == sa.bindparam("deal"))
    .order_by(_notes.c.id.desc())
    .limit(sa.bindparam("notes"))
    .subquery()
)
# What a deal card shows besides the deal, in one round trip: its history, its latest
# notes and its exit-criteria confirmations, one shape of row for all three.
_DEAL_RECORDS = sa.union_all(
    sa.select(
        sa.literal("history").label("kind"),
        _changes.c.id,
        _changes.c.from_stage_id,
        _changes.c.to_stage_id,
        _changes.c.at,
        _changes.c.by,
        sa.null().label("text"),
    ).where(_changes.c.deal_id == sa.bindparam("deal")),
    sa.select(
        sa.literal("note"),
        _RECENT_NOTES.c.id,
        sa.null(),
        sa.null(),
        _RECENT_NOTES.c.at,
        _RECENT_NOTES.c.author,
        _RECENT_NOTES.c.text,
    ),
    sa.select(
        sa.literal("confirmation"),
        _confirmations.c.id,
        sa.null(),
        sa.null(),
        _confirmations.c.at,
        _confirmations.c.by,
        _criteria.c.text,
    )
    .join(_criteria, _criteria.c.id == _confirmations.c.criterion_id)
    .where(_confirmations.c.deal_id == sa.bindparam("deal")),
)


@dataclass(frozen=True)
class DealRecords:
    """A deal's stage changes in order (from_stage_id, to_stage_id, at, by), its latest
    notes newest first (author, text, at) and its confirmed exit criteria in order
    (criterion text, by, at)."""

    history: list[tuple[int | None, int, dt.datetime, str]]
    notes: list[tuple[str, str, dt.datetime]]
    confirmations: list[tuple[str, str, dt.datetime]]


def new_deal_records(deal: Deal) -> DealRecords:
    """The records of a deal `create_deal` has just made (its one history row), without
    reading them back."""
    return DealRecords(
        history=[(None, deal.stage_id, deal.created_at, deal.created_by)],
        notes=[],
        confirmations=[],
    )


def deal_records(session: so.Session, deal: Deal, notes: int = 5) -> DealRecords:
    rows = sorted(
        session.execute(_DEAL_RECORDS, {"deal": deal.id, "notes": notes}).all(), key=lambda r: r.id
    )
    return DealRecords(
        history=[(r.from_stage_id, r.to_stage_id, r.at, r.by) for r in rows if r.kind == "history"],
        notes=[(r.by, r.text, r.at) for r in reversed(rows) if r.kind == "note"],
        confirmations=[(r.text, r.by, r.at) for r in rows if r.kind == "confirmation"],
    )


# --- changing deals -------------------------------------------------------------------


_deals = Deal.__table__
# Everything a change may set; the rest (id, team, number, creation) never changes.
_CHANGEABLE = tuple(
    column.key
    for column in _deals.c
    if column.key not in {"id", "team_id", "number", "created_by", "created_at", "version"}
)
_SAVES: dict[tuple[str, ...], sa.Update] = {}


def _save_statement(keys: tuple[str, ...]) -> sa.Update:
    """`UPDATE deals SET <keys>, version = :new WHERE id = :id AND version = :old`, one
    statement object per set of changed fields, so SQLAlchemy compiles each once."""
    statement = _SAVES.get(keys)
    if statement is None:
        statement = _SAVES[keys] = (
            sa.update(_deals)
            .where(_deals.c.id == sa.bindparam("id_"), _deals.c.version == sa.bindparam("old_"))
            .values(
                {key: sa.bindparam(key, type_=_deals.c[key].type) for key in keys}
                | {"version": sa.bindparam("new_")}
            )
        )
    return statement


@dataclass(frozen=True)
class WrittenWith:
    """A row that belongs to a deal change (its history row, a note), written in the same
    round trip as the change where the database allows it: on PostgreSQL the
    version-checked UPDATE and this INSERT are one statement (`WITH saved AS (UPDATE …
    RETURNING id) INSERT … SELECT … FROM saved`: no row when the version check fails),
    elsewhere two. The row's values are bound as `:row_<column>`; `computed` gives, per
    dialect, columns the database works out from them."""

    table: sa.Table
    columns: tuple[str, ...]
    computed: Callable[[str], dict[str, sa.ColumnElement[Any]]] | None = None


_WRITES_WITH: dict[tuple[str, tuple[str, ...], WrittenWith], sa.Insert] = {}


def _written_with_statement(dialect: str, keys: tuple[str, ...], along: WrittenWith) -> sa.Insert:
    """The INSERT of `along`'s row; on PostgreSQL with the deal's UPDATE as its source."""
    cache_key = (dialect, keys if dialect == "postgresql" else (), along)
    statement = _WRITES_WITH.get(cache_key)
    if statement is None:
        computed = along.computed(dialect) if along.computed else {}
        values = [sa.bindparam(f"row_{c}", type_=along.table.c[c].type) for c in along.columns]
        select = sa.select(*values, *computed.values())
        if dialect == "postgresql":
            saved = _save_statement(keys).returning(_deals.c.id).cte("saved")
            select = select.select_from(saved)
        statement = _WRITES_WITH[cache_key] = (
            sa.insert(along.table)
            .from_select([*along.columns, *computed], select)
            # An INSERT's row count is not kept unless asked for; here it is the version check.
            .execution_options(preserve_rowcount=True)
        )
    return statement


def save_deal(
    session: so.Session,
    deal: Deal,
    along: WrittenWith | None = None,
    row: dict[str, Any] | None = None,
) -> None:
    """Write a deal's changed fields and bump its version, or raise StaleDataError when
    someone else changed it since it was read (the optimistic lock); `along` and `row`
    insert the row that belongs to the change (see `WrittenWith`).

    The same UPDATE the ORM's flush would emit (`version_id_col`), issued directly: a
    deal change is one row, and the unit of work's bookkeeping cost more than the
    statement on the hot path. The deal is then put back as freshly loaded (public ORM
    calls only), so the session has nothing left to flush for it.
    """
    attrs = sa.inspect(deal).attrs
    keys = tuple(key for key in _CHANGEABLE if attrs[key].history.has_changes())
    old = deal.version
    values: dict[str, Any] = {key: getattr(deal, key) for key in keys}
    values.update(id_=deal.id, old_=old, new_=old + 1)
    row_values = {f"row_{key}": value for key, value in (row or {}).items()}
    with session.no_autoflush:
        connection = session.connection()
        dialect = connection.dialect.name
        if along is not None and dialect == "postgresql":
            statement = _written_with_statement(dialect, keys, along)
            result = connection.execute(statement, values | row_values)
            along = None  # written
        else:
            result = connection.execute(_save_statement(keys), values)
    if result.rowcount != 1:
        raise so.exc.StaleDataError(f"deal {deal.id} version {old} was changed meanwhile")
    if along is not None:
        connection.execute(_written_with_statement(dialect, keys, along), row_values)
    session.expunge(deal)
    so.make_transient(deal)
    deal.version = old + 1
    so.make_transient_to_detached(deal)
    session.add(deal)


def _check(deal: Deal, actor: Actor, expected_version: int | None) -> None:
    if expected_version is not None and deal.version != expected_version:
        raise StaleVersion("error.stale", number=deal.number)
    if not actor.may_change(deal):
        raise Forbidden("error.forbidden", number=deal.number, owner=deal.owner_id)


def _tick(deal: Deal, now: dt.datetime) -> dt.datetime:
    """`now`, but strictly after the deal's last change, so history sorts in commit order."""
    return max(now, deal.updated_at + ONE_TICK)


def _touch(deal: Deal, at: dt.datetime) -> None:
    deal.updated_at = at
    deal.last_activity_at = at


def history_row(
    deal: Deal,
    *,
    from_stage_id: int | None,
    to: Stage,
    at: dt.datetime,
    by: str,
    deal_version: int,
    entered_at: dt.datetime | None,
) -> dict[str, Any]:
    """One history row's values (for `append_history`), with the facts metrics read from it
    (stay length, deal's birth). History is only ever appended, so no ORM object is made."""
    return {
        "team_id": deal.team_id,
        "deal_id": deal.id,
        "from_stage_id": from_stage_id,
        "to_stage_id": to.id,
        "at": at,
        "by": by,
        "deal_version": deal_version,
        "stay_days": None if entered_at is None else (at - entered_at) / dt.timedelta(days=1),
        "deal_created_at": deal.created_at,
    }


_ADD_HISTORY = sa.insert(StageChange.__table__)


def append_history(session: so.Session, *rows: dict[str, Any]) -> None:
    """Insert history rows made by `history_row` (their deal must be flushed already)."""
    session.execute(_ADD_HISTORY, rows[0] if len(rows) == 1 else list(rows))


def days_between(dialect: str, start: sa.ColumnElement, end: sa.ColumnElement) -> sa.ColumnElement:
    """Fractional days from `start` to `end` in SQL, on either backend."""
    if dialect == "sqlite":
        return sa.func.julianday(end) - sa.func.julianday(start)
    return sa.extract("epoch", end - start) / 86400.0


def _stay_of_leaving(dialect: str) -> dict[str, sa.ColumnElement[Any]]:
    """A history row's stay in the stage the deal leaves, measured in SQL from the deal's
    previous row (read by the INSERT itself: one round trip where reading it first took
    two)."""
    entered_at = (
        sa.select(_changes.c.at)
        .where(_changes.c.deal_id == sa.bindparam("row_deal_id"))
        .order_by(_changes.c.id.desc())
        .limit(1)
        .scalar_subquery()
    )
    return {"stay_days": days_between(dialect, entered_at, sa.bindparam("row_at"))}


# The history row of a stage change (made by `history_row` without `entered_at`).
STAGE_CHANGE = WrittenWith(
    _changes,
    (
        "team_id",
        "deal_id",
        "from_stage_id",
        "to_stage_id",
        "at",
        "by",
        "deal_version",
        "deal_created_at",
    ),
    _stay_of_leaving,
)


def further(ranks: dict[int, int], reached: int | None, entered: int) -> int:
    """The furthest of two stage ids a deal has entered, by funnel rank (`TeamStages.ranks`;
    the one reached earlier on a tie)."""
    return entered if reached is None or ranks[entered] > ranks.get(reached, -1) else reached


def _change_stage(
    session: so.Session, deal: Deal, to: Stage, actor: Actor, now: dt.datetime
) -> None:
    # No autoflush: a caller may have set fields that belong to this change (lose sets the
    # reason), and each flush of the deal is a version.
    with session.no_autoflush:
        ranks = team_stages(session, deal.team_id).ranks
    reached = deal.furthest_stage_id
    at = _tick(deal, now)
    from_id = deal.stage_id
    deal.stage = to
    deal.stage_id = to.id
    deal.status = to.kind
    deal.closed_at = at if to.kind in (WON, LOST) else None
    deal.furthest_stage_id = further(ranks, reached, to.id)
    deal.lost_from_stage_id = from_id if to.kind == LOST else None
    if to.kind != LOST:
        deal.lost_reason = None
    _touch(deal, at)
    row = history_row(
        deal,
        from_stage_id=from_id,
        to=to,
        at=at,
        by=actor.user_id,
        deal_version=deal.version + 1,  # the version this change makes
        entered_at=None,  # the stay is measured in SQL (STAGE_CHANGE)
    )
    row.pop("stay_days")
    save_deal(session, deal, STAGE_CHANGE, row)


def refresh_furthest_stages(session: so.Session, team_id: str) -> None:
    """Recompute each deal's furthest stage from its history, after the stage order changed.

    Not a change of the deals: versions stay, and deals in this session are told afresh.
    """
    entered = so.aliased(Stage)
    furthest = (
        sa.select(StageChange.to_stage_id)
        .join(entered, entered.id == StageChange.to_stage_id)
        .where(StageChange.deal_id == Deal.id)
        .order_by(entered.rank.desc(), StageChange.id)
        .limit(1)
        .scalar_subquery()
    )
    session.execute(
        sa.update(Deal).where(Deal.team_id == team_id).values(furthest_stage_id=furthest),
        execution_options={"synchronize_session": False},
    )
    for obj in list(session.identity_map.values()):
        if isinstance(obj, Deal):
            session.expire(obj, ["furthest_stage_id"])


_TAKE_DEAL_NUMBER = (
    sa.update(_workspaces)
    .where(_workspaces.c.team_id == sa.bindparam("team"))
    .values(next_deal_number=_workspaces.c.next_deal_number + 1)
    .returning(_workspaces.c.next_deal_number, _workspaces.c.stages_revision)
)


_CREATE_DEAL = sa.insert(_deals).returning(_deals.c.id)
# A new deal's columns that `create_deal` binds; PostgreSQL's one-statement create works
# out the others (its number from the workspace counter, the stage when none is given).
_CREATE_BOUND = tuple(
    c.key for c in _deals.c if c.key not in {"id", "number", "stage_id", "furthest_stage_id"}
)


def _create_in_one_statement() -> sa.Select[Any]:
    """PostgreSQL: take the workspace's next deal number, insert the deal and its first
    history row, in one statement (three round trips elsewhere). The stage is the bound
    `stage_id`, else the team's first active open stage (as `stage_of_kind` picks it);
    returns (id, number, stage_id, stages_revision). Values are bound as `:deal_<column>`
    (a bare column name would also be SET by the UPDATE: SQLAlchemy takes parameters named
    like a table's columns as its values)."""
    taken = (
        sa.update(_workspaces)
        .where(_workspaces.c.team_id == sa.bindparam("deal_team_id"))
        .values(next_deal_number=_workspaces.c.next_deal_number + 1)
        .returning(
            (_workspaces.c.next_deal_number - 1).label("number"), _workspaces.c.stages_revision
        )
        .cte("taken")
    )
    first_open = (
        sa.select(_stages.c.id)
        .where(
            _stages.c.team_id == sa.bindparam("deal_team_id"),
            _stages.c.active,
            _stages.c.kind == OPEN,
        )
        .order_by(_stages.c.position, _stages.c.id)
        .limit(1)
        .scalar_subquery()
    )
    given_stage = sa.bindparam("deal_stage_id", type_=_deals.c.stage_id.type)
    stage_id = sa.func.coalesce(given_stage, first_open)
    bound = [sa.bindparam(f"deal_{key}", type_=_deals.c[key].type) for key in _CREATE_BOUND]
    made = (
        sa.insert(_deals)
        .from_select(
            [*_CREATE_BOUND, "number", "stage_id", "furthest_stage_id"],
            sa.select(*bound, taken.c.number, stage_id, stage_id),
        )
        .returning(*_deals.c)
        .cte("made")
    )
    # The deal's first history row: entering its stage when it was created (cf. history_row).
    first_change = sa.insert(_changes).from_select(
        [*STAGE_CHANGE.columns, "stay_days"],
        sa.select(
            made.c.team_id,  # team_id
            made.c.id,  # deal_id
            sa.null(),  # from_stage_id
            made.c.stage_id,  # to_stage_id
            made.c.created_at,  # at
            made.c.created_by,  # by
            made.c.version,  # deal_version
            made.c.created_at,  # deal_created_at
            sa.null(),  # stay_days: no earlier stay
        ),
    )
    return (
        sa.select(made.c.id, made.c.number, made.c.stage_id, taken.c.stages_revision)
        .select_from(made.join(taken, sa.true()))  # one row each
        .add_cte(first_change.cte("first_change"))
    )


_CREATE_DEAL_ONCE = _create_in_one_statement()


def create_deal(
    session: so.Session,
    team_id: str,
    actor: Actor,
    *,
    name: str,
    amount: Decimal | None = None,
    owner_id: str | None = None,
    stage: Stage | None = None,
    source: str | None = None,
    expected_close: dt.date | None = None,
    now: dt.datetime,
) -> Deal:
    name = clean_name(name)
    amount = clean_amount(amount)
    source = clean_optional(source, field="source")
    # Anyone may log a deal for a colleague; the colleague owns it from then on.
    owner_id = owner_id or actor.user_id
    if stage is not None and stage.kind != OPEN:
        raise UserError("error.new_deal_closed_stage", stage=stage.key)
    # Every column given (unset ones as NULL), so the INSERT always has one shape.
    fields: dict[str, Any] = dict.fromkeys(_CHANGEABLE)
    fields.update(
        team_id=team_id,
        name=name,
        name_folded=name.casefold(),
        amount=amount,
        owner_id=owner_id,
        status=OPEN,
        source=source,
        expected_close=expected_close,
        created_by=actor.user_id,
        created_at=now,
        updated_at=now,
        last_activity_at=now,
        version=1,
    )
    # Inserted directly (as save_deal updates), then taken into the session as loaded.
    with session.no_autoflush:
        connection = session.connection()
        in_one_statement = connection.dialect.name == "postgresql"
        if in_one_statement:
            deal_id, number, stage_id, revision = connection.execute(
                _CREATE_DEAL_ONCE,
                {f"deal_{key}": fields[key] for key in _CREATE_BOUND}
                | {"deal_stage_id": stage.id if stage is not None else None},
            ).one()
            note_revision(session, team_id, revision)
            stage = stage or stage_object(session, team_id, stage_id)
        else:
            taken, revision = connection.execute(_TAKE_DEAL_NUMBER, {"team": team_id}).one()
            number = taken - 1
            note_revision(session, team_id, revision)
            stage = stage or stage_of_kind(session, team_id, OPEN)
            fields.update(number=number, stage_id=stage.id, furthest_stage_id=stage.id)
            deal_id = connection.execute(_CREATE_DEAL, fields).scalar_one()
    fields.update(number=number, stage_id=stage.id, furthest_stage_id=stage.id)
    deal = Deal(id=deal_id, stage=stage, **fields)
    so.make_transient_to_detached(deal)
    session.add(deal)
    if not in_one_statement:
        append_history(
            session,
            history_row(
                deal,
                from_stage_id=None,
                to=stage,
                at=now,
                by=actor.user_id,
                deal_version=deal.version,
                entered_at=None,
            ),
        )
    return deal


def next_stage(session: so.Session, deal: Deal) -> Stage | None:
    """The open stage after the deal's, or None at the last open stage."""
    here = (deal.stage.position, deal.stage.id)
    later = [
        row.id for row in team_stages(session, deal.team_id).open if (row.position, row.id) > here
    ]
    return stage_object(session, deal.team_id, later[0]) if later else None


def _require_open(deal: Deal) -> None:
    if deal.status != OPEN:
        raise UserError("error.deal_closed", number=deal.number, status=deal.status)


def _confirm_criteria(
    session: so.Session,
    deal: Deal,
    actor: Actor,
    confirmed: Iterable[int] | None,
    now: dt.datetime,
    target: Stage | None = None,
) -> None:
    """Leaving a stage forward: every exit criterion must be confirmed, and that is recorded."""
    criteria = stage_object(session, deal.team_id, deal.stage_id).criteria
    if not criteria:
        return
    wanted = {c.id for c in criteria}
    if confirmed is None or not wanted <= set(confirmed):
        raise CriteriaRequired(
            deal.number, deal.version, deal.stage.key, target.key if target else None
        )
    for criterion in criteria:
        session.add(
            ExitConfirmation(
                team_id=deal.team_id,
                deal_id=deal.id,
                criterion_id=criterion.id,
                by=actor.user_id,
                at=now,
            )
        )


def advance(
    session: so.Session,
    deal: Deal,
    actor: Actor,
    *,
    now: dt.datetime,
    expected_version: int | None = None,
    confirmed: Iterable[int] | None = None,
) -> Deal:
    _check(deal, actor, expected_version)
    _require_open(deal)
    target = next_stage(session, deal)
    if target is None:
        raise AtLastOpenStage(deal.number, deal.version)
    _confirm_criteria(session, deal, actor, confirmed, now)
    _change_stage(session, deal, target, actor, now)
    return deal


def move(
    session: so.Session,
    deal: Deal,
    actor: Actor,
    target: Stage,
    *,
    now: dt.datetime,
    expected_version: int | None = None,
    confirmed: Iterable[int] | None = None,
    reason: str | None = None,
) -> Deal:
    """To any stage, forward or back; to won/lost closes the deal."""
    _check(deal, actor, expected_version)
    _require_open(deal)
    if target.id == deal.stage_id:
        raise UserError("error.same_stage", number=deal.number, stage=target.key)
    if target.kind == LOST:
        return lose(session, deal, actor, reason, now=now, expected_version=expected_version)
    forward = target.kind == WON or target.position > deal.stage.position
    if forward:
        _confirm_criteria(session, deal, actor, confirmed, now, target)
    _change_stage(session, deal, target, actor, now)
    return deal


def win(
    session: so.Session,
    deal: Deal,
    actor: Actor,
    *,
    now: dt.datetime,
    expected_version: int | None = None,
    confirmed: Iterable[int] | None = None,
) -> Deal:
    """Won is forward: the stage's exit criteria are confirmed first, as for `move … won`."""
    _check(deal, actor, expected_version)
    _require_open(deal)
    won = stage_of_kind(session, deal.team_id, WON)
    _confirm_criteria(session, deal, actor, confirmed, now, won)
    _change_stage(session, deal, won, actor, now)
    return deal


def lose(
    session: so.Session,
    deal: Deal,
    actor: Actor,
    reason: str | None,
    *,
    now: dt.datetime,
    expected_version: int | None = None,
) -> Deal:
    _check(deal, actor, expected_version)
    _require_open(deal)
    reason = clean_optional(reason, field="lost_reason", limit=MAX_TEXT)
    lost = stage_of_kind(session, deal.team_id, LOST)  # query first: autoflush bumps versions
    # Set with the stage change: one UPDATE, one version, the one its history row records.
    deal.lost_reason = reason
    _change_stage(session, deal, lost, actor, now)
    return deal


def reopen(
    session: so.Session,
    deal: Deal,
    actor: Actor,
    *,
    now: dt.datetime,
    expected_version: int | None = None,
) -> Deal:
    """Back to the open stage the deal was closed from (or the first one if it is gone)."""
    _check(deal, actor, expected_version)
    if deal.status == OPEN:
        raise UserError("error.not_closed", number=deal.number)
    last_open = session.scalar(
        sa.select(Stage)
        .join(StageChange, StageChange.from_stage_id == Stage.id)
        .where(StageChange.deal_id == deal.id, StageChange.to_stage_id == deal.stage_id)
        .order_by(StageChange.id.desc())
        .limit(1)
    )
    if last_open is None or not last_open.active or last_open.kind != OPEN:
        last_open = open_stages(session, deal.team_id)[0]
    _change_stage(session, deal, last_open, actor, now)
    return deal


NOTE = WrittenWith(Note.__table__, ("team_id", "deal_id", "author", "text", "at"))


def add_note(
    session: so.Session,
    deal: Deal,
    actor: Actor,
    text: str,
    *,
    now: dt.datetime,
    expected_version: int | None = None,
) -> None:
    _check(deal, actor, expected_version)
    text = clean_text(text, field="note")
    at = _tick(deal, now)
    _touch(deal, at)
    note = {"team_id": deal.team_id, "deal_id": deal.id, "author": actor.user_id}
    save_deal(session, deal, NOTE, note | {"text": text, "at": at})


def set_next_step(
    session: so.Session,
    deal: Deal,
    actor: Actor,
    text: str,
    due: dt.date | None,
    *,
    now: dt.datetime,
    expected_version: int | None = None,
) -> Deal:
    _check(deal, actor, expected_version)
    deal.next_step = clean_text(text, field="next_step")
    deal.next_step_due = due
    _touch(deal, _tick(deal, now))
    save_deal(session, deal)
    return deal


def assign(
    session: so.Session,
    deal: Deal,
    actor: Actor,
    owner_id: str,
    *,
    now: dt.datetime,
    expected_version: int | None = None,
) -> Deal:
    _check(deal, actor, expected_version)
    if owner_id == deal.owner_id:
        raise UserError("error.same_owner", number=deal.number, owner=owner_id)
    deal.owner_id = owner_id
    _touch(deal, _tick(deal, now))
    save_deal(session, deal)
    return deal


@dataclass(frozen=True)
class DealEdit:
    """The fields of the Edit modal; None clears an optional field."""

    name: str
    amount: Decimal | None
    source: str | None
    expected_close: dt.date | None
    next_step: str | None
    next_step_due: dt.date | None


def validate_edit(edit: DealEdit) -> DealEdit:
    """Raise the first field error; the modal shows it beside that field."""
    return DealEdit(
        name=clean_name(edit.name),
        amount=clean_amount(edit.amount),
        source=clean_optional(edit.source, field="source"),
        expected_close=edit.expected_close,
        next_step=clean_optional(edit.next_step, field="next_step", limit=MAX_TEXT),
        next_step_due=edit.next_step_due,
    )


def edit(
    session: so.Session,
    deal: Deal,
    actor: Actor,
    changes: DealEdit,
    *,
    now: dt.datetime,
    expected_version: int | None = None,
) -> Deal:
    _check(deal, actor, expected_version)
    changes = validate_edit(changes)
    deal.name = changes.name
    deal.name_folded = changes.name.casefold()
    deal.amount = changes.amount if changes.amount is not None else Decimal("0.00")
    deal.source = changes.source
    deal.expected_close = changes.expected_close
    deal.next_step = changes.next_step
    deal.next_step_due = changes.next_step_due
    _touch(deal, _tick(deal, now))
    save_deal(session, deal)
    return deal


def snooze(
    session: so.Session,
    deal: Deal,
    actor: Actor,
    until: dt.date,
    reason: str | None,
    *,
    now: dt.datetime,
    today: dt.date,
    expected_version: int | None = None,
) -> Deal:
    """Quiet the stalled-deal nudges for this deal until `until`; the reason becomes a note."""
    _check(deal, actor, expected_version)
    _require_open(deal)
    if until <= today:
        raise UserError("error.snooze_past", date=until.isoformat())
    reason = clean_optional(reason, field="reason", limit=MAX_TEXT)
    deal.snoozed_until = until
    at = _tick(deal, now)
    deal.updated_at = at
    save_deal(session, deal)
    if reason:
        session.add(
            Note(team_id=deal.team_id, deal_id=deal.id, author=actor.user_id, text=reason, at=at)
        )
    return deal


def add_reminder(
    session: so.Session,
    deal: Deal,
    actor: Actor,
    due_at: dt.datetime,
    text: str,
    *,
    now: dt.datetime,
) -> Reminder:
    """A reminder to the acting user about a deal; the `reminders` job sends it when due."""
    if due_at <= now:
        raise UserError("error.remind_past")
    reminder = Reminder(
        team_id=deal.team_id,
        deal_id=deal.id,
        user_id=actor.user_id,
        due_at=due_at,
        text=clean_text(text, field="reminder"),
    )
    session.add(reminder)
    session.flush()
    return reminder
