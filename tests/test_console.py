"""The local console (`funnelbot shell`), driven through its input and output streams.

It runs the real Bolt app and listeners against its own local Slack Web API stand-in, so
these tests go through the same handlers as Slack's requests do.
"""

from __future__ import annotations

import datetime as dt
import io
import os
import subprocess
import sys
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path

import pytest
import sqlalchemy as sa
from conftest import REPO_ROOT

from funnelbot.config import Settings
from funnelbot.console import Console
from funnelbot.models import Deal, Stage, StageChange


def settings_for(url: str, **overrides: object) -> Settings:
    return Settings(database_url=url, scheduler_enabled=False, **overrides)  # type: ignore[arg-type]


class Session:
    """A console fed a script; `out` is everything it printed."""

    def __init__(self, console: Console, stdin: io.StringIO, out: io.StringIO) -> None:
        self.console = console
        self.stdin = stdin
        self.out = out

    def run(self, script: str) -> str:
        """Feed lines (modal answers included) and run them; return the new output."""
        start = len(self.out.getvalue())
        self.stdin.seek(0)
        self.stdin.truncate()
        self.stdin.write(script)
        self.stdin.seek(0)
        while True:
            line = self.stdin.readline()
            if not line:
                break
            self.out.write(self.console.prompt() + line)
            self.console.handle_line(line)
        return self.out.getvalue()[start:]

    def deal(self, number: int) -> Deal:
        with self.console.runtime.sessions() as session:
            deal = session.scalars(
                sa.select(Deal).where(Deal.number == number, Deal.team_id == "T_LOCAL")
            ).one()
            deal.stage.key  # noqa: B018 - load it before the session closes
            return deal


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path}/console.db"


def open_console(url: str, tmp_path: Path, *, user: str = "U1", **kw: object) -> Iterator[Session]:
    stdin, out = io.StringIO(), io.StringIO()
    console = Console(
        settings_for(url),
        stdin=stdin,
        stdout=out,
        user=user,
        width=100,
        color=False,
        history_file=None,
        files_dir=tmp_path / "files",
        **kw,  # type: ignore[arg-type]
    )
    with console:
        yield Session(console, stdin, out)


@pytest.fixture
def shell(sqlite_url: str, tmp_path: Path) -> Iterator[Session]:
    yield from open_console(sqlite_url, tmp_path)


def test_create_then_click_advance(db_url: str, tmp_path: Path) -> None:
    """On SQLite and PostgreSQL: the card, its numbered buttons, a click that changes the DB."""
    for s in open_console(db_url, tmp_path):
        out = s.run("/deal new Acme 5k\n")
        assert "Created deal #1." in out
        assert "#1 Acme" in out
        assert "$5,000" in out
        assert "[1 Advance ▸] [2 Won] [3 Lost] [4 Note] [5 Edit]" in out
        assert s.deal(1).stage.key == "lead"

        out = s.run(":click 1\n")
        assert "Deal #1 moved to Interest." in out
        assert "Lead → Interest" in out
        deal = s.deal(1)
        assert deal.stage.key == "interest"
        assert deal.amount == Decimal("5000.00")
        with s.console.runtime.sessions() as session:
            moves = session.execute(
                sa.select(StageChange.by, Stage.key)
                .join(Stage, Stage.id == StageChange.to_stage_id)
                .where(StageChange.deal_id == deal.id)
                .order_by(StageChange.id)
            ).all()
        assert moves == [("U1", "lead"), ("U1", "interest")]

        # The redrawn card has fresh buttons: clicking again advances again.
        out = s.run(":click 1\n")
        assert "Deal #1 moved to Proposal." in out
        assert s.deal(1).stage.key == "proposal"


def test_new_deal_modal_with_a_validation_error(shell: Session) -> None:
    out = shell.run(
        "/deal\n"
        "Globex\n"  # Deal name
        "abc\n"  # Amount: not an amount (the app says so after submitting)
        "\n"  # Owner: keep U1
        "2\n"  # Stage: Interest
        "Referral\n"  # Lead source
        "15/01/2027\n"  # Expected close: refused at once (YYYY-MM-DD)
        "2027-01-15\n"
        "12k\n"  # Amount again, after the error
    )
    assert "form: New deal" in out
    assert "Deal name (required)" in out
    assert "Amount (optional)" in out
    assert "e.g. 50000" in out  # the field's hint
    assert "1) Lead" in out and "2) Interest" in out
    assert "[U1]" in out  # users_select defaults to its initial user
    assert "Type a date as YYYY-MM-DD" in out
    assert "The form has errors:" in out
    assert "✗ Amount: “abc” is not an amount." in out
    # Only the wrong field is asked again, and then the deal is created.
    after_error = out.split("✗ Amount")[1]
    assert "Deal name (required)" not in after_error
    assert "Created deal #1." in after_error
    assert "#1 Globex" in after_error

    deal = shell.deal(1)
    assert deal.name == "Globex"
    assert deal.amount == Decimal("12000.00")
    assert deal.owner_id == "U1"
    assert deal.stage.key == "interest"
    assert deal.source == "Referral"
    assert deal.expected_close == dt.date(2027, 1, 15)


def test_cancelling_a_modal_creates_nothing(shell: Session) -> None:
    out = shell.run("/deal\nHalf typed\n:cancel\n")
    assert "(form closed)" in out
    with shell.console.runtime.sessions() as session:
        assert session.scalar(sa.select(sa.func.count()).select_from(Deal)) == 0


def test_another_user_may_not_advance_my_deal(shell: Session) -> None:
    shell.run("/deal new Acme 5k\n")
    out = shell.run(":as U2\n")
    assert "You are now U2." in out
    assert shell.console.prompt() == "U2> "

    out = shell.run(":click 1\n")
    assert "Only @U1 (the owner), a manager or an admin can change deal #1." in out
    out = shell.run("/deal advance 1\n")
    assert "Only @U1 (the owner), a manager or an admin can change deal #1." in out
    assert shell.deal(1).stage.key == "lead"

    # Back as the owner, the same button works.
    shell.run(":as U1\n/deal show 1\n")
    out = shell.run(":click 1\n")
    assert "moved to Interest" in out
    assert shell.deal(1).stage.key == "interest"


def test_mentions_are_sent_as_slack_sends_them(shell: Session) -> None:
    out = shell.run("/deal new Initech 20k @U2\n")
    assert "Created deal #1." in out
    assert shell.deal(1).owner_id == "U2"
    # A demo user by handle works too (Slack resolves @alice to <@UALICE|alice>).
    shell.run("/deal new Hooli 3k @alice\n")
    assert shell.deal(2).owner_id == "UALICE"
    # Typed < and & reach the app escaped, and come back literally.
    out = shell.run("/deal new A<B & Co 1k\n")
    assert "#3 A<B & Co" in out
    assert shell.deal(3).name == "A<B & Co"


def test_posts_and_dms_from_the_app_are_shown(shell: Session) -> None:
    client = shell.console.runtime.bolt.client
    client.chat_postMessage(channel="U1", text="Your deal *#1* is stalled")
    channel = client.conversations_open(users="U2")["channel"]["id"]
    client.chat_postMessage(channel=channel, text="hello U2")
    client.chat_postMessage(
        channel="C0LOCAL",
        text="weekly",
        blocks=[
            {
                "type": "actions",
                "elements": [
                    {
                        "type": "button",
                        "action_id": "nothing_handles_this",
                        "value": "x",
                        "text": {"type": "plain_text", "text": "Press"},
                    }
                ],
            }
        ],
    )
    out = shell.out.getvalue()
    assert "[DM to U1] funnelbot" in out
    assert "Your deal #1 is stalled" in out
    assert "[DM to U2] funnelbot" in out and "hello U2" in out
    assert "[#sales] funnelbot" in out and "[1 Press]" in out
    out = shell.run(":click 1\n")
    assert "Nothing in funnelbot handles that button (nothing_handles_this) yet." in out


def test_console_commands(shell: Session) -> None:
    out = shell.run(":help\n")
    assert ":click N" in out and ":as U123" in out
    out = shell.run(":click 1\n")
    assert "No message with buttons yet." in out
    out = shell.run("/nope\n")
    assert "Nothing in funnelbot answers /nope (yet)." in out
    out = shell.run("hello\n")
    assert "Type a slash command" in out
    out = shell.run(":as\n")
    assert "UALICE" in out and "Alice Chen" in out
    out = shell.run(":as alice\n")
    assert shell.console.prompt() == "Alice Chen (UALICE)> "
    out = shell.run(":home\n")
    # The Home tab, or word that nothing publishes one.
    assert "App Home" in out
    out = shell.run(":bogus\n")
    assert "Unknown console command" in out


def test_loop_reads_until_quit_or_eof(sqlite_url: str, tmp_path: Path) -> None:
    stdin = io.StringIO("/deal new Acme 5k\n:quit\n/deal new Never 1k\n")
    out = io.StringIO()
    with Console(
        settings_for(sqlite_url), stdin=stdin, stdout=out, history_file=None, width=100
    ) as console:
        assert console.loop() == 0
        with console.runtime.sessions() as session:
            names = session.scalars(sa.select(Deal.name)).all()
    text = out.getvalue()
    assert "you (UCONSOLE)> /deal new Acme 5k" in text  # piped input is echoed
    assert text.rstrip().endswith("bye")
    assert names == ["Acme"]

    stdin = io.StringIO("/deal list\n")  # no :quit: end of input ends it
    out = io.StringIO()
    with Console(settings_for(sqlite_url), stdin=stdin, stdout=out, history_file=None) as console:
        assert console.loop() == 0
    assert "#1 Acme" in out.getvalue()


def test_chinese_console(sqlite_url: str, tmp_path: Path) -> None:
    for s in open_console(sqlite_url, tmp_path, language="zh"):
        out = s.run("/deal new 上海星辰 5万\n")
        assert "#1 上海星辰" in out
        assert "[1 推进 ▸]" in out
        assert s.deal(1).amount == Decimal("50000.00")


def test_bot_py_first_run_uses_the_console_on_the_default_sqlite(tmp_path: Path) -> None:
    """A newcomer with no .env and no tokens: `python bot.py` opens the console."""
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("SLACK_", "FUNNELBOT_", "DATABASE_URL", "PORT", "LOG_LEVEL"))
    }
    env.update(
        PYTHONIOENCODING="utf-8", PYTHONUTF8="1", FUNNELBOT_SCHEDULER="off", HOME=str(tmp_path)
    )
    env["PYTHONPATH"] = str(REPO_ROOT)
    proc = subprocess.run(
        [sys.executable, str(REPO_ROOT / "bot.py")],
        input="/deal new Acme 5k\n:click 1\n",
        capture_output=True,
        text=True,
        encoding="utf-8",
        env=env,
        cwd=tmp_path,
        timeout=120,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    assert "funnelbot console" in proc.stdout
    assert "database sqlite:///funnelbot.db" in proc.stdout
    assert "#1 Acme" in proc.stdout
    assert "Deal #1 moved to Interest." in proc.stdout
    assert (tmp_path / "funnelbot.db").exists()
    assert "Traceback" not in proc.stderr


def test_home_tab_and_its_buttons(shell: Session) -> None:
    shell.run("/deal new Acme 5k\n")
    out = shell.run(":home\n")
    if "No App Home yet" in out:
        pytest.skip("no app_home_opened listener in this build")
    assert "App Home · U1" in out or "App Home ·" in out
    assert "Acme" in out
    # Republished Home tabs stay out of the chat: the card's buttons are still clickable.
    shell.run("/deal show 1\n")
    out = shell.run(":click 2\n")  # Won
    assert "won" in out.lower()
    assert shell.deal(1).status == "won"
    assert "App Home ·" not in out


def test_scheduled_job_dms_and_channel_posts_appear(tmp_path: Path, sqlite_url: str) -> None:
    """`:run stalled-nudges` runs the real job; its DMs to reps show in the console."""
    from funnelbot import demo

    now = dt.datetime(2026, 11, 20, 10, 5, tzinfo=dt.UTC)  # nudges go out from 09:00
    for s in open_console(sqlite_url, tmp_path, clock=lambda: now):
        demo.seed_demo(s.console.runtime.sessions, "T_LOCAL", now - dt.timedelta(hours=1), deals=80)
        out = s.run(":run stalled-nudges\n")
        assert "[DM to U" in out
        assert "need attention" in out
        assert "stalled-nudges: T_LOCAL: nudged" in out
        out = s.run(":run weekly-report\n")
        assert "[#sales] funnelbot" in out
        assert "[image: " in out and ".png" in out
        assert list((tmp_path / "files").glob("*.png"))
        out = s.run(":run nonsense\n")
        assert "Usage: :run JOB" in out
