"""A deal change is written by `deals.save_deal`: one UPDATE guarded by the version the
deal was read at (SPEC §2 optimistic concurrency, §8 no lost update). Run on SQLite and
PostgreSQL."""

from __future__ import annotations

import datetime as dt

import pytest
import sqlalchemy as sa
from sqlalchemy import orm as so

from funnelbot import deals
from funnelbot.db import make_session_factory
from funnelbot.models import Deal, Note, Stage, StageChange, Workspace

TEAM = "TSAVE"
ALICE = deals.Actor(user_id="UALICE", is_manager=False, is_admin=False)
NOW = dt.datetime(2026, 11, 2, 9, 0, tzinfo=dt.UTC)


def _row(engine: sa.Engine, deal_id: int) -> sa.Row:
    with engine.connect() as conn:
        return conn.execute(sa.select(Deal.__table__).where(Deal.id == deal_id)).one()


@pytest.fixture
def sessions(db_engine: sa.Engine) -> so.sessionmaker:
    return make_session_factory(db_engine)


@pytest.fixture
def deal_id(sessions: so.sessionmaker) -> int:
    with sessions.begin() as session:
        deals.ensure_workspace(session, TEAM, NOW)
        deal = deals.create_deal(session, TEAM, ALICE, name="Acme", now=NOW)
        assert not session.new and not session.dirty  # written, nothing left to flush
        return deal.id


def test_a_new_deal_is_stored_as_created(db_engine: sa.Engine, deal_id: int) -> None:
    row = _row(db_engine, deal_id)
    assert (row.team_id, row.number, row.name, row.name_folded) == (TEAM, 1, "Acme", "acme")
    assert (row.owner_id, row.created_by, row.status) == ("UALICE", "UALICE", "open")
    assert row.version == 1
    assert row.stage_id == row.furthest_stage_id and row.amount == 0
    assert row.created_at == row.updated_at == row.last_activity_at == NOW
    assert row.next_step is None and row.closed_at is None and row.lost_reason is None


def test_a_change_is_written_once_and_leaves_nothing_to_flush(
    db_engine: sa.Engine, sessions: so.sessionmaker, deal_id: int
) -> None:
    with sessions.begin() as session:
        deal = deals.get_deal(session, TEAM, 1)
        deals.set_next_step(session, deal, ALICE, "call", None, now=NOW + dt.timedelta(hours=1))
        assert deal.version == 2
        assert not session.dirty  # the commit must not write the deal a second time
        deals.add_note(session, deal, ALICE, "called", now=NOW + dt.timedelta(hours=2))
        assert deal.version == 3 and not session.dirty
    row = _row(db_engine, deal_id)
    assert (row.version, row.next_step) == (3, "call")
    assert row.last_activity_at == NOW + dt.timedelta(hours=2)


def _meanwhile(session: so.Session, **values: object) -> None:
    """Another writer's committed change, as this transaction's UPDATE would then find it
    (made on the session's own connection: SQLite lets one writer at a time)."""
    session.connection().execute(sa.update(Deal.__table__).values(**values))


def test_a_change_to_a_deal_changed_meanwhile_is_refused_and_writes_nothing(
    db_engine: sa.Engine, sessions: so.sessionmaker, deal_id: int
) -> None:
    with sessions() as session:
        stale = deals.get_deal(session, TEAM, 1)
        _meanwhile(session, version=2, owner_id="UBOB")
        with pytest.raises(so.exc.StaleDataError):
            deals.set_next_step(session, stale, ALICE, "too late", None, now=NOW)
        row = session.connection().execute(sa.select(Deal.__table__).where(Deal.id == deal_id))
        row = row.one()
        assert (row.version, row.owner_id, row.next_step) == (2, "UBOB", None)


def test_only_the_changed_fields_are_written(
    db_engine: sa.Engine, sessions: so.sessionmaker, deal_id: int
) -> None:
    """A stage reorder recomputes furthest stages without a new version; a change made on
    a deal read before it must not put the old value back."""
    with sessions.begin() as session:
        deal = deals.get_deal(session, TEAM, 1)
        _meanwhile(session, furthest_stage_id=None)
        deals.add_note(session, deal, ALICE, "hello", now=NOW)
    row = _row(db_engine, deal_id)
    assert row.version == 2 and row.furthest_stage_id is None


def test_a_change_and_its_row_are_refused_whole_when_the_deal_changed_meanwhile(
    db_engine: sa.Engine, sessions: so.sessionmaker, deal_id: int
) -> None:
    """The note or history row written with a change (in the same statement on
    PostgreSQL) must not be stored when the version check refuses the change."""
    with sessions() as session:
        stale = deals.get_deal(session, TEAM, 1)
        _meanwhile(session, version=2)
        with pytest.raises(so.exc.StaleDataError):
            deals.add_note(session, stale, ALICE, "too late", now=NOW)
        with pytest.raises(so.exc.StaleDataError):
            deals.advance(session, stale, ALICE, now=NOW)
        count = session.connection().execute
        notes = count(sa.select(sa.func.count()).select_from(Note.__table__)).scalar()
        changes = count(sa.select(sa.func.count()).select_from(StageChange.__table__)).scalar()
        assert (notes, changes) == (0, 1)  # only the creation's history row


def test_the_history_row_carries_the_version_its_change_made(
    db_engine: sa.Engine, sessions: so.sessionmaker, deal_id: int
) -> None:
    with sessions.begin() as session:
        deal = deals.get_deal(session, TEAM, 1)
        deals.add_note(session, deal, ALICE, "first call", now=NOW + dt.timedelta(hours=1))
        deals.advance(session, deal, ALICE, now=NOW + dt.timedelta(days=2))
    with db_engine.connect() as conn:
        history = conn.execute(
            sa.select(StageChange.deal_version, StageChange.stay_days).order_by(StageChange.id)
        ).all()
        note = conn.execute(sa.select(Note.text, Note.author)).one()
    assert [h.deal_version for h in history] == [1, 3]  # created v1, note v2, advance v3
    assert history[1].stay_days == pytest.approx(2.0)
    assert tuple(note) == ("first call", "UALICE")
    assert _row(db_engine, deal_id).version == 3


def _first_change(engine: sa.Engine, deal_id: int) -> sa.Row:
    with engine.connect() as conn:
        return conn.execute(
            sa.select(StageChange.__table__).where(StageChange.deal_id == deal_id)
        ).one()


def test_new_deals_take_the_next_numbers_and_one_history_row_each(
    db_engine: sa.Engine, sessions: so.sessionmaker, deal_id: int
) -> None:
    """(PostgreSQL writes all of it in one statement, SQLite in three: the same rows.)"""
    later = NOW + dt.timedelta(minutes=5)
    with sessions.begin() as session:
        proposal = deals.find_stage(session, TEAM, "proposal")
        second = deals.create_deal(session, TEAM, ALICE, name="Beta", now=later)
        third = deals.create_deal(session, TEAM, ALICE, name="Gamma", stage=proposal, now=later)
        assert (second.number, third.number) == (2, 3)
        assert second.stage.key == "lead" and third.stage is proposal
        ids = (second.id, third.id)
    for created_id, key in zip(ids, ("lead", "proposal"), strict=True):
        row = _row(db_engine, created_id)
        stage_key = _stage_key(db_engine, row.stage_id)
        assert stage_key == key and row.furthest_stage_id == row.stage_id
        change = _first_change(db_engine, created_id)
        assert (change.team_id, change.from_stage_id, change.to_stage_id) == (
            TEAM,
            None,
            row.stage_id,
        )
        assert (change.at, change.by, change.deal_version) == (later, "UALICE", 1)
        assert change.stay_days is None and change.deal_created_at == later


def _stage_key(engine: sa.Engine, stage_id: int) -> str:
    with engine.connect() as conn:
        return conn.execute(sa.select(Stage.key).where(Stage.id == stage_id)).scalar_one()


def test_a_new_deal_without_a_stage_enters_the_first_open_stage_as_now_ordered(
    db_engine: sa.Engine, sessions: so.sessionmaker, deal_id: int
) -> None:
    """Another replica reordered the stages (interest first): the next deal starts there."""
    with db_engine.begin() as conn:
        stages = Stage.__table__
        conn.execute(sa.update(stages).where(stages.c.key == "interest").values(position=-1))
        conn.execute(
            sa.update(Workspace.__table__).values(
                stages_revision=Workspace.__table__.c.stages_revision + 1
            )
        )
    with sessions.begin() as session:
        deal = deals.create_deal(session, TEAM, ALICE, name="Delta", now=NOW)
        assert deal.stage.key == "interest"
        created_id = deal.id
    assert _stage_key(db_engine, _row(db_engine, created_id).stage_id) == "interest"
    assert _stage_key(db_engine, _first_change(db_engine, created_id).to_stage_id) == "interest"
