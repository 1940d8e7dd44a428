"""Scheduler benchmark: the stalled-deal scan and DM batching over 100,000 open deals of
200 reps (Slack latency excluded: DMs go to a no-op client), and the funnel PNG next to a
bare matplotlib bar chart of the same size, measured in the same run.

    python benchmarks/scheduler_jobs.py [--deals 100000] [--reps 200] [--quick]
"""

from __future__ import annotations

import argparse
import datetime as dt
import io
import random
import resource
import statistics
import sys
import tempfile
import time
from decimal import Decimal
from pathlib import Path
from typing import Any

import sqlalchemy as sa

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from funnelbot import charts, db, jobs  # noqa: E402
from funnelbot import deals as domain  # noqa: E402
from funnelbot.config import Settings  # noqa: E402
from funnelbot.models import Deal, Stage, StageChange  # noqa: E402

TEAM = "TBENCH"
NOW = dt.datetime(2026, 11, 30, 10, 0, tzinfo=dt.UTC)


class NullSlack:
    """Stands in for the Web API with no latency: counts DMs, keeps nothing."""

    token = "xoxb-bench"

    def __init__(self) -> None:
        self.dms = 0

    def conversations_open(self, users: str) -> dict[str, Any]:
        return {"channel": {"id": "D" + users}}

    def chat_postMessage(self, **_: Any) -> dict[str, Any]:  # noqa: N802 - slack_sdk's name
        self.dms += 1
        return {"ok": True, "ts": "1.0"}

    def users_info(self, **_: Any) -> dict[str, Any]:
        return {"user": {"tz": "UTC", "locale": "en-US"}}


def generate(engine: sa.Engine, deals: int, reps: int) -> None:
    sessions = db.make_session_factory(engine)
    with sessions.begin() as session:
        domain.ensure_workspace(session, TEAM, NOW)
    with engine.begin() as conn:
        stages = conn.execute(
            sa.select(Stage.id, Stage.stall_days).where(Stage.team_id == TEAM, Stage.kind == "open")
        ).all()
    rng = random.Random(7)
    chunk = 10_000
    for first in range(0, deals, chunk):
        rows, history = [], []
        for n in range(first + 1, min(deals, first + chunk) + 1):
            stage_id, stall = rng.choice(stages)
            idle = rng.randint(0, 40)
            at = NOW - dt.timedelta(days=idle, hours=rng.randint(0, 23))
            rows.append(
                {
                    "id": n,
                    "team_id": TEAM,
                    "number": n,
                    "name": f"Deal {n}",
                    "name_folded": f"deal {n}",
                    "amount": Decimal(rng.randint(1, 500) * 100),
                    "owner_id": f"U{n % reps:04d}",
                    "stage_id": stage_id,
                    "status": "open",
                    "created_by": "U0",
                    "created_at": at,
                    "updated_at": at,
                    "last_activity_at": at,
                    "version": 1,
                    "furthest_stage_id": stage_id,
                }
            )
            history.append(
                {
                    "team_id": TEAM,
                    "deal_id": n,
                    "from_stage_id": None,
                    "to_stage_id": stage_id,
                    "at": at,
                    "by": "U0",
                    "deal_version": 1,
                    "deal_created_at": at,
                }
            )
        with engine.begin() as conn:
            conn.execute(sa.insert(Deal), rows)
            conn.execute(sa.insert(StageChange), history)


def bare_png() -> bytes:
    from matplotlib.figure import Figure

    fig = Figure(figsize=(16, 10), dpi=100)
    ax = fig.add_subplot()
    ax.bar(["Lead", "Interest", "Proposal", "Negotiation"], [120, 80, 40, 12])
    out = io.BytesIO()
    fig.savefig(out, format="png", dpi=100)
    return out.getvalue()


def funnel_png() -> bytes:
    bars = [
        charts.FunnelBar("线索 Lead", 120, "¥1,200万", 100),
        charts.FunnelBar("意向 Interest", 80, "¥800万", 85),
        charts.FunnelBar("方案 Proposal", 40, "¥400万", 30),
        charts.FunnelBar("谈判 Negotiation", 12, "¥150万", 10),
    ]
    return charts.render_funnel(
        charts.FunnelChart("销售漏斗 Sales funnel", "2026-W48", bars, ["67%", "50%", "30%"], "上周")
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--deals", type=int, default=100_000)
    parser.add_argument("--reps", type=int, default=200)
    parser.add_argument("--quick", action="store_true", help="5,000 deals, 20 reps")
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    if args.quick:
        args.deals, args.reps, args.repeat = 5_000, 20, 3

    with tempfile.TemporaryDirectory() as tmp:
        url = f"sqlite:///{tmp}/bench.db"
        engine = db.make_engine(url)
        db.upgrade(engine)
        started = time.perf_counter()
        generate(engine, args.deals, args.reps)
        print(
            f"generated {args.deals:,} open deals of {args.reps} reps in {time.perf_counter() - started:.1f} s"
        )

        settings = Settings(database_url=url, slack_bot_token="xoxb-bench", scheduler_enabled=False)
        slack = NullSlack()
        context = jobs.JobContext(settings, db.make_session_factory(engine), slack)  # type: ignore[arg-type]
        started = time.perf_counter()
        lines = jobs.run_job(context, "stalled-nudges", NOW)
        scan = time.perf_counter() - started
        nudged = sum(
            int(line.split(" about ")[1].split()[0]) for line in lines if " about " in line
        )
        print(
            f"stalled-nudges: {scan:.2f} s for {len(lines)} DMs listing {nudged:,} stalled deals "
            f"({slack.dms} chat.postMessage calls, Slack latency excluded) — target < 2 s: "
            f"{'PASS' if scan < 2 else 'MISS'}"
        )
        engine.dispose()

    funnel_png(), bare_png()  # warm fonts and caches
    ours, bare = [], []
    for _ in range(args.repeat):
        t = time.perf_counter()
        png = funnel_png()
        ours.append(time.perf_counter() - t)
        t = time.perf_counter()
        bare_png()
        bare.append(time.perf_counter() - t)
    o, b = statistics.median(ours), statistics.median(bare)
    print(
        f"funnel PNG {len(png):,} bytes: median {o * 1000:.0f} ms; bare matplotlib bar chart {b * 1000:.0f} ms; "
        f"ratio {o / b:.2f}x — targets < 1 s: {'PASS' if o < 1 else 'MISS'}, within 2x: {'PASS' if o <= 2 * b else 'MISS'}"
    )
    print(f"peak RSS {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MB")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
