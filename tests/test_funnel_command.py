"""`/funnel` end to end (SPEC §3, §5): signed slash commands in, answers out through the
response_url, on SQLite and PostgreSQL. The app's clock is fixed at Thursday 2026-05-14
10:00 UTC; deals and their histories are written through the deal domain with explicit
(older) times into the same workspace the requests come from."""

from __future__ import annotations

import datetime as dt
import re
from decimal import Decimal
from typing import Any

import pytest
from helpers import TEAM, all_text, header_texts, run_command
from metrics_model import Plan, Step, insert, wilson

UTC = dt.UTC
NOW = dt.datetime(2026, 5, 14, 10, 0, tzinfo=UTC)


@pytest.fixture
def runtime_options() -> dict[str, Any]:
    return {"clock": lambda: NOW}


def at(day: str, hour: int = 9) -> dt.datetime:
    return dt.datetime.fromisoformat(day).replace(hour=hour, tzinfo=UTC)


def plan(name, owner, amount, created, start="lead", steps=(), source="web", close=None) -> Plan:
    p = Plan(name, owner, source, Decimal(amount), close, created, start)
    p.steps = [Step(*s) for s in steps]
    return p


def team_deals() -> list[Plan]:
    return [
        # U1, created this year
        plan("P1 Acme", "U1", 10000, at("2026-02-01"), steps=[
            ("move", at("2026-03-01"), "proposal"), ("win", at("2026-04-01"))]),
        plan("P2 Beta", "U1", 8000, at("2026-02-10"), "proposal", steps=[
            ("lose", at("2026-03-15"), "price")]),
        plan("P3 Gamma", "U1", 12000, at("2026-03-01"), steps=[
            ("advance", at("2026-03-02")), ("advance", at("2026-03-04")),
            ("advance", at("2026-03-08")), ("win", at("2026-03-20"))]),
        plan("P4 Delta", "U1", 20000, at("2026-04-01"), "proposal", close=dt.date(2026, 6, 15)),
        plan("P5 Echo", "U1", 1000, at("2026-04-20")),
        # U2
        plan("Q1 Foxtrot", "U2", 15000, at("2026-03-05"), "proposal", source="partner", steps=[
            ("win", at("2026-04-05"))]),
        plan("Q2 Golf", "U2", 30000, at("2026-05-08"), "negotiation", source="partner",
             close=dt.date(2026, 6, 30)),
        # idle 9 days in lead (stall days 7)
        plan("S1 Stale", "U2", 500, NOW - dt.timedelta(days=9), source=None),
        plan("L1 Lima", "U2", 2500, at("2026-05-02"), source=None, steps=[
            ("lose", at("2026-05-10"), "no budget")]),
        # last year
        plan("R1 Romeo", "U1", 7000, at("2025-11-01"), "proposal", steps=[
            ("win", at("2025-12-01"))]),
    ]  # fmt: skip


@pytest.fixture
def app(app_server):
    with app_server.runtime.sessions.begin() as session:
        insert(session, TEAM, team_deals())
    return app_server


def funnel(app, text: str, user: str = "U1") -> dict[str, Any]:
    answer = run_command(app, text, user, command="/funnel")
    assert answer["response_type"] == "ephemeral"
    text_all = all_text(answer)
    assert "Traceback" not in text_all and "went wrong" not in text_all, text_all
    return answer


def share(k: int, n: int) -> str:
    """`k/n (p%, lo%–hi%)` with the interval from the test's own Wilson formula."""
    low, high = wilson(k, n)
    return f"{k}/{n} ({k / n * 100:.0f}%, {low * 100:.0f}%–{high * 100:.0f}%)"


def test_summary_lists_open_deals_and_value_per_stage(app) -> None:
    answer = funnel(app, "")
    text = all_text(answer)
    assert header_texts(answer) == ["Team funnel"]
    # open now: P5 + S1 in lead, P4 in proposal, Q2 in negotiation
    assert "*Lead*  2 · $1,500" in text
    assert "*Interest*  0 · $0" in text
    assert "*Proposal*  1 · $20,000" in text
    assert "*Negotiation*  1 · $30,000" in text
    # conversion of the deals created in the last 90 days (2026-02-14..2026-05-14):
    # proposal was reached by P3 Q1 Q2 P4, and P3 Q1 Q2 went further
    assert "*Proposal*  1 · $20,000  →  " + share(3, 4) in text
    # stalled: S1 (9 days in lead), P5 (24 days in lead), P4 (43 days in proposal)
    assert "4 open deals · $51,500 · 3 stalled" in text
    assert "2026-02-14..2026-05-14" in text


def test_conversion_from_to_for_a_rep_this_year(app) -> None:
    answer = funnel(app, "conversion from proposal to won this year <@U1|alice>")
    text = all_text(answer)
    # U1 created P1..P5 this year; P1 P2 P3 P4 reached proposal, P1 P3 were won
    assert "*Proposal → Won*  " + share(2, 4) in text
    assert "@U1" in header_texts(answer)[0]
    assert "2026-01-01..2026-12-31" in text
    assert "5 deals created" in text
    # the table row of proposal: P1 P3 went on (won); P4 is open there, P2 was lost there;
    # stays in proposal 31 d (P1), 33 d (P2) and 4 d (P3)
    assert "*Proposal*\n" + share(2, 4) in text
    assert "open 1 · lost here 1 · 22.7 d in stage (median 31.0 d)" in text

    # everyone, from lead to negotiation: 9 deals created this year reached lead; P1 P3 Q1
    # (won: a win passes through every stage) and Q2 (created there) reached negotiation
    text = all_text(funnel(app, "conversion from lead to negotiation this year"))
    assert "*Lead → Negotiation*  " + share(4, 9) in text
    assert "9 deals created" in text
    # the per-stage table and the win rate: P1 P3 Q1 won, P2 L1 lost
    assert "win rate " + share(3, 5) in text

    # a lead source, and a Slack-escaped rep mention without a label
    text = all_text(funnel(app, "conversion source:partner this year <@U2>"))
    assert "2 deals created" in text  # Q1 and Q2
    assert "win rate " + share(1, 1) in text


def test_forecast(app) -> None:
    answer = funnel(app, "forecast")
    text = all_text(answer)
    # this quarter (2026-04-01..2026-06-30), nothing learned yet (6 closed deals < 20):
    # P4 20,000 × 0.4 (proposal) + Q2 30,000 × 0.7 (negotiation)
    assert "*Weighted pipeline* $29,000 from 2 open deals worth $50,000" in text
    assert "P10" in text and "P50" in text and "P90" in text
    assert "Not counted: 2 open deals worth $1,500 have no expected close date." in text
    # each probability shows the sample it rests on: 6 closed deals reached lead, 5 proposal
    assert "*Lead*  10% (stage default; only 6 closed deals so far)" in text
    assert "*Proposal*  40% (stage default; only 5 closed deals so far)" in text
    assert "2026-04-01..2026-06-30" in text and "as of 2026-05-14" in text
    # the likely range: 0 (both lost, P 0.18), 20,000 (P 0.12), 30,000 (P 0.42), 50,000 (P 0.28)
    assert re.search(r"P10 \$0 · P50 \$30,000 · P90 \$50,000", text), text
    # a period with no dated deal in it
    text = all_text(funnel(app, "forecast next quarter"))
    assert "*Weighted pipeline* $0 from 0 open deals worth $0" in text


def test_stalled(app) -> None:
    answer = funnel(app, "stalled")
    text = all_text(answer)
    for name in ("S1 Stale", "P5 Echo", "P4 Delta"):
        assert name in text, name
    assert "Q2 Golf" not in text and "P1 Acme" not in text
    assert answer["text"].endswith("(3)")
    text = all_text(funnel(app, "stalled <@U2|bob>"))
    assert "S1 Stale" in text and "P5 Echo" not in text and "P4 Delta" not in text


def test_lost_reps_sources_velocity(app) -> None:
    text = all_text(funnel(app, "lost this year"))
    assert "price" in text and "1 deals · $8,000" in text
    assert "no budget" in text and "1 deals · $2,500" in text
    assert "Lost from: Lead 1, Proposal 1" in text

    answer = funnel(app, "reps this year")
    sections = [b for b in answer["blocks"] if b.get("fields")]
    rows = {b["fields"][0]["text"]: b["fields"][1]["text"] for b in sections}
    assert rows["<@U1>"] == ("created 5 · open 2 ($21,000) · won $22,000 · win rate " + share(2, 3))
    assert rows["<@U2>"] == ("created 4 · open 2 ($30,500) · won $15,000 · win rate " + share(1, 2))

    answer = funnel(app, "sources this year")
    sections = [b for b in answer["blocks"] if b.get("fields")]
    rows = {b["fields"][0]["text"]: b["fields"][1]["text"] for b in sections}
    assert set(rows) == {"web", "partner", "(no source)"}
    assert rows["partner"].startswith("created 2 · open 1 ($30,000) · won $15,000")
    assert rows["(no source)"].startswith("created 2 · open 1 ($500)")

    text = all_text(funnel(app, "velocity this year"))
    assert "Days in stage" in text
    # proposal stays this year: P1 31 d, P2 33 d, P3 4 d, Q1 31 d -> mean 24.75, median 31
    assert "*Proposal*  24.8 d (median 31.0 d)" in text
    # sales cycle: P1 59 d, P3 19 d, Q1 31 d -> 36.3 d; win rate 3 of 5 closed
    assert "*Sales cycle* 36.3 d" in text
    assert share(3, 5) in text


def test_help(app) -> None:
    text = all_text(funnel(app, "help"))
    for word in ("/funnel", "conversion", "forecast", "stalled", "lost", "reps", "sources",
                 "velocity", "本月", "last 30 days"):  # fmt: skip
        assert word in text, word


@pytest.mark.parametrize(
    ("phrase", "period", "created"),
    [
        ("本月", "2026-05-01..2026-05-31", 3),  # Q2 S1 L1
        ("上季度", "2026-01-01..2026-03-31", 4),  # P1 P2 P3 Q1
        ("近30天", "2026-04-15..2026-05-14", 4),  # P5 Q2 S1 L1
        ("今年", "2026-01-01..2026-12-31", 9),
        ("last month", "2026-04-01..2026-04-30", 2),  # P4 P5
        ("2025-01-01..2025-12-31", "2025-01-01..2025-12-31", 1),  # R1
        ("2026-01-01 to 2026-03-31", "2026-01-01..2026-03-31", 4),
        ("from proposal 2026-01-01 到 2026-03-31", "2026-01-01..2026-03-31", 4),
    ],
)
def test_periods(app, phrase, period, created) -> None:
    text = all_text(funnel(app, f"conversion {phrase}"))
    assert f"{created} deals created {period}" in text


def test_unparseable_questions_get_examples(app) -> None:
    for question in ("what is the meaning of life", "conversion someday", "forecast next decade"):
        answer = funnel(app, question)
        text = answer["text"]
        assert "I did not understand" in text, question
        assert "/funnel conversion" in text and "/funnel help" in text
    answer = funnel(app, "conversion from won to lead")
    assert "must come before" in answer["text"]
    answer = funnel(app, "conversion from sample to won")
    assert "sample" in answer["text"]  # names the unknown stage


def test_chinese_user_gets_chinese(app) -> None:
    app.fake.users["UZH"] = {"locale": "zh-CN"}
    answer = funnel(app, "", user="UZH")
    text = all_text(answer)
    assert header_texts(answer) == ["团队漏斗"]
    assert "*线索*  2 · " in text and "*方案*  1 · " in text
    assert "Lead" not in text and "open deals" not in text
    text = all_text(funnel(app, "转化率 from 方案 to 成交 今年 <@U1>", user="UZH"))
    assert "阶段转化率" in text and "方案 → 成交" in text and share(2, 4) in text
    text = all_text(funnel(app, "预测", user="UZH"))
    assert "加权管道" in text
    answer = funnel(app, "随便问问", user="UZH")
    assert "没看懂" in answer["text"] and "/funnel help" in answer["text"]
    # an English user next to them still gets English
    assert "Team funnel" in all_text(funnel(app, "", user="U1"))


def test_forecast_message_shows_the_sample_and_the_default_beside_a_learned_figure() -> None:
    from funnelbot import blocks, metrics
    from funnelbot.i18n import translator
    from funnelbot.periods import Period

    def stage(key, name, p, default, sample):
        return metrics.StageProbability(key, name, name, p, default, sample, sample >= 20)

    fc = metrics.Forecast(
        period=Period(dt.date(2026, 4, 1), dt.date(2026, 6, 30)),
        as_of=dt.date(2026, 5, 14),
        deals=3,
        amount_open=Decimal("7500"),
        weighted=Decimal("3450.00"),
        p10=Decimal("0"),
        p50=Decimal("4000"),
        p90=Decimal("7000"),
        undated_deals=0,
        undated_amount=Decimal("0"),
        undated_weighted=Decimal("0"),
        stages=[
            stage("lead", "Lead", 16 / 25, 0.1, 25),  # learned, far from the default
            stage("interest", "Interest", 0.2 + 0.001, 0.2, 40),  # learned, same as default
            stage("proposal", "Proposal", 0.4, 0.4, 18),  # too few: the default
        ],
    )
    text = all_text(blocks.forecast_message(translator("en"), fc, "Forecast"))
    assert "*Lead*  64% (learned from 25 closed deals) · default 10%" in text
    assert "*Interest*  20% (learned from 40 closed deals)\n" in text
    assert "*Proposal*  40% (stage default; only 18 closed deals so far)" in text
    assert "*Weighted pipeline* $3,450 from 3 open deals worth $7,500" in text
    assert "*Likely won* P10 $0 · P50 $4,000 · P90 $7,000" in text
    assert "Not counted" not in text
