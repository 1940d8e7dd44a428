"""Typed ORM tables (SQLAlchemy 2, `Mapped[...]`); every row carries its Slack workspace.

Stage history is append-only: the domain inserts rows and never updates or deletes them.
Money is `Numeric`/`Decimal`; timestamps are timezone-aware UTC on every backend.
"""

from __future__ import annotations

import datetime as dt
import secrets
from decimal import Decimal
from typing import Any

import sqlalchemy as sa
from sqlalchemy import orm as so
from sqlalchemy.ext.hybrid import hybrid_property
from sqlalchemy.types import TypeDecorator

OPEN, WON, LOST = "open", "won", "lost"
WON_RANK = 1_000_000  # `won` lies beyond every open stage


def stage_rank(kind: str, position: int) -> int:
    """Place in the funnel: open stages by position, won beyond them, lost nowhere."""
    return WON_RANK if kind == WON else position if kind == OPEN else -1


def new_revision() -> int:
    return secrets.randbits(62)


class UTCDateTime(TypeDecorator[dt.datetime]):
    """Aware UTC datetimes everywhere; SQLite stores them naive, so tag them on the way out."""

    impl = sa.DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: dt.datetime | None, dialect: sa.Dialect) -> Any:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to a UTC column")
        value = value.astimezone(dt.UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: Any, dialect: sa.Dialect) -> dt.datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=dt.UTC)
        return value.astimezone(dt.UTC)


Money = sa.Numeric(20, 2)


class Base(so.DeclarativeBase):
    metadata = sa.MetaData(
        naming_convention={
            "ix": "ix_%(column_0_label)s",
            "uq": "uq_%(table_name)s_%(column_0_name)s",
            "ck": "ck_%(table_name)s_%(constraint_name)s",
            "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
            "pk": "pk_%(table_name)s",
        }
    )


class Workspace(Base):
    """One Slack workspace: its settings (win over the environment) and deal numbering."""

    __tablename__ = "workspaces"

    team_id: so.Mapped[str] = so.mapped_column(sa.String(32), primary_key=True)
    next_deal_number: so.Mapped[int] = so.mapped_column(sa.Integer, default=1)
    settings: so.Mapped[dict[str, Any]] = so.mapped_column(sa.JSON, default=dict)
    created_at: so.Mapped[dt.datetime] = so.mapped_column(UTCDateTime)
    # New (random) at every change of the team's stages or exit criteria: the key under
    # which each process caches them (random, so two databases never share one).
    stages_revision: so.Mapped[int] = so.mapped_column(sa.BigInteger, default=new_revision)


class Stage(Base):
    """A funnel stage; team data, not code. `kind` is open, won or lost."""

    __tablename__ = "stages"
    __table_args__ = (sa.UniqueConstraint("team_id", "key", name="uq_stages_team_key"),)

    id: so.Mapped[int] = so.mapped_column(primary_key=True)
    team_id: so.Mapped[str] = so.mapped_column(sa.String(32), index=True)
    key: so.Mapped[str] = so.mapped_column(sa.String(40))
    name_en: so.Mapped[str] = so.mapped_column(sa.String(80))
    name_zh: so.Mapped[str] = so.mapped_column(sa.String(80))
    position: so.Mapped[int] = so.mapped_column(sa.Integer)
    kind: so.Mapped[str] = so.mapped_column(sa.String(8), default=OPEN)
    stall_days: so.Mapped[int | None] = so.mapped_column(sa.Integer)
    probability: so.Mapped[Decimal] = so.mapped_column(sa.Numeric(5, 4))
    # Removed stages stay (history points at them) but take no new deals.
    active: so.Mapped[bool] = so.mapped_column(sa.Boolean, default=True)

    criteria: so.Mapped[list[ExitCriterion]] = so.relationship(
        order_by="ExitCriterion.position",
        primaryjoin="and_(Stage.id == ExitCriterion.stage_id, ExitCriterion.active)",
        viewonly=True,
    )

    def name(self, lang: str) -> str:
        return self.name_zh if lang.startswith("zh") else self.name_en

    @hybrid_property
    def rank(self) -> int:
        return stage_rank(self.kind, self.position)

    @rank.inplace.expression
    @classmethod
    def _rank_expression(cls) -> sa.ColumnElement[int]:
        return sa.case((cls.kind == WON, WON_RANK), (cls.kind == OPEN, cls.position), else_=-1)


class ExitCriterion(Base):
    """One item of a stage's exit checklist (准出标准)."""

    __tablename__ = "exit_criteria"

    id: so.Mapped[int] = so.mapped_column(primary_key=True)
    team_id: so.Mapped[str] = so.mapped_column(sa.String(32))
    stage_id: so.Mapped[int] = so.mapped_column(sa.ForeignKey("stages.id"), index=True)
    position: so.Mapped[int] = so.mapped_column(sa.Integer)
    text: so.Mapped[str] = so.mapped_column(sa.String(300))
    active: so.Mapped[bool] = so.mapped_column(sa.Boolean, default=True)


class Deal(Base):
    __tablename__ = "deals"
    __table_args__ = (
        sa.UniqueConstraint("team_id", "number", name="uq_deals_team_number"),
        sa.Index("ix_deals_team_owner_status", "team_id", "owner_id", "status"),
        sa.Index("ix_deals_team_stage", "team_id", "stage_id"),
        sa.Index("ix_deals_team_last_activity", "team_id", "status", "last_activity_at"),
        sa.Index("ix_deals_team_created", "team_id", "created_at"),
        sa.Index("ix_deals_team_name_folded", "team_id", "name_folded"),
    )

    id: so.Mapped[int] = so.mapped_column(primary_key=True)
    team_id: so.Mapped[str] = so.mapped_column(sa.String(32))
    number: so.Mapped[int] = so.mapped_column(sa.Integer)
    name: so.Mapped[str] = so.mapped_column(sa.String(200))
    # Lower-cased name for case-insensitive prefix refs that use an index on both backends.
    name_folded: so.Mapped[str] = so.mapped_column(sa.String(200))
    amount: so.Mapped[Decimal] = so.mapped_column(Money, default=Decimal("0"))
    owner_id: so.Mapped[str] = so.mapped_column(sa.String(32))
    stage_id: so.Mapped[int] = so.mapped_column(sa.ForeignKey("stages.id"))
    status: so.Mapped[str] = so.mapped_column(sa.String(8), default=OPEN)
    source: so.Mapped[str | None] = so.mapped_column(sa.String(100))
    expected_close: so.Mapped[dt.date | None] = so.mapped_column(sa.Date)
    next_step: so.Mapped[str | None] = so.mapped_column(sa.Text)
    next_step_due: so.Mapped[dt.date | None] = so.mapped_column(sa.Date)
    lost_reason: so.Mapped[str | None] = so.mapped_column(sa.Text)
    created_by: so.Mapped[str] = so.mapped_column(sa.String(32))
    created_at: so.Mapped[dt.datetime] = so.mapped_column(UTCDateTime)
    updated_at: so.Mapped[dt.datetime] = so.mapped_column(UTCDateTime)
    last_activity_at: so.Mapped[dt.datetime] = so.mapped_column(UTCDateTime)
    closed_at: so.Mapped[dt.datetime | None] = so.mapped_column(UTCDateTime)
    snoozed_until: so.Mapped[dt.date | None] = so.mapped_column(sa.Date)
    version: so.Mapped[int] = so.mapped_column(sa.Integer, nullable=False)
    # Kept with each stage change so conversion metrics read one row per deal, not its
    # history: the furthest stage the deal ever entered (by today's stage order; a change
    # of that order recomputes it), and for a lost deal the stage it was lost from. Stage
    # ids derived from the history, so no constraint (adding one would rebuild the table).
    furthest_stage_id: so.Mapped[int | None] = so.mapped_column(sa.Integer)
    lost_from_stage_id: so.Mapped[int | None] = so.mapped_column(sa.Integer)

    stage: so.Mapped[Stage] = so.relationship(lazy="joined", innerjoin=True)

    # Every UPDATE of a deal carries `AND version = :old` and raises StaleDataError on 0 rows:
    # `deals.save_deal` writes changes that way, and SQLAlchemy's flush does the same for
    # any other ORM write of a deal.
    __mapper_args__ = {"version_id_col": version}


class StageChange(Base):
    """Immutable stage history: one row per change, a multi-stage jump included."""

    __tablename__ = "stage_changes"
    __table_args__ = (
        sa.Index("ix_stage_changes_deal", "deal_id", "id"),
        sa.Index("ix_stage_changes_team_at", "team_id", "at"),
        # Stay lengths per stage in order, for averages and medians without a sort.
        sa.Index(
            "ix_stage_changes_stays", "team_id", "from_stage_id", "stay_days", "deal_created_at"
        ),
    )

    id: so.Mapped[int] = so.mapped_column(primary_key=True)
    team_id: so.Mapped[str] = so.mapped_column(sa.String(32))
    deal_id: so.Mapped[int] = so.mapped_column(sa.ForeignKey("deals.id"))
    from_stage_id: so.Mapped[int | None] = so.mapped_column(sa.ForeignKey("stages.id"))
    to_stage_id: so.Mapped[int] = so.mapped_column(sa.ForeignKey("stages.id"))
    at: so.Mapped[dt.datetime] = so.mapped_column(UTCDateTime)
    by: so.Mapped[str] = so.mapped_column(sa.String(32))
    # The deal version this change produced: a gap or a duplicate is visible at once.
    deal_version: so.Mapped[int] = so.mapped_column(sa.Integer)
    # Facts known when the row is written, so metrics need no window over the history:
    # how long the deal had been in `from_stage` (fractional days; NULL on a deal's first
    # row) and when the deal was created (the metrics cohort is deals created in a period).
    stay_days: so.Mapped[float | None] = so.mapped_column(sa.Float)
    deal_created_at: so.Mapped[dt.datetime] = so.mapped_column(UTCDateTime)

    from_stage: so.Mapped[Stage | None] = so.relationship(foreign_keys=[from_stage_id])
    to_stage: so.Mapped[Stage] = so.relationship(foreign_keys=[to_stage_id])


class Note(Base):
    __tablename__ = "notes"
    __table_args__ = (sa.Index("ix_notes_deal", "deal_id", "id"),)

    id: so.Mapped[int] = so.mapped_column(primary_key=True)
    team_id: so.Mapped[str] = so.mapped_column(sa.String(32))
    deal_id: so.Mapped[int] = so.mapped_column(sa.ForeignKey("deals.id"))
    author: so.Mapped[str] = so.mapped_column(sa.String(32))
    text: so.Mapped[str] = so.mapped_column(sa.Text)
    at: so.Mapped[dt.datetime] = so.mapped_column(UTCDateTime)


class ExitConfirmation(Base):
    """Who confirmed which exit criterion of which stage for a deal, and when."""

    __tablename__ = "exit_confirmations"

    id: so.Mapped[int] = so.mapped_column(primary_key=True)
    team_id: so.Mapped[str] = so.mapped_column(sa.String(32))
    deal_id: so.Mapped[int] = so.mapped_column(sa.ForeignKey("deals.id"), index=True)
    criterion_id: so.Mapped[int] = so.mapped_column(sa.ForeignKey("exit_criteria.id"))
    by: so.Mapped[str] = so.mapped_column(sa.String(32))
    at: so.Mapped[dt.datetime] = so.mapped_column(UTCDateTime)


class Reminder(Base):
    __tablename__ = "reminders"
    __table_args__ = (sa.Index("ix_reminders_due", "sent_at", "due_at"),)

    id: so.Mapped[int] = so.mapped_column(primary_key=True)
    team_id: so.Mapped[str] = so.mapped_column(sa.String(32))
    deal_id: so.Mapped[int] = so.mapped_column(sa.ForeignKey("deals.id"))
    user_id: so.Mapped[str] = so.mapped_column(sa.String(32))
    due_at: so.Mapped[dt.datetime] = so.mapped_column(UTCDateTime)
    text: so.Mapped[str] = so.mapped_column(sa.Text)
    sent_at: so.Mapped[dt.datetime | None] = so.mapped_column(UTCDateTime)


class JobRun(Base):
    """Ledger of scheduled job runs: the unique (team, job, period) claim makes jobs run once."""

    __tablename__ = "job_runs"
    __table_args__ = (
        sa.UniqueConstraint("team_id", "job", "period_key", name="uq_job_runs_claim"),
    )

    id: so.Mapped[int] = so.mapped_column(primary_key=True)
    team_id: so.Mapped[str] = so.mapped_column(sa.String(32))
    job: so.Mapped[str] = so.mapped_column(sa.String(40))
    period_key: so.Mapped[str] = so.mapped_column(sa.String(40))
    claimed_by: so.Mapped[str] = so.mapped_column(sa.String(100))
    started_at: so.Mapped[dt.datetime] = so.mapped_column(UTCDateTime)
    finished_at: so.Mapped[dt.datetime | None] = so.mapped_column(UTCDateTime)
    outcome: so.Mapped[str | None] = so.mapped_column(sa.Text)


class Nudge(Base):
    """One stalled-deal nudge: who was nudged about which deal version, and whether the
    managers were told too. The 72-hour quiet period and escalation are read from here."""

    __tablename__ = "nudges"
    __table_args__ = (sa.Index("ix_nudges_deal", "deal_id", "at"),)

    id: so.Mapped[int] = so.mapped_column(primary_key=True)
    team_id: so.Mapped[str] = so.mapped_column(sa.String(32))
    deal_id: so.Mapped[int] = so.mapped_column(sa.ForeignKey("deals.id"))
    user_id: so.Mapped[str] = so.mapped_column(sa.String(32))
    at: so.Mapped[dt.datetime] = so.mapped_column(UTCDateTime)
    deal_version: so.Mapped[int] = so.mapped_column(sa.Integer)
    escalated: so.Mapped[bool] = so.mapped_column(sa.Boolean, default=False)


class SeenRequest(Base):
    """Requests already handled (by Slack signature or event id): a replayed or retried
    delivery is acknowledged and dropped, also across replicas."""

    __tablename__ = "seen_requests"

    key: so.Mapped[str] = so.mapped_column(sa.String(100), primary_key=True)
    at: so.Mapped[dt.datetime] = so.mapped_column(UTCDateTime, index=True)


def _slack_sdk_tables() -> None:
    """slack_sdk's OAuth installation and state tables, declared on our metadata so our
    migrations create them and the schema check covers them.
    https://tools.slack.dev/python-slack-sdk/oauth/"""
    from slack_sdk.oauth.installation_store.sqlalchemy import SQLAlchemyInstallationStore
    from slack_sdk.oauth.state_store.sqlalchemy import SQLAlchemyOAuthStateStore

    SQLAlchemyInstallationStore.build_installations_table(Base.metadata, "slack_installations")
    SQLAlchemyInstallationStore.build_bots_table(Base.metadata, "slack_bots")
    SQLAlchemyOAuthStateStore.build_oauth_states_table(Base.metadata, "slack_oauth_states")


_slack_sdk_tables()
