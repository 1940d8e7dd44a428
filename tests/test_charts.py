"""The funnel picture (SPEC §3 `/funnel chart`, §6 `funnelbot chart`): a real 1600×1000
PNG, Chinese stage names drawn with a CJK font (no missing glyphs), written by the CLI and
uploaded to the command's channel through Slack's external upload flow.
"""

from __future__ import annotations

import datetime as dt
import warnings
from pathlib import Path
from typing import Any

import pytest
from helpers import all_text, send_command, wait_response
from jobkit import Clock, decode_png, lose, move, new_deal, uploads, utc, win, workspace

NOW = utc(2026, 11, 17, 10, 0)


@pytest.fixture
def clock() -> Clock:
    return Clock(NOW)


@pytest.fixture
def runtime_options(clock: Clock) -> dict[str, Any]:
    return {"clock": clock}


def sample_chart(labels: list[str], title: str = "Sales funnel") -> Any:
    from funnelbot import charts

    counts = [40, 22, 9, 3]
    return charts.FunnelChart(
        title=title,
        subtitle="2026-11-09..2026-11-15 · open deals per stage",
        bars=[
            charts.FunnelBar(label=label, deals=n, amount=f"${n * 1000:,}", previous=n + 2)
            for label, n in zip(labels, counts, strict=True)
        ],
        conversions=["55%", "41%", "33%"],
        previous_label="before:",
    )


def glyph_warnings(caught: list[warnings.WarningMessage]) -> list[str]:
    return [
        str(w.message)
        for w in caught
        if issubclass(w.category, UserWarning)
        and ("Glyph" in str(w.message) or "missing from" in str(w.message))
    ]


def test_render_funnel_is_a_1600_by_1000_png() -> None:
    from funnelbot import charts

    png = charts.render_funnel(sample_chart(["Lead", "Interest", "Proposal", "Negotiation"]))
    image = decode_png(png)
    assert image.shape[:2] == (1000, 1600)
    # not a blank canvas: the funnel is drawn in colour on white
    assert image[..., :3].min() < 0.5


def test_render_funnel_handles_no_stages_and_zero_counts() -> None:
    from funnelbot import charts

    empty = charts.FunnelChart(
        title="Sales funnel", subtitle="nothing yet", bars=[], conversions=[]
    )
    assert decode_png(charts.render_funnel(empty)).shape[:2] == (1000, 1600)
    zeros = charts.FunnelChart(
        title="t",
        subtitle="s",
        bars=[charts.FunnelBar("Lead", 0, "$0"), charts.FunnelBar("Won", 0, "$0", None)],
        conversions=["—"],
    )
    assert decode_png(charts.render_funnel(zeros)).shape[:2] == (1000, 1600)


def test_chinese_stage_names_have_no_missing_glyphs() -> None:
    from funnelbot import charts

    chart = sample_chart(["线索", "意向", "样品测试", "谈判"], title="销售漏斗")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        png = charts.render_funnel(chart)
    assert glyph_warnings(caught) == [], glyph_warnings(caught)
    assert decode_png(png).shape[:2] == (1000, 1600)
    assert charts.font_family()[0] != "DejaVu Sans", "no CJK font picked"


# --- the data behind the picture ---------------------------------------------------------------

# (name, amount, created, first stage, [(stage|won|lost, at), ...])
HISTORY = [
    (
        "A",
        1000,
        utc(2026, 10, 5),
        "lead",
        [("interest", utc(2026, 10, 20)), ("proposal", utc(2026, 11, 5))],
    ),
    ("B", 2000, utc(2026, 10, 10), "interest", [("won", utc(2026, 10, 25))]),
    ("C", 4000, utc(2026, 10, 28), "lead", [("lost", utc(2026, 11, 3))]),
    ("D", 8000, utc(2026, 11, 2), "lead", []),
    ("E", 16000, utc(2026, 9, 15), "negotiation", []),
    ("F", 32000, utc(2026, 9, 20), "lead", [("interest", utc(2026, 10, 31, 23, 59))]),
]


def stood_at(at: Any) -> dict[str, tuple[int, int]]:
    """Open stage -> (deals, amount) as they stood at instant `at`, replayed by hand."""
    out: dict[str, tuple[int, int]] = {}
    for _name, amount, created, first, events in HISTORY:
        if created >= at:
            continue
        where = first
        for stage, when in events:
            if when < at:
                where = stage
        if where in ("won", "lost"):
            continue
        n, total = out.get(where, (0, 0))
        out[where] = (n + 1, total + amount)
    return out


def test_chart_data_counts_and_values_as_they_stood_at_the_periods_end(db_engine) -> None:
    from funnelbot import db, reports
    from funnelbot.i18n import translator
    from funnelbot.periods import Period

    for i, (name, amount, created, first, events) in enumerate(HISTORY, start=1):
        new_deal(db_engine, name, "U1", created, stage=first, amount=amount)
        for stage, at in events:
            if stage == "won":
                win(db_engine, i, at)
            elif stage == "lost":
                lose(db_engine, i, at)
            else:
                move(db_engine, i, stage, at)
    october = Period(dt.date(2026, 10, 1), dt.date(2026, 10, 31))
    end, previous_end = utc(2026, 11, 1), utc(2026, 10, 1)  # September has 30 days, October 31
    want, before = stood_at(end), stood_at(previous_end)

    with db.make_session_factory(db_engine)() as session:
        chart = reports.chart_data(session, "T0TEST", october, translator("en"), tz="UTC")
    got = [(b.label, b.deals, b.amount, b.previous) for b in chart.bars]
    assert got == [
        (
            label,
            want.get(key, (0, 0))[0],
            f"${want.get(key, (0, 0))[1]:,}",
            before.get(key, (0, 0))[0],
        )
        for key, label in [
            ("lead", "Lead"),
            ("interest", "Interest"),
            ("proposal", "Proposal"),
            ("negotiation", "Negotiation"),
        ]
    ]
    assert "2026-10-01..2026-10-31" in chart.subtitle
    assert len(chart.conversions) == 3


# --- the command line ------------------------------------------------------------------------


def small_team(target: Any) -> None:
    workspace(target, utc(2026, 10, 1))
    new_deal(target, "Acme", "U1", utc(2026, 11, 2, 10), amount=5000)
    new_deal(target, "Globex", "U2", utc(2026, 11, 3, 10), stage="interest", amount=12000)
    move(target, 2, "proposal", utc(2026, 11, 10, 10))
    new_deal(target, "华为 云计算", "U1", utc(2026, 11, 4, 10), stage="negotiation", amount=50000)
    new_deal(target, "Initech", "U3", utc(2026, 10, 20, 10), stage="negotiation", amount=8000)
    win(target, 4, utc(2026, 11, 12, 10))


def test_cli_chart_writes_a_png(db_engine, cli_env, run_cli, tmp_path: Path) -> None:
    small_team(db_engine)
    out = tmp_path / "x.png"
    # in Chinese: the stage names need the CJK font in a fresh process too
    args = ["chart", "--out", str(out), "--since", "2026-11-01", "--until", "2026-11-15"]
    proc = run_cli([*args, "--lang", "zh"], cli_env)
    assert proc.returncode == 0, proc.stderr
    assert decode_png(out.read_bytes()).shape[:2] == (1000, 1600)
    assert "Glyph" not in proc.stderr and "missing from" not in proc.stderr, proc.stderr
    assert "x.png" in proc.stderr


def test_cli_chart_without_a_workspace_says_so(run_cli, tmp_path: Path) -> None:
    env = {"DATABASE_URL": f"sqlite:///{tmp_path}/empty.db", "FUNNELBOT_SCHEDULER": "off"}
    proc = run_cli(["chart", "--out", str(tmp_path / "x.png")], env)
    assert proc.returncode != 0
    assert "workspace" in proc.stderr
    assert "Traceback" not in proc.stderr
    assert not (tmp_path / "x.png").exists()


# --- /funnel chart ---------------------------------------------------------------------------


def test_funnel_chart_uploads_a_png_to_the_channel(app_server) -> None:
    app = app_server
    small_team(app)
    send_command(app, "chart", "U1", command="/funnel")
    completed = app.fake.wait_for("files.completeUploadExternal")
    assert completed.params["channel_id"] == "C0TEST"
    [upload] = uploads(app.fake)
    assert upload["channel_id"] == "C0TEST"
    assert upload["length"] == len(upload["bytes"])
    assert decode_png(upload["bytes"]).shape[:2] == (1000, 1600)
    # this week so far (Monday 16 to Sunday 22 November)
    assert upload["filename"] == "funnel-2026-11-16..2026-11-22.png"


def test_funnel_chart_for_a_period_in_chinese(app_server) -> None:
    app = app_server
    app.fake.users["UZH"] = {"locale": "zh-CN"}
    small_team(app)
    send_command(app, "chart 上个月", "UZH", command="/funnel")
    app.fake.wait_for("files.completeUploadExternal")
    [upload] = uploads(app.fake)
    assert upload["filename"] == "funnel-2026-10-01..2026-10-31.png"
    assert upload["title"] == "销售漏斗"
    assert decode_png(upload["bytes"]).shape[:2] == (1000, 1600)


def test_funnel_chart_failed_upload_gets_a_kind_answer(app_server) -> None:
    app = app_server
    small_team(app)
    app.fake.fail_next("files.getUploadURLExternal", error="not_in_channel")
    _, url, _ = send_command(app, "chart", "U1", command="/funnel")
    answer = wait_response(app, url)
    assert answer.get("response_type", "ephemeral") == "ephemeral"
    text = all_text(answer)
    assert "could not post the chart" in text and "/invite" in text, text
    assert "Traceback" not in text and "not_in_channel" not in text
    assert app.fake.calls_to("files.completeUploadExternal") == []
    assert uploads(app.fake) == []
