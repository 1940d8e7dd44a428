"""The funnel definition as data (SPEC §2, §6): `funnelbot stages show|apply` and the
`funnelbot.stages` module behind it and the Slack stages modal. Every database test runs
on SQLite and PostgreSQL.
"""

from __future__ import annotations

import datetime as dt
import io
import json
import re
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
import yaml
from helpers import TEAM, deal_row, history_rows, snapshot

from funnelbot import deals as domain
from funnelbot import export, metrics, stages
from funnelbot.errors import Forbidden, UserError
from funnelbot.i18n import en, translator, zh
from funnelbot.models import ExitCriterion, Stage, Workspace
from funnelbot.periods import Period

ADMIN = domain.Actor("UADMIN", is_admin=True)
REP = domain.Actor("U1")
SAMPLE = {
    "key": "sample_testing",
    "name": {"en": "Sample testing", "zh": "样品测试"},
    "stall_days": 21,
    "probability": 0.55,
    "exit_criteria": ["Samples shipped", "客户确认样品合格"],
}


# --- helpers ---------------------------------------------------------------------------


@pytest.fixture
def sessions(db_engine: sa.Engine) -> Any:
    factory = sa.orm.sessionmaker(db_engine, expire_on_commit=False)
    with factory.begin() as session:
        domain.ensure_workspace(session, TEAM, domain.utcnow())
    return factory


def stages_cli(run_cli: Any, env: dict[str, str], *args: str, check: bool = False) -> Any:
    return run_cli(["stages", *args, "--team", TEAM], env, check=check)


def show(run_cli: Any, env: dict[str, str], fmt: str = "yaml") -> str:
    return stages_cli(run_cli, env, "show", "--format", fmt, check=True).stdout


def state(engine: sa.Engine) -> tuple[Any, ...]:
    """Everything a refused or dry-run apply must leave alone: what `stages show` and
    `export deals|history --format json` print (the same functions the CLI calls), and
    every row of every table."""
    with sa.orm.Session(engine) as session:
        shown = stages.dump(stages.current_specs(session, TEAM), "yaml")
        exports = []
        for kind in ("deals", "history"):
            out = io.StringIO()
            export.write(session, TEAM, kind, "json", out)
            exports.append(out.getvalue())
    return shown, *exports, snapshot(engine)


def cli_state(run_cli: Any, env: dict[str, str]) -> tuple[str, ...]:
    """`stages show` and `export deals|history` as the command line prints them."""
    exports = tuple(
        run_cli(["export", kind, "--format", "json", "--team", TEAM], env, check=True).stdout
        for kind in ("deals", "history")
    )
    return show(run_cli, env), *exports


def write(tmp_path: Path, data: Any, name: str = "stages.yaml") -> str:
    path = tmp_path / name
    if isinstance(data, str):
        path.write_text(data, encoding="utf-8")
    else:
        path.write_text(yaml.safe_dump(data, allow_unicode=True, sort_keys=False), "utf-8")
    return str(path)


def current(run_cli: Any, env: dict[str, str]) -> list[dict[str, Any]]:
    return yaml.safe_load(show(run_cli, env))


def keys(data: list[dict[str, Any]]) -> list[str]:
    return [s["key"] for s in data]


def stage(session: Any, key: str) -> Stage:
    return session.scalars(sa.select(Stage).where(Stage.team_id == TEAM, Stage.key == key)).one()


def new_deal(session: Any, name: str, stage_key: str, actor: domain.Actor = REP) -> int:
    deal = domain.create_deal(
        session, TEAM, actor, name=name, stage=stage(session, stage_key), now=domain.utcnow()
    )
    return deal.number


def with_sample(data: list[dict[str, Any]]) -> list[dict[str, Any]]:
    at = keys(data).index("negotiation")
    return [*data[:at], dict(SAMPLE), *data[at:]]


# --- show ------------------------------------------------------------------------------


def test_show_prints_default_stages_readably_and_round_trips(
    run_cli, cli_env, sessions, tmp_path
) -> None:
    text = show(run_cli, cli_env)
    assert "线索" in text and "\\u" not in text  # Chinese stays readable
    data = yaml.safe_load(text)
    assert keys(data) == ["lead", "interest", "proposal", "negotiation"]
    assert data[0] == {
        "key": "lead",
        "name": {"en": "Lead", "zh": "线索"},
        "stall_days": 7,
        "probability": 0.1,
        "exit_criteria": [],
    }
    as_json = json.loads(show(run_cli, cli_env, "json"))
    assert as_json == data
    assert "方案" in show(run_cli, cli_env, "json")

    for name, body in (("same.yaml", text), ("same.json", show(run_cli, cli_env, "json"))):
        before = snapshot(sessions.kw["bind"])
        result = stages_cli(run_cli, cli_env, "apply", write(tmp_path, body, name), check=True)
        assert "No changes" in result.stdout
        assert snapshot(sessions.kw["bind"]) == before


def test_show_and_apply_create_a_named_new_workspace(run_cli, cli_env, db_engine) -> None:
    result = run_cli(["stages", "show", "--team", "TNEW"], cli_env, check=True)
    assert keys(yaml.safe_load(result.stdout))[0] == "lead"
    with db_engine.connect() as conn:
        teams = conn.execute(sa.text("SELECT team_id FROM workspaces")).scalars().all()
    assert teams == ["TNEW"]


# --- add -------------------------------------------------------------------------------


def test_add_stage_between_proposal_and_negotiation(run_cli, cli_env, sessions, tmp_path) -> None:
    with sessions.begin() as session:
        number = new_deal(session, "Acme", "proposal")
    path = write(tmp_path, with_sample(current(run_cli, cli_env)))
    result = stages_cli(run_cli, cli_env, "apply", path, check=True)
    assert "+ add sample_testing (Sample testing) at position 4" in result.stdout
    assert "exit criterion “客户确认样品合格”" in result.stdout
    data = current(run_cli, cli_env)
    assert keys(data) == ["lead", "interest", "proposal", "sample_testing", "negotiation"]
    assert data[3] == SAMPLE

    with sessions.begin() as session:
        deal = domain.get_deal(session, TEAM, number)
        domain.advance(session, deal, REP, now=domain.utcnow())
        assert deal.stage.key == "sample_testing"
        criteria = [c.id for c in deal.stage.criteria]
        assert len(criteria) == 2
        with pytest.raises(UserError) as err:  # the new stage's exit criteria apply
            domain.advance(session, deal, REP, now=domain.utcnow())
        assert err.value.code == "deal.criteria_required"
        domain.advance(session, deal, REP, now=domain.utcnow(), confirmed=criteria)
        assert deal.stage.key == "negotiation"
    assert [
        (r["from_stage"], r["to_stage"]) for r in history_rows(sessions.kw["bind"], number)
    ] == [
        (None, "proposal"),
        ("proposal", "sample_testing"),
        ("sample_testing", "negotiation"),
    ]

    today = dt.datetime.now(dt.UTC).date()
    with sessions() as session:
        conv = metrics.conversion(session, TEAM, Period(today - dt.timedelta(days=1), today))
    by_key = {s.key: s for s in conv.stages}
    assert list(by_key) == ["lead", "interest", "proposal", "sample_testing", "negotiation"]
    assert (by_key["proposal"].reached, by_key["proposal"].advanced) == (1, 1)
    assert (by_key["sample_testing"].reached, by_key["sample_testing"].advanced) == (1, 1)
    assert (by_key["negotiation"].reached, by_key["negotiation"].advanced) == (1, 0)
    assert by_key["sample_testing"].name_zh == "样品测试"


# --- rename and reorder ----------------------------------------------------------------


def test_rename_keeps_history(run_cli, cli_env, sessions, tmp_path) -> None:
    with sessions.begin() as session:
        number = new_deal(session, "Acme", "lead")
        domain.advance(session, domain.get_deal(session, TEAM, number), REP, now=domain.utcnow())
        interest_id = stage(session, "interest").id
    history = history_rows(sessions.kw["bind"], number)
    data = current(run_cli, cli_env)
    data[1]["name"] = {"en": "Qualified", "zh": "已确认意向"}
    result = stages_cli(run_cli, cli_env, "apply", write(tmp_path, data), check=True)
    assert "~ rename interest: Interest / 意向 → Qualified / 已确认意向" in result.stdout
    assert "add" not in result.stdout and "remove" not in result.stdout
    assert history_rows(sessions.kw["bind"], number) == history
    with sessions() as session:
        renamed = stage(session, "interest")
        assert (renamed.id, renamed.name_en, renamed.name_zh) == (
            interest_id,
            "Qualified",
            "已确认意向",
        )
        assert domain.find_stage(session, TEAM, "已确认意向").id == interest_id
        assert domain.get_deal(session, TEAM, number).stage_id == interest_id
    assert current(run_cli, cli_env)[1]["name"]["en"] == "Qualified"


def revision(engine: sa.Engine) -> int:
    with engine.connect() as conn:
        return conn.execute(
            sa.select(Workspace.stages_revision).where(Workspace.team_id == TEAM)
        ).scalar_one()


def test_only_a_change_of_stages_or_criteria_gives_a_new_stages_revision(sessions) -> None:
    """Each process caches a team's stages under this number: deal work must leave it
    alone (else the cache is useless), any stage or criterion change must replace it
    (else another replica would act on stages that no longer exist)."""
    engine = sessions.kw["bind"]
    first = revision(engine)
    with sessions.begin() as session:
        number = new_deal(session, "Acme", "lead")
        deal = domain.get_deal(session, TEAM, number)
        domain.advance(session, deal, REP, now=domain.utcnow())
        domain.add_note(session, deal, REP, "called", now=domain.utcnow())
    assert revision(engine) == first
    with sessions.begin() as session:
        stage(session, "proposal").stall_days = 9
    second = revision(engine)
    assert second != first
    with sessions.begin() as session:
        session.add(
            ExitCriterion(
                team_id=TEAM, stage_id=stage(session, "lead").id, position=1, text="Budget"
            )
        )
    assert revision(engine) not in (first, second)
    with sessions() as session:
        stages_now = {s.key: s for s in domain.funnel_stages(session, TEAM)}
        assert stages_now["proposal"].stall_days == 9
        assert [c.text for c in stages_now["lead"].criteria] == ["Budget"]


def test_reorder(run_cli, cli_env, sessions, tmp_path) -> None:
    data = current(run_cli, cli_env)
    data[1], data[2] = data[2], data[1]
    result = stages_cli(run_cli, cli_env, "apply", write(tmp_path, data), check=True)
    assert "~ new order: lead → proposal → interest → negotiation" in result.stdout
    assert keys(current(run_cli, cli_env)) == ["lead", "proposal", "interest", "negotiation"]
    with sessions.begin() as session:
        number = new_deal(session, "Acme", "lead")
        deal = domain.get_deal(session, TEAM, number)
        domain.advance(session, deal, REP, now=domain.utcnow())
        assert deal.stage.key == "proposal"
        domain.advance(session, deal, REP, now=domain.utcnow())
        assert deal.stage.key == "interest"
        positions = {s.key: s.position for s in domain.funnel_stages(session, TEAM)}
    assert positions == {
        "lead": 1,
        "proposal": 2,
        "interest": 3,
        "negotiation": 4,
        "won": 100,
        "lost": 101,
    }


def test_field_changes_are_planned_and_applied(run_cli, cli_env, sessions, tmp_path) -> None:
    data = current(run_cli, cli_env)
    data[0]["stall_days"] = None
    data[2]["probability"] = 0.35
    result = stages_cli(run_cli, cli_env, "apply", write(tmp_path, data), check=True)
    assert "~ lead: stall_days 7 → never" in result.stdout
    assert "~ proposal: probability 0.4 → 0.35" in result.stdout
    with sessions() as session:
        assert stage(session, "lead").stall_days is None
        assert stage(session, "proposal").probability == Decimal("0.35")


# --- remove ----------------------------------------------------------------------------


def _deals_in_interest(sessions: Any) -> list[int]:
    with sessions.begin() as session:
        numbers = [new_deal(session, name, "interest") for name in ("Acme", "Globex")]
        lost = new_deal(session, "Initech", "interest")
        domain.lose(
            session, domain.get_deal(session, TEAM, lost), REP, "price", now=domain.utcnow()
        )
        new_deal(session, "Hooli", "proposal")
    return [*numbers, lost]


def test_remove_stage_with_open_deals_is_refused_without_move_to(
    run_cli, cli_env, sessions, tmp_path
) -> None:
    _deals_in_interest(sessions)
    data = [s for s in current(run_cli, cli_env) if s["key"] != "interest"]
    path = write(tmp_path, data)
    before = state(sessions.kw["bind"])
    cli_before = cli_state(run_cli, cli_env)
    result = stages_cli(run_cli, cli_env, "apply", path)
    assert result.returncode == 1, result
    assert "Stage interest still holds 2 open deal(s)" in result.stderr
    assert "--move-to" in result.stderr and "nothing was changed" in result.stderr
    assert "! interest holds 2 open deal(s)" in result.stdout
    assert cli_state(run_cli, cli_env) == cli_before
    assert state(sessions.kw["bind"]) == before

    # A --move-to that is not an open stage of the new list is refused too.
    for target in ("interest", "won", "nowhere"):
        result = stages_cli(run_cli, cli_env, "apply", path, "--move-to", target)
        assert result.returncode == 1, result
        assert f"“{target}” is not an open stage of the new funnel" in result.stderr
    assert state(sessions.kw["bind"]) == before


def test_remove_stage_with_move_to_moves_each_deal_once(
    run_cli, cli_env, sessions, tmp_path
) -> None:
    acme, globex, lost = _deals_in_interest(sessions)
    engine = sessions.kw["bind"]
    versions = {n: deal_row(engine, n)["version"] for n in (acme, globex, lost)}
    lost_history = history_rows(engine, lost)
    data = [s for s in current(run_cli, cli_env) if s["key"] != "interest"]
    path = write(tmp_path, data)
    result = run_cli(
        ["stages", "apply", path, "--move-to", "proposal", "--team", TEAM, "--as", "UADMIN"],
        cli_env,
        check=True,
    )
    assert "- remove interest" in result.stdout
    assert "→ move 2 open deal(s) from interest to proposal" in result.stdout
    assert keys(current(run_cli, cli_env)) == ["lead", "proposal", "negotiation"]
    for number in (acme, globex):
        row = deal_row(engine, number)
        assert (row["stage"], row["status"]) == ("proposal", "open")
        assert row["version"] == versions[number] + 1
        history = history_rows(engine, number)
        assert [(r["from_stage"], r["to_stage"], r["by"]) for r in history] == [
            (None, "interest", "U1"),
            ("interest", "proposal", "UADMIN"),
        ]
        assert history[-1]["deal_version"] == row["version"]
    assert history_rows(engine, lost) == lost_history  # closed deals stay where they were
    assert deal_row(engine, lost)["version"] == versions[lost]

    with sessions() as session:
        interest = stage(session, "interest")
        assert not interest.active  # the row stays: history points at it
        assert interest.position == 1  # ranks with lead: reached lead, not proposal
        with pytest.raises(UserError):
            domain.find_stage(session, TEAM, "interest")
    history = run_cli(["export", "history", "--format", "json", "--team", TEAM], cli_env)
    assert '"to_stage": "interest"' in history.stdout

    # Putting the key back brings the same row back, with its history.
    result = stages_cli(run_cli, cli_env, "apply", write(tmp_path, current_default()), check=True)
    assert "+ bring back interest (Interest) at position 2" in result.stdout
    with sessions() as session:
        assert stage(session, "interest").id == interest.id
        assert stage(session, "interest").active


def current_default() -> list[dict[str, Any]]:
    return [
        {"key": k, "name": {"en": en_, "zh": zh_}, "stall_days": d, "probability": p}
        for k, en_, zh_, d, p in (
            ("lead", "Lead", "线索", 7, 0.1),
            ("interest", "Interest", "意向", 14, 0.2),
            ("proposal", "Proposal", "方案", 14, 0.4),
            ("negotiation", "Negotiation", "谈判", 10, 0.7),
        )
    ]


def test_removed_first_stage_does_not_inflate_the_next_one(sessions) -> None:
    """A deal that only ever was in a removed stage did not reach the stages after it."""
    with sessions.begin() as session:
        lost = new_deal(session, "Old", "lead")
        domain.lose(session, domain.get_deal(session, TEAM, lost), REP, None, now=domain.utcnow())
        moved = new_deal(session, "Acme", "interest")
        specs = [s for s in stages.current_specs(session, TEAM) if s.key != "lead"]
        plan = stages.apply(session, TEAM, specs, ADMIN, move_to=None, now=domain.utcnow())
        assert plan.removed == ["lead"] and not plan.moves
    today = dt.datetime.now(dt.UTC).date()
    with sessions() as session:
        conv = metrics.conversion(session, TEAM, Period(today, today))
        assert stage(session, "lead").position == 0
    assert [s.key for s in conv.stages] == ["interest", "proposal", "negotiation"]
    assert conv.stages[0].reached == 1  # Acme, not the deal lost from the removed lead
    assert deal_row(sessions.kw["bind"], moved)["stage"] == "interest"


# --- exit criteria ---------------------------------------------------------------------


def _criteria(session: Any, key: str) -> list[tuple[int, str, int, bool]]:
    return [
        (c.id, c.text, c.position, c.active)
        for c in session.scalars(
            sa.select(ExitCriterion)
            .where(ExitCriterion.stage_id == stage(session, key).id)
            .order_by(ExitCriterion.id)
        )
    ]


def test_exit_criteria_are_diffed_by_text_and_keep_their_ids(
    run_cli, cli_env, sessions, tmp_path
) -> None:
    data = current(run_cli, cli_env)
    data[2]["exit_criteria"] = ["Budget confirmed", "Decision maker identified"]
    stages_cli(run_cli, cli_env, "apply", write(tmp_path, data), check=True)
    with sessions() as session:
        (budget, _, _, _), (maker, _, _, _) = _criteria(session, "proposal")

    with sessions.begin() as session:  # a rep opens the checklist before the change …
        number = new_deal(session, "Acme", "proposal")

    data[2]["exit_criteria"] = ["Decision maker identified", "方案已演示", "Budget confirmed"]
    result = stages_cli(run_cli, cli_env, "apply", write(tmp_path, data), check=True)
    assert "+ proposal: exit criterion “方案已演示”" in result.stdout
    with sessions() as session:
        rows = _criteria(session, "proposal")
    assert rows[:2] == [
        (budget, "Budget confirmed", 3, True),
        (maker, "Decision maker identified", 1, True),
    ]
    assert rows[2][1:] == ("方案已演示", 2, True)
    assert current(run_cli, cli_env)[2]["exit_criteria"] == [
        "Decision maker identified",
        "方案已演示",
        "Budget confirmed",
    ]

    data[2]["exit_criteria"] = ["Decision maker identified", "Budget confirmed"]
    result = stages_cli(run_cli, cli_env, "apply", write(tmp_path, data), check=True)
    assert "- proposal: exit criterion “方案已演示”" in result.stdout
    with sessions() as session:
        rows = _criteria(session, "proposal")
    assert [(r[0], r[3]) for r in rows] == [(budget, True), (maker, True), (rows[2][0], False)]

    with sessions.begin() as session:  # … and confirms with the ids it was shown
        deal = domain.get_deal(session, TEAM, number)
        domain.advance(session, deal, REP, now=domain.utcnow(), confirmed=[budget, maker])
        assert deal.stage.key == "negotiation"

    data[2]["exit_criteria"] = ["Decision maker identified"]
    data[2]["probability"] = 0.45
    stages_cli(run_cli, cli_env, "apply", write(tmp_path, data), check=True)
    data[2]["exit_criteria"] = ["Budget confirmed", "Decision maker identified"]
    result = stages_cli(run_cli, cli_env, "apply", write(tmp_path, data), check=True)
    with sessions() as session:  # a dropped item that comes back is the same row
        rows = _criteria(session, "proposal")
    assert [r[:4] for r in rows[:2]] == [
        (budget, "Budget confirmed", 1, True),
        (maker, "Decision maker identified", 2, True),
    ]


def test_reordered_criteria_are_a_change(sessions) -> None:
    with sessions.begin() as session:
        specs = stages.current_specs(session, TEAM)
        specs[0] = stages.StageSpec(**{**specs[0].__dict__, "exit_criteria": ("a", "b")})
        stages.apply(session, TEAM, specs, ADMIN, move_to=None, now=domain.utcnow())
        specs[0] = stages.StageSpec(**{**specs[0].__dict__, "exit_criteria": ("b", "a")})
        plan = stages.plan(session, TEAM, specs)
        assert plan.changed == ["lead"] and plan.criteria_reordered == ["lead"]
        lines = stages.describe(plan, translator("en"))
        assert lines == ["~ lead: exit criteria reordered"]
        stages.apply(session, TEAM, specs, ADMIN, move_to=None, now=domain.utcnow())
        assert stages.current_specs(session, TEAM)[0].exit_criteria == ("b", "a")
        assert [c.text for c in stage(session, "lead").criteria] == ["b", "a"]


# --- invalid files ---------------------------------------------------------------------


def _bad_files() -> list[Any]:
    def edit(change: Any) -> Any:
        data = current_default()
        change(data)
        return data

    def set_(i: int, field: str, value: Any) -> Any:
        return lambda d: d[i].__setitem__(field, value)

    won = {"key": "won", "name": {"en": "Won", "zh": "成交"}, "stall_days": None, "probability": 1}
    return [
        pytest.param(edit(set_(1, "key", "Sample Testing")), "“Sample Testing” is not a valid key", id="bad-key"),
        pytest.param(edit(set_(2, "key", "lead")), "The key “lead” is used twice (stages 1 and 3)", id="duplicate-key"),
        pytest.param(edit(set_(2, "probability", 1.5)), "Stage proposal: probability must be a number from 0 to 1", id="probability"),
        pytest.param(edit(lambda d: d[1].pop("name")), "Stage interest: name.en is missing", id="no-names"),
        pytest.param(edit(lambda d: d[1]["name"].pop("zh")), "Stage interest: name.zh is missing", id="no-zh-name"),
        pytest.param(edit(lambda d: d.append(won)), "Stage won: “won” must not be in the list", id="won"),
        pytest.param(edit(set_(0, "stall_days", 0)), "Stage lead: stall_days must be a whole number", id="stall-days"),
        pytest.param(edit(set_(0, "stall_day", 3)), "Stage lead: unknown field “stall_day”", id="unknown-field"),
        pytest.param(edit(set_(0, "exit_criteria", ["x", "x"])), "the exit criterion “x” is listed twice", id="dup-criterion"),
        pytest.param(edit(set_(0, "exit_criteria", ["y" * 301])), "exit criterion 1 must be text of 1 to 300", id="long-criterion"),
        pytest.param(edit(lambda d: d[3]["name"].__setitem__("zh", "方案")), "the name “方案” is already used by stage proposal", id="dup-name"),
        pytest.param([], "at least one open stage", id="empty"),
        pytest.param({"stages": []}, "must be a list of open stages", id="not-a-list"),
        pytest.param("- key: lead\n  name: [unclosed\n", "not valid YAML or JSON: line 3", id="yaml-syntax"),
    ]  # fmt: skip


@pytest.mark.parametrize(("data", "message"), _bad_files())
def test_invalid_files_are_refused_and_change_nothing(
    run_cli, cli_env, sessions, tmp_path, data, message
) -> None:
    with sessions.begin() as session:
        new_deal(session, "Acme", "interest")
    before = snapshot(sessions.kw["bind"])  # every row of every table
    result = stages_cli(run_cli, cli_env, "apply", write(tmp_path, data), "--move-to", "lead")
    assert result.returncode == 1, result
    assert message in result.stderr, result.stderr
    assert "Traceback" not in result.stderr
    assert result.stdout == ""  # nothing is planned from a file that does not validate
    assert snapshot(sessions.kw["bind"]) == before


def test_errors_follow_the_configured_language(run_cli, cli_env, sessions, tmp_path) -> None:
    data = current_default()
    data[2]["probability"] = 1.5
    env = {**cli_env, "FUNNELBOT_LANGUAGE": "zh"}
    result = stages_cli(run_cli, env, "apply", write(tmp_path, data))
    assert result.returncode == 1
    assert "阶段 proposal：probability（赢单概率）必须是 0 到 1 之间的数" in result.stderr


def test_missing_file_is_a_clear_error(run_cli, cli_env, sessions, tmp_path) -> None:
    result = stages_cli(run_cli, cli_env, "apply", str(tmp_path / "nope.yaml"))
    assert result.returncode == 1
    assert "Cannot read" in result.stderr and "nope.yaml" in result.stderr


# --- dry run ---------------------------------------------------------------------------


def test_dry_run_plans_but_changes_nothing(run_cli, cli_env, sessions, tmp_path) -> None:
    with sessions.begin() as session:
        new_deal(session, "Acme", "interest")
    data = [s for s in with_sample(current(run_cli, cli_env)) if s["key"] != "interest"]
    data[0]["name"]["en"] = "Prospect"
    path = write(tmp_path, data)
    before = state(sessions.kw["bind"])
    result = stages_cli(run_cli, cli_env, "apply", path, "--move-to", "sample_testing", "--dry-run")
    assert result.returncode == 0, result
    for line in (
        "+ add sample_testing (Sample testing) at position 3",
        "- remove interest",
        "~ rename lead: Lead / 线索 → Prospect / 线索",
        "→ move 1 open deal(s) from interest to sample_testing",
    ):
        assert line in result.stdout
    assert "Dry run: nothing was changed." in result.stderr
    assert state(sessions.kw["bind"]) == before

    # Without --move-to the dry run reports the refusal the real run would give.
    result = stages_cli(run_cli, cli_env, "apply", path, "--dry-run")
    assert result.returncode == 1
    assert "! interest holds 1 open deal(s)" in result.stdout
    assert "Stage interest still holds 1 open deal(s)" in result.stderr
    assert state(sessions.kw["bind"]) == before

    # A dry run on a workspace that does not exist yet does not create it.
    run_cli(["stages", "apply", path, "--dry-run", "--team", "TOTHER"], cli_env, check=True)
    with sessions() as session:
        assert session.get(Workspace, "TOTHER") is None


# --- the module, as the Slack modal uses it --------------------------------------------


def test_apply_needs_a_manager_or_admin(sessions) -> None:
    with sessions.begin() as session:
        specs = stages.current_specs(session, TEAM)
        with pytest.raises(Forbidden):
            stages.apply(session, TEAM, specs, REP, move_to=None, now=domain.utcnow())
        manager = domain.Actor("UMGR", is_manager=True)
        plan = stages.apply(session, TEAM, specs, manager, move_to=None, now=domain.utcnow())
        assert plan.empty


def test_apply_validates_specs_built_by_hand(sessions) -> None:
    with sessions.begin() as session:
        specs = stages.current_specs(session, TEAM)
        bad = [*specs, stages.StageSpec("lead", "Again", "再次", None, Decimal("0.5"))]
        with pytest.raises(UserError) as err:
            stages.apply(session, TEAM, bad, ADMIN, move_to=None, now=domain.utcnow())
        assert err.value.code == "stages.duplicate_key"
        assert err.value.params["stage"] == "lead" and err.value.params["index"] == 5


def test_holds_deals_error_names_the_stage_and_count(sessions) -> None:
    with sessions.begin() as session:
        new_deal(session, "Acme", "negotiation")
        specs = [s for s in stages.current_specs(session, TEAM) if s.key != "negotiation"]
        with pytest.raises(UserError) as err:
            stages.apply(session, TEAM, specs, ADMIN, move_to=None, now=domain.utcnow())
        assert err.value.code == "stages.holds_deals"
        assert err.value.params["stage"] == "negotiation"
        assert err.value.params["count"] == 1


@pytest.mark.parametrize(
    ("data", "code", "params"),
    [
        ([{"key": "1st"}], "stages.bad_key", {"stage": "#1", "field": "key"}),
        ([{"key": "won"}], "stages.reserved_key", {"stage": "won"}),
        ("lead", "stages.not_a_list", {}),
        (None, "stages.empty", {}),
        (
            [{"key": "a", "name": {"en": "A", "zh": "甲"}, "probability": True}],
            "stages.bad_probability",
            {"stage": "a", "field": "probability"},
        ),
        (
            [{"key": "a", "name": {"en": "A", "zh": "甲"}}],
            "stages.bad_probability",
            {"stage": "a", "value": "(missing)"},
        ),
        (
            [{"key": "a", "name": "A", "probability": 0}],
            "stages.bad_shape",
            {"stage": "a", "field": "name"},
        ),
        (
            [{"key": "a", "name": {"en": "A", "zh": "甲", "fr": "A"}, "probability": 0}],
            "stages.unknown_field",
            {"field": "name.fr"},
        ),
        (
            [{"key": "a", "name": {"en": "A", "zh": "甲"}, "probability": 0, "stall_days": 2.5}],
            "stages.bad_stall_days",
            {"stage": "a"},
        ),
        (
            [{"key": "a", "name": {"en": "A", "zh": "甲"}, "probability": 0, "exit_criteria": "x"}],
            "stages.bad_shape",
            {"field": "exit_criteria"},
        ),
        (
            [{"key": "a", "name": {"en": "A" * 81, "zh": "甲"}, "probability": 0}],
            "stages.name_too_long",
            {"field": "name.en", "limit": 80},
        ),
    ],
)
def test_specs_from_data_errors(data: Any, code: str, params: dict[str, Any]) -> None:
    with pytest.raises(UserError) as err:
        stages.specs_from_data(data)
    assert err.value.code == code
    assert params.items() <= err.value.params.items()
    for lang in ("en", "zh"):  # every error renders in both languages
        assert translator(lang)(err.value.code, **err.value.params)


def test_specs_normalise_and_round_trip() -> None:
    specs = stages.specs_from_data(
        [
            {
                "key": " sample_testing ",
                "name": {"en": " Sample  testing ", "zh": "样品测试"},
                "probability": "0.55",
                "exit_criteria": [" Samples shipped "],
            },
            {"key": "b", "name": {"en": "B", "zh": "乙"}, "probability": 1, "stall_days": 3.0},
        ]
    )
    assert specs[0] == stages.StageSpec(
        "sample_testing",
        "Sample testing",
        "样品测试",
        None,
        Decimal("0.5500"),
        ("Samples shipped",),
    )
    assert specs[1].stall_days == 3 and specs[1].probability == Decimal("1")
    for fmt in stages.FORMATS:
        assert stages.specs_from_data(stages.load(stages.dump(specs, fmt))) == specs
    assert stages.specs_to_data(specs)[1]["probability"] == 1


def test_catalogues_have_every_stages_message() -> None:
    codes = {k for k in en.MESSAGES if k.startswith("stages.")}
    assert codes == {k for k in zh.MESSAGES if k.startswith("stages.")}
    source = Path(stages.__file__).read_text(encoding="utf-8")
    used = set(re.findall(r'"(stages\.[a-z_]+)"', source))
    assert used <= codes
