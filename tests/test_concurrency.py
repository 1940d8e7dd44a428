"""Concurrent changes to one deal (SPEC §3, §8): text commands act on the deal as it is
when they run, so N concurrent `advance` commands advance N times; N concurrent clicks of
one button change it once. No update and no history row is lost, and the history's deal
versions have no gap or duplicate. Every test runs on SQLite and PostgreSQL.
"""

from __future__ import annotations

import threading
from decimal import Decimal

import pytest
import sqlalchemy as sa
from helpers import (
    ADVANCE,
    TEAM,
    create_deal,
    deal_row,
    history_rows,
    send_click,
    send_command,
    wait_response,
)

from funnelbot.deals import stages_changed


def _at_once(count: int, send) -> list:
    """Call send(i) from `count` threads released together; return their results."""
    barrier = threading.Barrier(count)
    results: list = [None] * count
    errors: list[BaseException] = []

    def run(i: int) -> None:
        try:
            barrier.wait(timeout=10)
            results[i] = send(i)
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(count)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert not errors, errors
    return results


def _add_open_stages(app, keys: list[str], team: str = TEAM) -> None:
    """Extra open stages after negotiation (positions 5, 6, ...), as an admin could add."""
    from funnelbot.models import Stage

    stages = Stage.__table__
    with app.runtime.engine.begin() as conn:
        for offset, key in enumerate(keys):
            conn.execute(
                stages.insert().values(
                    team_id=team,
                    key=key,
                    name_en=key.title(),
                    name_zh=key,
                    position=5 + offset,
                    kind="open",
                    stall_days=14,
                    probability=Decimal("0.8"),
                    active=True,
                )
            )
        stages_changed(conn, [team])


def _check_history_chain(app, number: int, expected_stages: list[str]) -> None:
    rows = history_rows(app, number)
    assert [r["to_stage"] for r in rows] == expected_stages
    assert rows[0]["from_stage"] is None
    for previous, row in zip(rows, rows[1:], strict=False):
        assert row["from_stage"] == previous["to_stage"]
        assert row["at"] > previous["at"]
    assert [r["deal_version"] for r in rows] == list(range(1, len(rows) + 1))


@pytest.mark.parametrize("threads", [2, 8])
def test_concurrent_advance_commands_all_happen(app_server, threads: int) -> None:
    create_deal(app_server, '"Acme Corp" 10k')
    extra = ["pilot", "security", "legal", "procurement", "signature", "kickoff"]
    _add_open_stages(app_server, extra)
    funnel = ["lead", "interest", "proposal", "negotiation", *extra]

    urls = _at_once(threads, lambda i: send_command(app_server, "advance #1", "U1")[1])
    answers = [wait_response(app_server, url, timeout=30) for url in urls]

    for answer in answers:
        assert "moved to" in answer["text"], answer["text"]
    row = deal_row(app_server, 1)
    assert row["stage"] == funnel[threads]
    assert row["version"] == 1 + threads
    _check_history_chain(app_server, 1, funnel[: threads + 1])
    # each answer names a different stage: every command saw the one before it
    reached = sorted(answer["text"].split("moved to ")[1].split(".")[0] for answer in answers)
    assert reached == sorted(s.title() for s in funnel[1 : threads + 1])


def test_concurrent_clicks_on_one_button_change_the_deal_once(app_server) -> None:
    create_deal(app_server, '"Acme Corp" 10k')
    for version in (1, 2, 3):
        urls = _at_once(2, lambda i, v=version: send_click(app_server, ADVANCE, f"1:{v}", "U1")[1])
        answers = [wait_response(app_server, url, timeout=30) for url in urls]
        stale = [a for a in answers if "nothing changed" in a["text"].lower()]
        moved = [a for a in answers if "moved to" in a["text"]]
        assert (len(moved), len(stale)) == (1, 1), [a["text"] for a in answers]
        assert moved[0]["replace_original"] is True
        assert deal_row(app_server, 1)["version"] == version + 1
    _check_history_chain(app_server, 1, ["lead", "interest", "proposal", "negotiation"])


def test_concurrent_changes_of_different_kinds_lose_nothing(app_server) -> None:
    create_deal(app_server, '"Acme Corp" 10k')
    commands = [
        "advance #1",
        "note #1 one",
        "note #1 two",
        "next #1 call them due:2027-01-05",
        "advance #1",
        "note #1 three",
    ]
    urls = _at_once(len(commands), lambda i: send_command(app_server, commands[i], "U1")[1])
    for url in urls:
        assert "#1" in wait_response(app_server, url, timeout=30)["text"]
    row = deal_row(app_server, 1)
    assert row["stage"] == "proposal"
    assert row["next_step"] == "call them"
    assert row["version"] == 1 + len(commands)
    from funnelbot.models import Note

    notes = Note.__table__
    with app_server.runtime.engine.connect() as conn:
        texts = sorted(conn.execute(sa.select(notes.c.text)).scalars())
    assert texts == ["one", "three", "two"]
    rows = history_rows(app_server, 1)
    assert [(r["from_stage"], r["to_stage"]) for r in rows] == [
        (None, "lead"),
        ("lead", "interest"),
        ("interest", "proposal"),
    ]
