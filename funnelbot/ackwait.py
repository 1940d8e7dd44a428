"""Hand a request's ack back to its HTTP thread the moment the listener gives it.

Bolt runs a listener in its thread pool while the request thread polls for the ack every
10 ms (`ThreadListenerRunner`): up to 10 ms added to each answer, and every waiting
request thread woken a hundred times a second. Here the request thread instead waits, in
the executor's `submit`, on an event that the ack (or the end of the listener) sets; by
the time Bolt looks, the ack is there and it answers at once.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from concurrent.futures import Executor, Future, ThreadPoolExecutor
from typing import Any

from slack_bolt import Ack, BoltContext

ACK_TIMEOUT = 3.0  # Bolt's own limit on waiting for an ack (Listener.ack_timeout)
LISTENER_THREADS = 5  # Bolt's default pool size

_pending = threading.local()


class SignallingAck(Ack):
    """Bolt's `ack`, which also wakes the request thread waiting for it."""

    def __init__(self, given: threading.Event) -> None:
        super().__init__()
        self._given = given

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        try:
            return super().__call__(*args, **kwargs)
        finally:
            self._given.set()


def expect_ack(context: BoltContext) -> None:
    """In the request thread, before the listener runs: its ack will wake this thread."""
    given = threading.Event()
    context["ack"] = SignallingAck(given)
    _pending.given = given


def forget_ack() -> None:
    """The request is over (answered, dropped or unmatched): nothing is waited for."""
    _pending.given = None


class AckWaitingExecutor(Executor):
    """Bolt's listener pool, whose `submit` from a request thread returns once the
    listener has acked (or finished, or `ACK_TIMEOUT` passed)."""

    def __init__(self, threads: int = LISTENER_THREADS) -> None:
        self._pool = ThreadPoolExecutor(max_workers=threads, thread_name_prefix="listener")

    def submit(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Future[Any]:
        given: threading.Event | None = getattr(_pending, "given", None)
        _pending.given = None
        if given is None:
            return self._pool.submit(fn, *args, **kwargs)

        def run() -> Any:
            try:
                return fn(*args, **kwargs)
            finally:
                given.set()

        future = self._pool.submit(run)
        given.wait(ACK_TIMEOUT)
        return future

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        self._pool.shutdown(wait=wait, cancel_futures=cancel_futures)
