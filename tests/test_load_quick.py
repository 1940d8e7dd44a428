"""The real server under concurrent load, and through a database outage (SPEC §6, §8).

`python -m funnelbot serve --workers 2` (Granian) on PostgreSQL, driven over loopback by
concurrent signed slash commands (tests/loadkit.py); the database is then checked against
what every user was told. The long version with numbers is benchmarks/load.py.
"""

from __future__ import annotations

import random
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import loadkit
import pgcluster
import pytest
from slackclient import SlackRequests

pytestmark = pytest.mark.postgresql


@pytest.fixture
def answer_log() -> Iterator[loadkit.AnswerLog]:
    fake = loadkit.AnswerLog().start()
    try:
        yield fake
    finally:
        fake.stop()


@pytest.fixture
def load_db_url(pg_databases, pg_template) -> Iterator[str]:
    """A fresh migrated database on the session's PostgreSQL."""
    name = pg_databases.new_name()
    url = pg_databases.create(name, template=pg_template)
    try:
        yield url
    finally:
        pg_databases.drop(name)


@pytest.fixture
def own_cluster(postgres_url: str) -> Iterator[tuple[str, Path]]:
    """A throwaway cluster of this test's own, so stopping it leaves the session's alone."""
    try:
        url, root = pgcluster.start_cluster()
    except (pgcluster.ClusterError, OSError, KeyError) as exc:
        pytest.skip(f"cannot start a second PostgreSQL cluster: {exc}")
    try:
        yield url, root
    finally:
        pgcluster.stop(root)


def test_concurrent_commands_are_stored_exactly_once(
    load_db_url: str, answer_log: loadkit.AnswerLog, tmp_path: Path
) -> None:
    """4 clients x 40 mixed commands on 2 workers: every acknowledged change exactly once,
    gap-free history, versions that add up (no lost update), and no stack trace."""
    users = loadkit.Load.users(4)
    with loadkit.start_funnelbot(
        2, fake=answer_log, db_url=load_db_url, users=users, log_path=tmp_path / "server.log"
    ) as server:
        load = loadkit.Load(server.url, answer_log, clients=4, requests=40, seed=7)
        records = load.run()
        # The production edge: a 2 MB body is refused unread, a forged signature with 401.
        assert loadkit.oversized_status(server.url, 2_000_000) == 413
        unsigned = SlackRequests(server.url, "wrong-secret").command(
            "/deal", "new Sneaky", user_id=users[0], team_id=loadkit.TEAM
        )
        assert unsigned.status == 401
    log = server.log_text()

    summary = loadkit.summarize("funnelbot", records, load.started, load.finished)
    assert summary.requests == 160
    assert summary.ack_max is not None and summary.ack_max < loadkit.SLACK_ACK_LIMIT * 1000
    result = loadkit.verify(records, load_db_url, tag=load.tag, cli=False)
    assert result.ok, "\n".join(result.problems)
    # The load really exercised every kind of change, and concurrently on shared deals.
    assert result.created_ok >= 10 and result.advances_ok >= 5 and result.notes_ok >= 5
    assert result.deals == result.created_ok
    assert result.history == result.created_ok + result.advances_ok
    assert not loadkit.tracebacks(log), log[-4000:]


def _readyz(url: str) -> int:
    try:
        with urllib.request.urlopen(url + "/readyz", timeout=5) as resp:
            return resp.status
    except urllib.error.HTTPError as err:
        return err.code


def test_database_outage_answers_clearly_and_the_bot_recovers(
    own_cluster: tuple[str, Path], answer_log: loadkit.AnswerLog, tmp_path: Path
) -> None:
    """PostgreSQL stops: `/deal new` is acked 200 and answered 'cannot reach its database'
    within Slack's 3 s, also after the team settings cache expired; nothing is written.
    PostgreSQL starts again: the next command works, with no restart of the bot."""
    db_url, root = own_cluster
    user = "ULOAD01"
    rng = random.Random(3)
    with loadkit.start_funnelbot(
        2, fake=answer_log, db_url=db_url, users=[user], log_path=tmp_path / "server.log"
    ) as server:
        load = loadkit.Load(server.url, answer_log, clients=1, requests=0)
        slack = SlackRequests(server.url, loadkit.SIGNING_SECRET, timeout=30)
        records: list[loadkit.Sent] = []

        def new_deal() -> loadkit.Sent:
            sent = load.send(slack, user, load.build(1, len(records), rng, kind="new"))
            records.append(sent)
            return sent

        assert new_deal().outcome == "ok"

        pgcluster.stop_server(root)
        down_at = time.monotonic()
        during: list[loadkit.Sent] = []
        # Past the 5 s the team settings are cached for, and over both workers.
        while time.monotonic() - down_at < 6.5:
            sent = new_deal()
            during.append(sent)
            assert sent.status == 200
            assert sent.ack_ms < 3000, sent
            assert sent.outcome == "db", sent
            assert sent.answer_ms is not None and sent.answer_ms < 3000, sent
            assert loadkit.DATABASE_DOWN in (sent.answer or "")
            time.sleep(0.4)
        assert _readyz(server.url) == 503

        pgcluster.start_server(root)
        first = new_deal()
        assert first.outcome == "ok", first
        after = [new_deal() for _ in range(4)]
        assert [s.outcome for s in after] == ["ok"] * 4, after
        assert _readyz(server.url) == 200
    log = server.log_text()

    assert len(during) >= 8
    result = loadkit.verify(
        records, db_url, tag=load.tag, allowed=lambda s: ("ok", "db"), cli=False
    )
    assert result.ok, "\n".join(result.problems)
    assert result.deals == 6 and result.created_ok == 6  # none of the failed ones half-made
    assert not loadkit.tracebacks(log), log[-4000:]
