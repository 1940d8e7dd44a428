"""The request thread gets its ack the moment the listener gives it (funnelbot/ackwait.py):
`submit` from a request thread that expects an ack returns when the listener acks, not
before and not only when it ends; other submissions never wait."""

from __future__ import annotations

import threading
from collections.abc import Iterator

import pytest
from slack_bolt import BoltContext

from funnelbot import ackwait
from funnelbot.ackwait import AckWaitingExecutor, expect_ack, forget_ack


@pytest.fixture
def executor() -> Iterator[AckWaitingExecutor]:
    pool = AckWaitingExecutor(threads=2)
    yield pool
    pool.shutdown(wait=True)


def _submit_in_background(executor, fn):  # type: ignore[no-untyped-def]
    """Submit from a fresh 'request thread' that expects an ack; return (context, returned)."""
    context = BoltContext()
    returned = threading.Event()

    def request_thread() -> None:
        expect_ack(context)
        executor.submit(fn, context)
        returned.set()

    threading.Thread(target=request_thread, daemon=True).start()
    return context, returned


def test_submit_waits_until_the_listener_acks(executor) -> None:
    go, finish = threading.Event(), threading.Event()

    def listener(context: BoltContext) -> None:
        go.wait(10)
        context.ack(text="done")
        finish.wait(10)

    context, returned = _submit_in_background(executor, listener)
    assert not returned.wait(0.3)  # no ack yet: the request thread is still waiting
    go.set()
    assert returned.wait(5)
    # It returned on the ack, while the listener was still at work.
    assert context.ack.response is not None and context.ack.response.body == "done"
    assert not finish.is_set()
    finish.set()


def test_a_listener_that_ends_without_acking_releases_the_request_thread(
    executor, monkeypatch
) -> None:
    monkeypatch.setattr(ackwait, "ACK_TIMEOUT", 60)  # only the listener's end can release it

    def listener(context: BoltContext) -> None:
        raise RuntimeError("boom")

    context, returned = _submit_in_background(executor, listener)
    assert returned.wait(5)
    assert context.ack.response is None


def test_without_an_expected_ack_submit_does_not_wait(executor) -> None:
    release = threading.Event()
    future = executor.submit(release.wait, 10)
    assert not future.done()  # submit came back while the work goes on
    release.set()
    assert future.result(5) is True


def test_a_request_that_ran_no_listener_leaves_nothing_to_wait_for(executor, monkeypatch) -> None:
    monkeypatch.setattr(ackwait, "ACK_TIMEOUT", 60)
    release, returned = threading.Event(), threading.Event()

    def request_thread() -> None:
        expect_ack(BoltContext())
        forget_ack()  # that request ended (a duplicate, or no listener matched)
        executor.submit(release.wait, 10)  # later work from the same thread
        returned.set()

    threading.Thread(target=request_thread, daemon=True).start()
    assert returned.wait(5)
    release.set()
