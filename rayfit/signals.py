"""Ctrl-C and SIGTERM while rayfit runs: an `Interrupted` that leaves the run resumable, whatever
handlers Ray's libraries try to install meanwhile (the CLI's commands and `rayfit.run`/`resume`)."""
from __future__ import annotations

import os
import signal
import threading
from contextlib import contextmanager

from rayfit.errors import Interrupted

EXIT_INTERRUPTED = 130
STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)
_guarding = False  # one guard at a time: the CLI's, which the API it calls runs under


@contextmanager
def stop_on_signals(exit_on_second: bool = True):
    """The first SIGINT or SIGTERM raises Interrupted in the main thread, wherever it is (Ray
    start-up, training, the report): the `finally` blocks stop the Ray this process started and the
    run stays resumable. A second signal exits at once with `exit_on_second` (the CLI), or raises
    Interrupted again (a notebook's kernel or a script that called `rayfit.run` outlives it).
    Yields the signals received. On the way out, the handlers from before are back.

    Ray's libraries install their own handlers for these two signals and never restore them:
    `ray.init` makes SIGTERM `sys.exit` (ray/_private/worker.py), Ray Train V2's `fit` makes SIGINT
    abort the training and return (ray/train/v2/api/data_parallel_trainer.py), Tune makes SIGINT
    end the search and return (ray/tune/tune.py). Each would turn a stop into a half-finished stage
    and a run that goes on to the next one (and, in a notebook, leave the kernel's interrupt button
    ending searches instead of the cell), so while rayfit runs, their requests to replace these two
    handlers are ignored. Other signals are untouched.
    """
    global _guarding
    received: list[str] = []
    if _guarding or threading.current_thread() is not threading.main_thread():
        yield received
        return

    def stop(signum, frame):
        if _holding[0] and not received:  # inside `signals_held`: on leaving it
            _held.append(signum)
            return
        if received and exit_on_second:
            os._exit(EXIT_INTERRUPTED)  # the second signal: no more clean-up
        received.append(signal.Signals(signum).name)
        if signum == signal.SIGTERM:
            # Once Ray is up, a SIGTERM first meets the crash handler of Ray's C++ core (absl's),
            # which arms a 3 s alarm that aborts the process: to it, SIGTERM is a crash. Stopping
            # Ray cleanly can take longer than that, so disarm it.
            signal.alarm(0)
        raise Interrupted()

    install = signal.signal
    previous = {signum: signal.getsignal(signum) for signum in STOP_SIGNALS}

    def keep_ours(signum, handler):
        return stop if signum in STOP_SIGNALS else install(signum, handler)

    for signum in STOP_SIGNALS:
        install(signum, stop)
    signal.signal = keep_ours
    _guarding = True
    try:
        yield received
    finally:
        _guarding = False
        signal.signal = install
        for signum, handler in previous.items():
            install(signum, handler)


_stop_reason: list[str] = []  # why this process stopped itself (a lost cluster)


def stop_self(reason: str) -> None:
    """Stop this process's command as Ctrl-C would (the run stays resumable), for `reason`: what the
    CLI's last line says instead of "interrupted"."""
    _stop_reason[:] = [reason]
    os.kill(os.getpid(), signal.SIGINT)


def stop_reason() -> str | None:
    """Why this process stopped itself (`stop_self`; None after a user's own signal): the cluster
    its Ray joined is gone, and anything that would tell that Ray goodbye waits for it in vain."""
    return _stop_reason[0] if _stop_reason else None


_holding = [0]  # how deep in `signals_held` the main thread is
_held: list[int] = []  # the signals that arrived meanwhile


@contextmanager
def signals_held():
    """A signal to stop that arrives inside this block (a few steps that must not be cut in the
    middle, such as giving the terminal back its file descriptors) acts on leaving it."""
    _holding[0] += 1
    try:
        yield
    finally:
        _holding[0] -= 1
    if not _holding[0] and _held:
        signum = _held[0]
        _held.clear()
        signal.raise_signal(signum)

