"""SPEC §8 bad input and odd-but-valid input, through Slack.

Bad input gets an answer that names the problem, and the database is exactly as it was.
Odd but valid text is stored exactly as typed (Slack's `&amp; &lt; &gt;` undone) and
shown back only inside `plain_text` objects, so it never pings, links or formats. Only
the owner, a manager or an admin may change a deal. Every test runs on SQLite and
PostgreSQL.
"""

from __future__ import annotations

import json

import pytest
from conftest import ADMIN, MANAGER
from helpers import (
    ADVANCE,
    all_text,
    click,
    create_deal,
    deal_count,
    deal_row,
    history_rows,
    mrkdwn_texts,
    note_rows,
    plain_texts,
    run_command,
    snapshot,
)


def slack_escape(text: str) -> str:
    """What Slack sends for text the user typed: & < > escaped, nothing else."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _digits(text: str) -> str:
    return text.replace(",", "").replace("\u202f", "").replace("\xa0", "")


# --- bad input: named, nothing changed ------------------------------------------------


@pytest.fixture
def one_deal(app_server):
    """Deal #1 'Acme Corp' (U1, lead, 50k) with a note; returns the app."""
    create_deal(app_server, '"Acme Corp" 50k')
    run_command(app_server, "note #1 first contact")
    return app_server


# (command text, words the answer must contain), grouped by the kind of mistake
BAD_COMMANDS = {
    "unknown ref": [
        ("show #99", ["#99"]),
        ("advance #99", ["#99"]),
        ("show 12345", ["12345"]),
        ("advance nosuchdeal", ["nosuchdeal"]),
        ("won Globex", ["Globex"]),
        ("note #404 hello", ["#404"]),
        ("show", ["#42"]),  # which deal?
    ],
    "bad amount": [
        ("new Globex -5000", ["-5000"]),
        ("new Globex -$5k", ["-$5k"]),
        ("new Globex $-5k", ["$-5k"]),
        ('new "Globex" 1000000000000000', ["1000000000000000"]),
    ],
    "unknown stage": [
        ("move #1 nowhere", ["nowhere"]),
        ("move #1", ["move"]),
        ("list all nowhere", ["nowhere"]),
        ("new Globex stage:nowhere", ["nowhere"]),
        ("new Globex stage:won", ["won"]),
    ],
    "bad name": [
        ("new " + "N" * 201, ["201", "200"]),
        ('new "' + "名" * 201 + '"', ["201", "200"]),
        ('new "Globex', ['"']),
        ("new Globex 10k <@U2|bob> <@U3|carol>", ["one"]),
        ("new Globex owner:bob", ["owner"]),
        ("new Globex close:someday", ["someday"]),
    ],
    "long text": [
        ("note #1 " + "x" * 10_000, ["10000", "2000"]),
        ("next #1 " + "y" * 10_000, ["10000", "2000"]),
        ("lost #1 " + "z" * 10_000, ["10000", "2000"]),
        ("note #1", ["note"]),
        ("next #1 call back due:someday", ["someday"]),
    ],
    "bad usage": [
        ("assign #1 bob", ["assign"]),
        ("assign #1 <@U1|me>", ["U1"]),
        ("frobnicate #1", ["frobnicate"]),
    ],
}


@pytest.mark.parametrize("kind", list(BAD_COMMANDS))
def test_bad_command_is_named_and_changes_nothing(one_deal, kind: str) -> None:
    before = snapshot(one_deal)
    for text, named in BAD_COMMANDS[kind]:
        answer = run_command(one_deal, text)
        assert answer["response_type"] == "ephemeral", text[:40]
        message = _digits(answer["text"])
        for word in named:
            assert word in message, (text[:40], word, answer["text"][:300])
        assert "Traceback" not in all_text(answer)
        assert snapshot(one_deal) == before, text[:40]


def test_bad_input_through_cli_export_is_byte_for_byte_unchanged(one_deal, run_cli, db_url) -> None:
    env = {"DATABASE_URL": db_url}

    def export() -> list[str]:
        outs = []
        # deals (every stage change bumps a deal's version and updated_at) and notes
        for kind in ("deals", "notes"):
            proc = run_cli(
                ["export", kind, "--format", "json", "--team", "T0TEST"], env, check=True
            )
            outs.append(proc.stdout)
        return outs

    before = export()
    for text in ("advance #99", "new " + "N" * 201, "note #1 " + "x" * 10_000, "move #1 nowhere"):
        run_command(one_deal, text)
    assert export() == before
    assert json.loads(before[0])[0]["name"] == "Acme Corp"


def test_name_of_exactly_200_characters_is_fine(app_server) -> None:
    name = "N" * 199 + "名"
    create_deal(app_server, f'"{name}"')
    assert deal_row(app_server, 1)["name"] == name
    # its card is still valid Block Kit (a header holds at most 150 characters)
    answer = run_command(app_server, "show #1")
    assert name in plain_texts(answer)


def test_note_of_exactly_the_limit_is_fine(app_server) -> None:
    create_deal(app_server, "Acme")
    text = "n" * 1999 + "末"
    answer = run_command(app_server, f"note #1 {text}")
    assert [n["text"] for n in note_rows(app_server, 1)] == [text]
    assert "#1" in answer["text"]


# --- odd but valid: stored as typed, shown literally ----------------------------------

ODD_NAMES = [
    "'; DROP TABLE deals; --",
    "Robert'); DELETE FROM stage_changes;--",
    "<!channel>",
    "<!here> urgent",
    "*bold* _italic_ ~strike~ `code`",
    "Tom &amp; Jerry",
    "A & B <c>",
    "🚀 Rocket 🎉 Inc",
    "华为 云计算",
    "<https://evil.example|click>",
    "<@U2> ping",
    "<#C123|general>",
    "> quoted",
    "100% \\ back\\slash",
]


def _assert_shown_literally(payload: dict, text: str) -> None:
    """`text` (user data) appears only in plain_text objects; never in mrkdwn; the
    fallback has it with & < > escaped."""
    assert any(text in t for t in plain_texts(payload)), (text, plain_texts(payload))
    escaped = slack_escape(text)
    for m in mrkdwn_texts(payload):
        assert text not in m, (text, m)
        assert escaped not in m, (text, m)
    fallback = payload["text"]
    if text in fallback or escaped in fallback:
        assert escaped in fallback
        if any(c in text for c in "<>"):
            assert text not in fallback


def test_odd_names_round_trip_exactly(app_server) -> None:
    for index, name in enumerate(ODD_NAMES, start=1):
        number, answer = create_deal(app_server, f'"{slack_escape(name)}" 5k')
        assert number == index
        row = deal_row(app_server, number)
        assert row["name"] == name
        assert row["owner_id"] == "U1", name  # a mention inside a quoted name is not an owner
        _assert_shown_literally(answer, name)
        assert "<" not in answer["text"].replace("<@", ""), name  # no mark-up in the fallback

        _assert_shown_literally(run_command(app_server, f"show #{number}"), name)
        _assert_shown_literally(click(app_server, ADVANCE, f"{number}:1"), name)
    listed = run_command(app_server, "list")
    for name in ODD_NAMES:
        _assert_shown_literally(listed, name)


def test_odd_notes_next_steps_sources_and_reasons_round_trip(app_server) -> None:
    create_deal(app_server, "Acme source:&lt;!channel&gt;")
    assert deal_row(app_server, 1)["source"] == "<!channel>"
    note = "<!channel> *read this* & <https://evil.example|click> 华为 🚀"
    answer = run_command(app_server, f"note #1 {slack_escape(note)}")
    assert note_rows(app_server, 1)[0]["text"] == note
    _assert_shown_literally(answer, note)
    step = "call <@U9> back & *fast*"
    answer = run_command(app_server, f"next #1 {slack_escape(step)}")
    assert deal_row(app_server, 1)["next_step"] == step
    _assert_shown_literally(answer, step)
    reason = "<!here> they said &lt;no&gt;"
    answer = run_command(app_server, f"lost #1 {slack_escape(reason)}")
    assert deal_row(app_server, 1)["lost_reason"] == reason
    _assert_shown_literally(answer, reason)


def test_sql_in_a_ref_is_just_text(app_server) -> None:
    create_deal(app_server, "Acme")
    before = snapshot(app_server)
    for ref in ("'%'", "%", "_", "a%", "'; DROP TABLE deals; --"):
        answer = run_command(app_server, f'show "{ref}"')
        assert ref in answer["text"] and "Acme" not in all_text(answer), ref
    assert snapshot(app_server) == before
    assert deal_count(app_server) == 1


# --- permissions ----------------------------------------------------------------------


def test_someone_else_cannot_change_a_deal(app_server) -> None:
    create_deal(app_server, '"Acme Corp" 50k', user="U1")
    before = snapshot(app_server)
    for text in (
        "advance #1",
        "move #1 proposal",
        "won #1",
        "lost #1 not mine",
        "note #1 sneaky",
        "next #1 sneaky",
        "assign #1 <@U2|me>",
        "edit #1",
    ):
        answer = run_command(app_server, text, user="U2")
        assert "U1" in answer["text"], (text, answer["text"])  # names the owner
        assert snapshot(app_server) == before, text
    # reading is fine
    assert "Acme Corp" in all_text(run_command(app_server, "show #1", user="U2"))


@pytest.mark.parametrize("boss", [MANAGER, ADMIN])
def test_manager_and_admin_can_change_any_deal(app_server, boss: str) -> None:
    create_deal(app_server, '"Acme Corp" 50k', user="U1")
    run_command(app_server, "advance #1", user=boss)
    run_command(app_server, "note #1 checked by the boss", user=boss)
    run_command(app_server, "assign #1 <@U3|carol>", user=boss)
    run_command(app_server, "won #1", user=boss)
    row = deal_row(app_server, 1)
    assert (row["stage"], row["status"], row["owner_id"]) == ("won", "won", "U3")
    assert [h["by"] for h in history_rows(app_server, 1)] == ["U1", boss, boss]
    assert note_rows(app_server, 1)[0]["author"] == boss
