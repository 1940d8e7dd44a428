"""A slash command's answer rides on its ack when ready in time, else follows through the
response_url; the ack itself is never late (SPEC §8: Slack sees an ack within 3 s)."""

from __future__ import annotations

import threading
from typing import Any

from helpers import deal_count, send_command, wait_response

from funnelbot.listeners import context
from funnelbot.listeners.context import CommandAck


def test_a_quick_answer_is_the_ack_itself(app_server) -> None:
    reply, _, _ = send_command(app_server, "new Acme 5k")
    body = reply.json()
    assert body["response_type"] == "ephemeral"
    assert "Acme" in body["text"] and body["blocks"]
    assert deal_count(app_server) == 1


def test_a_slow_answer_is_acked_empty_then_follows_through_the_response_url(
    app_server, monkeypatch
) -> None:
    # Slack rate-limits users.info (Retry-After: 1 s) for a user the bot has not met yet:
    # the command needs longer than its ack budget.
    monkeypatch.setattr(context, "ACK_BUDGET", 0.2)
    app_server.fake.fail_next("users.info", status=429, retry_after=1)
    reply, url, _ = send_command(app_server, "new Slowpoke 5k", user="USLOW")
    assert reply.status == 200 and reply.body == ""
    answer = wait_response(app_server, url)
    assert "_via" not in answer and "Slowpoke" in answer["text"]
    assert answer["response_type"] == "ephemeral"
    assert deal_count(app_server) == 1


class _Recorder:
    def __init__(self) -> None:
        self.calls: list[tuple[tuple[Any, ...], dict[str, Any]]] = []
        self.called = threading.Event()

    def __call__(self, *args: Any, **kwargs: Any) -> None:
        self.calls.append((args, kwargs))
        self.called.set()


def test_the_watchdog_acks_an_unanswered_command_empty_and_only_once() -> None:
    answered, forgotten = _Recorder(), _Recorder()
    first = CommandAck(answered, budget=0.05)
    assert first.answer({"text": "done", "blocks": []})
    second = CommandAck(forgotten, budget=0.1)  # never answered: the watchdog acks it
    assert forgotten.called.wait(5)
    assert forgotten.calls == [((), {})]
    assert not second.answer({"text": "too late", "blocks": []})  # goes the response_url way
    # Deadlines are served in order, so `first` was past its deadline before `second`:
    # the watchdog must not have acked it a second time.
    assert answered.calls == [((), {"text": "done", "blocks": [], "response_type": "ephemeral"})]


def test_leaving_the_block_acks_empty_when_nothing_was_answered() -> None:
    opened_modal = _Recorder()
    with CommandAck(opened_modal, budget=60):
        pass
    assert opened_modal.calls == [((), {})]
