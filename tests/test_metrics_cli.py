"""`funnelbot metrics conversion|forecast --json` (SPEC §6) on a small hand-made dataset
imported through `funnelbot import`, with every expected number worked out by hand below
(workspace time zone Asia/Shanghai; a date alone is local midnight)."""

from __future__ import annotations

import csv
import datetime as dt
import json
import math
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from conftest import run_cli
from metrics_model import wilson

from funnelbot import deals as domain
from funnelbot.db import make_engine, make_session_factory

TEAM = "TCLI"
HEADER = [
    "name", "amount", "owner", "source", "stage", "status", "lost_reason", "created_at",
    "closed_at", "expected_close", "entered:lead", "entered:interest", "entered:proposal",
    "entered:negotiation", "entered:won", "entered:lost",
]  # fmt: skip

# name, amount, owner, source, stage, status, lost_reason, created, closed, expected_close,
# then the date the deal entered lead, interest, proposal, negotiation, won, lost
ROWS = [
    # --- created in April 2026 (Shanghai): the cohort
    ("A", "1000", "U1", "web", "won", "won", "", "2026-04-01", "2026-04-17", "",
     "2026-04-01", "2026-04-03", "2026-04-07", "", "2026-04-17", ""),
    # skips interest, lost in proposal
    ("B", "2000", "U1", "web", "lost", "lost", "price", "2026-04-02", "2026-04-09", "",
     "2026-04-02", "", "2026-04-04", "", "", "2026-04-09"),
    ("C", "3000", "U2", "referral", "interest", "open", "", "2026-04-05", "", "2026-05-15",
     "2026-04-05", "2026-04-06", "", "", "", ""),
    # 2026-03-31T17:00Z is 2026-04-01 01:00 in Shanghai; skips to negotiation 9 d 23 h later
    ("D", "4000", "U2", "web", "negotiation", "open", "", "2026-03-31T17:00:00Z", "", "2026-06-30",
     "2026-03-31T17:00:00Z", "", "", "2026-04-11", "", ""),
    ("E", "500", "U1", "referral", "lost", "lost", "", "2026-04-20", "2026-04-25", "",
     "2026-04-20", "", "", "", "", "2026-04-25"),
    ("H", "6000", "U2", "referral", "won", "won", "", "2026-04-15", "2026-04-30", "",
     "2026-04-15", "2026-04-16", "2026-04-18", "2026-04-21", "2026-04-30", ""),
    # --- outside April: 2026-03-31 23:59:59 in Shanghai, and May
    ("F", "9999", "U1", "web", "won", "won", "", "2026-03-31T15:59:59Z", "2026-04-10", "",
     "2026-03-31T15:59:59Z", "", "", "", "2026-04-10", ""),
    ("G", "500", "U1", "web", "lead", "open", "", "2026-05-01", "", "2026-06-01",
     "", "", "", "", "", ""),
    ("I", "100", "U1", "event", "proposal", "open", "", "2026-03-10", "", "",
     "2026-03-10", "", "2026-03-12", "", "", ""),
    ("J", "50", "U2", "web", "lead", "open", "", "2026-03-11", "", "2026-07-01",
     "", "", "", "", "", ""),
]  # fmt: skip

STAGE_KEYS = {
    "key", "name", "reached", "advanced", "conversion", "conversion_low", "conversion_high",
    "open", "lost", "avg_days", "median_days",
}  # fmt: skip
TOP_KEYS = {
    "period", "stages", "won", "lost", "win_rate", "win_rate_low", "win_rate_high",
    "cycle_days_avg",
}  # fmt: skip
FORECAST_KEYS = {
    "period", "as_of", "deals", "amount_open", "weighted", "p10", "p50", "p90", "undated", "stages",
}  # fmt: skip
NAMES = ["Lead", "Interest", "Proposal", "Negotiation"]
KEYS = ["lead", "interest", "proposal", "negotiation"]
D_LEAD = 9 + 23 / 24  # 2026-03-31T17:00Z .. 2026-04-10T16:00Z


def expected(reached, advanced, open_, lost, stays, won, lost_total, cycles):
    """The conversion document from hand-counted inputs (ratios and intervals derived)."""
    stages = []
    for i, key in enumerate(KEYS):
        low, high = wilson(advanced[i], reached[i])
        here = sorted(stays[i])
        n = len(here)
        stages.append(
            {
                "key": key,
                "name": NAMES[i],
                "reached": reached[i],
                "advanced": advanced[i],
                "conversion": advanced[i] / reached[i] if reached[i] else None,
                "conversion_low": low,
                "conversion_high": high,
                "open": open_[i],
                "lost": lost[i],
                "avg_days": sum(here) / n if n else None,
                "median_days": (here[(n - 1) // 2] + here[n // 2]) / 2 if n else None,
            }
        )
    low, high = wilson(won, won + lost_total)
    return {
        "period": {"since": "2026-04-01", "until": "2026-04-30"},
        "stages": stages,
        "won": won,
        "lost": lost_total,
        "win_rate": won / (won + lost_total) if won + lost_total else None,
        "win_rate_low": low,
        "win_rate_high": high,
        "cycle_days_avg": sum(cycles) / len(cycles) if cycles else None,
    }


CONVERSION = {
    # everyone: A B C D E H
    (): expected(
        reached=[6, 5, 4, 3],
        advanced=[5, 4, 3, 2],
        open_=[0, 1, 0, 1],
        lost=[1, 0, 1, 0],
        stays=[[2, 2, 1, D_LEAD, 5, 1], [4, 2], [10, 5, 3], [9]],
        won=2,
        lost_total=2,
        cycles=[16, 15],
    ),
    # U1: A B E
    ("--owner", "U1"): expected(
        reached=[3, 2, 2, 1],
        advanced=[2, 2, 1, 1],
        open_=[0, 0, 0, 0],
        lost=[1, 0, 1, 0],
        stays=[[2, 2, 5], [4], [10, 5], []],
        won=1,
        lost_total=2,
        cycles=[16],
    ),
    # referral: C E H
    ("--source", "referral"): expected(
        reached=[3, 2, 1, 1],
        advanced=[2, 1, 1, 1],
        open_=[0, 1, 0, 0],
        lost=[1, 0, 0, 0],
        stays=[[1, 5, 1], [2], [3], [9]],
        won=1,
        lost_total=1,
        cycles=[15],
    ),
    # U2 and web: D alone
    ("--owner", "U2", "--source", "web"): expected(
        reached=[1, 1, 1, 1],
        advanced=[1, 1, 1, 0],
        open_=[0, 0, 0, 1],
        lost=[0, 0, 0, 0],
        stays=[[D_LEAD], [], [], []],
        won=0,
        lost_total=0,
        cycles=[],
    ),
}


def write_rows(path: Path) -> Path:
    with path.open("w", encoding="utf-8", newline="") as out:
        writer = csv.writer(out, lineterminator="\n")
        writer.writerow(HEADER)
        writer.writerows(ROWS)
    return path


@pytest.fixture(
    scope="module",
    params=[
        pytest.param("sqlite", id="sqlite"),
        pytest.param("postgresql", id="postgresql", marks=pytest.mark.postgresql),
    ],
)
def database(request, tmp_path_factory):
    """One database per backend for this module (the tests below only read TEAM)."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path_factory.mktemp('cli')}/funnelbot.db"
        return
    dbs = request.getfixturevalue("pg_databases")
    template = request.getfixturevalue("pg_template")
    name = dbs.new_name()
    try:
        yield dbs.create(name, template=template)
    finally:
        dbs.drop(name)


@pytest.fixture(scope="module")
def env(database, tmp_path_factory) -> dict[str, str | None]:
    """The command line's environment, with ROWS imported into TEAM (Shanghai time)."""
    env = {
        "DATABASE_URL": database,
        "FUNNELBOT_TIMEZONE": "Asia/Shanghai",
        "FUNNELBOT_SCHEDULER": "off",
        "SLACK_BOT_TOKEN": None,
    }
    path = write_rows(tmp_path_factory.mktemp("csv") / "deals.csv")
    proc = run_cli(["import", str(path), "--team", TEAM], env)
    assert proc.returncode == 0, proc.stderr
    return env


def metrics_json(env, *args: str, team: str = TEAM) -> dict:
    proc = run_cli(["metrics", *args, "--team", team, "--json"], env)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.endswith("\n")
    return json.loads(proc.stdout)  # JSON on stdout alone


def assert_close(actual, want, path="$") -> None:
    if isinstance(want, dict):
        assert set(actual) == set(want), (path, set(actual) ^ set(want))
        for key in want:
            assert_close(actual[key], want[key], f"{path}.{key}")
    elif isinstance(want, list):
        assert len(actual) == len(want), path
        for i, (a, w) in enumerate(zip(actual, want, strict=True)):
            assert_close(a, w, f"{path}[{i}]")
    elif isinstance(want, float):
        assert isinstance(actual, float | int) and not isinstance(actual, bool), (path, actual)
        assert math.isclose(actual, want, rel_tol=1e-9, abs_tol=1e-9), (path, actual, want)
    else:
        assert actual == want and type(actual) is type(want), (path, actual, want)


def test_conversion_json(env) -> None:
    period = ["conversion", "--since", "2026-04-01", "--until", "2026-04-30"]
    # independent read-only runs, side by side to keep the suite quick
    with ThreadPoolExecutor(max_workers=4) as pool:
        docs = list(pool.map(lambda f: metrics_json(env, *period, *f), CONVERSION))
    for (filters, want), doc in zip(CONVERSION.items(), docs, strict=True):
        assert set(doc) == TOP_KEYS
        assert [s["key"] for s in doc["stages"]] == KEYS  # the open stages, in funnel order
        assert all(set(s) == STAGE_KEYS for s in doc["stages"])
        assert_close(doc, want, " ".join(filters) or "all")


def test_forecast_json(env) -> None:
    args = ["forecast", "--since", "2026-04-01", "--until", "2026-06-30", "--as-of", "2026-05-31"]
    with ThreadPoolExecutor(max_workers=2) as pool:
        everyone = pool.submit(metrics_json, env, *args)
        u2 = pool.submit(metrics_json, env, *args, "--owner", "U2")
        doc, mine = everyone.result(), u2.result()
    assert set(doc) == FORECAST_KEYS
    assert set(doc["undated"]) == {"deals", "amount_open", "weighted"}
    assert doc["period"] == {"since": "2026-04-01", "until": "2026-06-30"}
    assert doc["as_of"] == "2026-05-31"
    # closed in the 365 days up to 2026-05-31: A F H won, B E lost (fewer than 20: defaults)
    assert doc["stages"] == [
        {"key": "lead", "p_win": 0.1, "p_win_default": 0.1, "sample": 5},
        {"key": "interest", "p_win": 0.2, "p_win_default": 0.2, "sample": 4},
        {"key": "proposal", "p_win": 0.4, "p_win_default": 0.4, "sample": 4},
        {"key": "negotiation", "p_win": 0.7, "p_win_default": 0.7, "sample": 3},
    ]
    # open with expected close in Q2: C 3000 × 0.2 + D 4000 × 0.7 (on 06-30) + G 500 × 0.1;
    # J closes 07-01 (outside), I has no date
    assert (doc["deals"], doc["amount_open"], doc["weighted"]) == (3, 7500.0, 3450.0)
    assert doc["undated"] == {"deals": 1, "amount_open": 100.0, "weighted": 40.0}
    # the won amount: 0 with P 0.216, ≤ 4000 with P 0.804, ≤ 4500 with 0.86, ≤ 7000 with 0.986
    assert (doc["p10"], doc["p50"], doc["p90"]) == (0.0, 4000.0, 7000.0)

    # U2 closed only H; its pipeline is C and D, nothing undated
    assert [s["sample"] for s in mine["stages"]] == [1, 1, 1, 1]
    assert (mine["deals"], mine["amount_open"], mine["weighted"]) == (2, 7000.0, 3400.0)
    assert mine["undated"] == {"deals": 0, "amount_open": 0.0, "weighted": 0.0}
    assert (mine["p10"], mine["p50"], mine["p90"]) == (0.0, 4000.0, 7000.0)


def test_the_time_zone_stored_from_slack_wins_over_the_environment(env, tmp_path) -> None:
    # a workspace whose admin chose Asia/Shanghai in Slack, on a UTC server
    engine = make_engine(env["DATABASE_URL"])
    try:
        with make_session_factory(engine).begin() as session:
            now = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
            domain.ensure_workspace(session, "TZONE", now).settings = {"timezone": "Asia/Shanghai"}
    finally:
        engine.dispose()
    utc_env = {**env, "FUNNELBOT_TIMEZONE": "UTC"}
    proc = run_cli(["import", str(write_rows(tmp_path / "deals.csv")), "--team", "TZONE"], utc_env)
    assert proc.returncode == 0, proc.stderr
    # dates alone were read as Shanghai midnights, and April is Shanghai's April
    doc = metrics_json(
        utc_env, "conversion", "--since", "2026-04-01", "--until", "2026-04-30", team="TZONE"
    )
    assert_close(doc, CONVERSION[()])
