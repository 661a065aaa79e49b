"""One overall deadline per CLI command for everything it asks of the RPC endpoint, with a progress line.

A :class:`Deadline` is created by the CLI for one command (``rpc_timeout`` in the config, ``--timeout`` or
``$SHADOWMESH_TIMEOUT``). Every HTTP request to the chain runs inside ``deadline.watch(url, method)``
(``Chain`` passes it to its web3 provider, ``directory.reader.JsonRpc`` takes it as ``watch``), so the
deadline knows what is in flight and since when. While armed, a 1-second ``SIGALRM`` timer:

* prints ``waiting for <url> (N s)`` on stderr every PROGRESS_EVERY seconds an answer is outstanding;
* when the deadline has passed while a request is in flight, raises :class:`DeadlineExceeded` out of the
  blocking socket call; its message says what happened (connected but no answer, or still connecting) and
  how long the command waited in total.

Time spent at a prompt (``paused()``) does not count. Retries and backoff inside the command do count:
the user sees one number, the real one.

SIGALRM only works in the main thread and only one Deadline may be armed at a time: this is for the
CLI process, never for the daemons (they have their own timeouts). Imports: errors only.
"""

from __future__ import annotations

import contextlib
import signal
import sys
import time
from collections.abc import Callable, Iterator
from typing import Any, TextIO

from shadowmesh_client.errors import ChainError

PROGRESS_EVERY = 5.0  # seconds between two "waiting for ..." lines
TICK = 1.0            # seconds between two SIGALRM checks
DEFAULT_TIMEOUT = 60.0  # seconds, when neither the config nor --timeout says


class DeadlineExceeded(BaseException):
    """The command's deadline passed while it waited on the RPC endpoint. A BaseException so that web3's
    and requests' ``except Exception`` clauses let it through; the CLI prints it as one ``error:`` line."""


class Deadline:
    """The overall deadline of one command (see module docstring). ``seconds`` > 0."""

    def __init__(self, seconds: float, *, out: TextIO | None = None, clock: Callable[[], float] = time.monotonic,
                 hint: str = "raise it with --timeout SECONDS or `rpc_timeout:` in the config") -> None:
        self.seconds = seconds
        self._out = out
        self._clock = clock
        self._hint = hint
        self._started: float | None = None
        self._paused_total = 0.0
        self._paused_since: float | None = None
        self._flight: tuple[str, str, float] | None = None  # (url, method, started)
        self._last_progress = 0.0
        self._previous: Any = None

    # ---- arming
    def __enter__(self) -> Deadline:
        self._started = self._clock()
        if hasattr(signal, "setitimer"):
            self._previous = signal.signal(signal.SIGALRM, self._on_alarm)
            signal.setitimer(signal.ITIMER_REAL, TICK, TICK)
        return self

    def __exit__(self, *exc: object) -> None:
        if hasattr(signal, "setitimer"):
            signal.setitimer(signal.ITIMER_REAL, 0, 0)
            signal.signal(signal.SIGALRM, self._previous or signal.SIG_DFL)

    # ---- accounting
    def elapsed(self) -> float:
        """Seconds counted against the deadline so far (prompts excluded)."""
        if self._started is None:
            return 0.0
        now = self._clock()
        paused = self._paused_total + (now - self._paused_since if self._paused_since is not None else 0.0)
        return now - self._started - paused

    def remaining(self) -> float:
        return max(0.0, self.seconds - self.elapsed())

    @contextlib.contextmanager
    def paused(self) -> Iterator[None]:
        """Stop the clock while the user types (a passphrase prompt)."""
        self._paused_since = self._clock()
        try:
            yield
        finally:
            self._paused_total += self._clock() - self._paused_since
            self._paused_since = None

    @contextlib.contextmanager
    def watch(self, url: str, method: str) -> Iterator[None]:
        """Wrap one HTTP request to ``url`` (JSON-RPC ``method``)."""
        if self._started is not None and self.elapsed() >= self.seconds:
            raise ChainError(f"gave up after {self.elapsed():.0f} s waiting for {url} "
                             f"(the deadline is {self.seconds:g} s: {self._hint})")
        self._flight = (url, method, self._clock())
        self._last_progress = 0.0
        try:
            yield
        finally:
            self._flight = None

    # ---- the timer
    def _on_alarm(self, signum: int, frame: object) -> None:
        if self._flight is None or self._paused_since is not None:
            return
        url, method, since = self._flight
        waited = self._clock() - since
        total = self.elapsed()
        if total >= self.seconds:
            self._flight = None
            raise DeadlineExceeded(
                f"no answer from {url} to {method} in {waited:.0f} s; gave up after {total:.0f} s in total "
                f"(the deadline is {self.seconds:g} s: {self._hint}); is rpc_url a working JSON-RPC endpoint?")
        if waited - self._last_progress >= PROGRESS_EVERY - TICK / 2:
            self._last_progress = waited
            print(f"waiting for {url} ({waited:.0f} s)", file=self._out or sys.stderr, flush=True)
