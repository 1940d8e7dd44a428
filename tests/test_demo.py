"""The demo team (`funnelbot demo`): realistic, consistent, idempotent."""

from __future__ import annotations

import datetime as dt
import hashlib
import io
from collections import Counter, defaultdict
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa

from funnelbot import db, demo, export
from funnelbot.models import Deal, Note, Stage, StageChange

NOW = dt.datetime(2026, 11, 20, 15, 30, tzinfo=dt.UTC)
TEAM = "T_LOCAL"


def exported(sessions, team: str = TEAM) -> dict[str, str]:  # type: ignore[no-untyped-def]
    out = {}
    with sessions() as session:
        for kind in export.KINDS:
            buf = io.StringIO()
            export.write(session, team, kind, "csv", buf)
            out[kind] = buf.getvalue()
    return out


def checksum(rows: dict[str, str]) -> dict[str, tuple[int, str]]:
    return {
        kind: (text.count("\n"), hashlib.sha256(text.encode()).hexdigest())
        for kind, text in rows.items()
    }


@pytest.fixture(scope="module")
def seeded(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[sa.Engine, object]]:
    """One demo database for the read-only checks (seeding takes a few seconds)."""
    path: Path = tmp_path_factory.mktemp("demo") / "demo.db"
    engine = db.make_engine(f"sqlite:///{path}")
    db.upgrade(engine)
    sessions = db.make_session_factory(engine)
    result = demo.seed_demo(sessions, TEAM, NOW, seed=42)
    assert result.seeded
    try:
        yield engine, sessions
    finally:
        engine.dispose()


def test_twice_leaves_the_same_data(seeded) -> None:  # type: ignore[no-untyped-def]
    _, sessions = seeded
    before = exported(sessions)
    again = demo.seed_demo(sessions, TEAM, NOW + dt.timedelta(days=3), seed=7)
    assert not again.seeded
    assert again.deals == before["deals"].count("\n") - 1
    assert checksum(exported(sessions)) == checksum(before)


def test_a_realistic_team(seeded) -> None:  # type: ignore[no-untyped-def]
    engine, _ = seeded
    with engine.connect() as conn:
        deals = conn.execute(
            sa.select(
                Deal.owner_id,
                Deal.source,
                Deal.amount,
                Deal.status,
                Deal.lost_reason,
                Deal.created_at,
                Deal.created_by,
            ).where(Deal.team_id == TEAM)
        ).all()
        notes = conn.scalar(sa.select(sa.func.count()).select_from(Note))
    assert 350 <= len(deals) <= 400
    owners = Counter(d.owner_id for d in deals)
    assert set(owners) == {u.user_id for u in demo.REPS}  # 5 reps own the deals
    assert min(owners.values()) > 40
    assert len(demo.MANAGERS) == 2
    assert {d.created_by for d in deals} & demo.MANAGER_IDS  # managers log some deals
    assert len({d.source for d in deals}) >= 5
    lost_reasons = {d.lost_reason for d in deals if d.status == "lost"}
    assert len(lost_reasons - {None}) >= 6
    amounts = sorted(float(d.amount) for d in deals if d.amount)
    assert amounts[0] >= 1500 and amounts[-1] <= 400_000
    median = amounts[len(amounts) // 2]
    assert 8_000 < median < 50_000
    created = sorted(d.created_at for d in deals)
    assert NOW - dt.timedelta(days=183) <= created[0] < NOW - dt.timedelta(days=150)
    assert NOW - dt.timedelta(days=10) < created[-1] < NOW
    assert notes > 100


def test_histories_are_consistent(seeded) -> None:  # type: ignore[no-untyped-def]
    engine, _ = seeded
    with engine.connect() as conn:
        stages = {row.id: row for row in conn.execute(sa.select(Stage.id, Stage.key, Stage.kind))}
        deals = {
            row.id: row
            for row in conn.execute(
                sa.select(
                    Deal.id,
                    Deal.stage_id,
                    Deal.status,
                    Deal.created_at,
                    Deal.closed_at,
                    Deal.last_activity_at,
                )
            )
        }
        changes = conn.execute(
            sa.select(
                StageChange.deal_id,
                StageChange.from_stage_id,
                StageChange.to_stage_id,
                StageChange.at,
            ).order_by(StageChange.id)
        ).all()
    by_deal = defaultdict(list)
    for change in changes:
        by_deal[change.deal_id].append(change)
    assert set(by_deal) == set(deals)
    for deal_id, rows in by_deal.items():
        deal = deals[deal_id]
        assert rows[0].from_stage_id is None
        assert rows[0].at == deal.created_at
        for prev, row in zip(rows, rows[1:], strict=False):
            assert row.from_stage_id == prev.to_stage_id  # each change starts where the last ended
            assert row.at > prev.at  # chronological
        assert rows[-1].to_stage_id == deal.stage_id
        kind = stages[deal.stage_id].kind
        assert deal.status == kind
        assert (deal.closed_at is not None) == (kind != "open")
        assert rows[-1].at <= deal.last_activity_at < NOW


def test_conversion_falls_along_the_funnel(seeded) -> None:  # type: ignore[no-untyped-def]
    """Computed here from stage_changes alone: fewer deals reach each later stage."""
    engine, _ = seeded
    with engine.connect() as conn:
        order = [
            key
            for (key,) in conn.execute(
                sa.select(Stage.key)
                .where(Stage.team_id == TEAM, Stage.kind == "open")
                .order_by(Stage.position)
            )
        ]
        reached = dict(
            conn.execute(
                sa.select(Stage.key, sa.func.count(sa.distinct(StageChange.deal_id)))
                .join(Stage, Stage.id == StageChange.to_stage_id)
                .where(StageChange.team_id == TEAM)
                .group_by(Stage.key)
            ).all()
        )
    assert order == ["lead", "interest", "proposal", "negotiation"]
    counts = [reached[key] for key in [*order, "won"]]
    assert counts == sorted(counts, reverse=True) and len(set(counts)) == len(counts), counts
    assert counts[-1] >= 20  # some wins
    assert reached["lost"] > reached["won"]
    # Stage-to-stage conversion is a real fraction everywhere.
    for here, nxt in zip(counts, counts[1:], strict=False):
        assert 0.2 < nxt / here < 0.9


def test_some_deals_are_stalled(seeded) -> None:  # type: ignore[no-untyped-def]
    engine, _ = seeded
    with engine.connect() as conn:
        rows = conn.execute(
            sa.select(Deal.last_activity_at, Stage.stall_days)
            .join(Stage, Stage.id == Deal.stage_id)
            .where(Deal.team_id == TEAM, Deal.status == "open")
        ).all()
    stalled = [r for r in rows if r.last_activity_at < NOW - dt.timedelta(days=r.stall_days)]
    weeks_quiet = [r for r in stalled if r.last_activity_at < NOW - dt.timedelta(days=21)]
    assert len(rows) >= 40
    assert len(weeks_quiet) >= 5
    assert len(stalled) < len(rows)  # and most open deals are being worked


def test_same_seed_same_team(tmp_path: Path) -> None:
    engine = db.make_engine(f"sqlite:///{tmp_path}/d.db")
    db.upgrade(engine)
    sessions = db.make_session_factory(engine)
    try:
        demo.seed_demo(sessions, "T_A", NOW, seed=3, deals=40)
        demo.seed_demo(sessions, "T_B", NOW, seed=3, deals=40)
        assert exported(sessions, "T_A") == exported(sessions, "T_B")
    finally:
        engine.dispose()


def test_demo_command_prints_the_funnel_and_what_to_try(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from funnelbot import cli

    for name in ("SLACK_BOT_TOKEN", "SLACK_APP_TOKEN", "SLACK_SIGNING_SECRET", "LOG_LEVEL"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("DATABASE_URL", f"sqlite:///{tmp_path}/cli.db")
    monkeypatch.chdir(tmp_path)  # no stray .env
    assert cli.main(["demo"]) == 0
    out = capsys.readouterr().out
    assert "Added the demo team to workspace T_LOCAL" in out
    for word in ("Lead", "Interest", "Proposal", "Negotiation", "Won", "Lost", "Stalled"):
        assert word in out
    assert "funnelbot shell" in out and ":as UALICE" in out

    engine = db.make_engine(f"sqlite:///{tmp_path}/cli.db")
    before = checksum(exported(db.make_session_factory(engine)))
    assert cli.main(["demo"]) == 0
    out = capsys.readouterr().out
    assert "already has" in out and "nothing was added" in out
    assert checksum(exported(db.make_session_factory(engine))) == before
    engine.dispose()
