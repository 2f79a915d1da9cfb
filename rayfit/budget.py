"""A hard time limit for a whole command (`time_limit`, `rayfit run --time-limit SECONDS`): from the
command's start (the process's, for the CLI and a job's driver; the call's, for `rayfit.run`) to its
exit, the report included.

Once the data is prepared the training stages share what is left, less a reserve for the end
(evaluation, the report, stopping Ray, the process's exit): each stage, when it starts, gets its share
of the time left, in proportion to its weight against the stages still to come, so a stage that
finishes early hands its time on. A stage stops at its deadline with what it has: baselines and
folds that have not finished are cancelled, a network stops after the epoch that reaches it, a
search ends with its best trial. Where a stage's share cannot pay back (a framework that would spend
its share starting), it is skipped, and the report says why.
"""
from __future__ import annotations

import os
import time
from contextlib import contextmanager
from typing import Iterator, Optional

from rayfit.errors import UserError

# The least a run needs on a small table: Ray's start, the data, the baselines' first tasks, the
# evaluation and the report (measured on a 2-core machine: about 14 s without the baselines).
MIN_LIMIT_S = 20.0
# Kept for evaluating, writing the report, stopping Ray and exiting: this many seconds, and this
# share of the limit above them.
FINAL_RESERVE_S = 6.0
FINAL_RESERVE_SHARE = 0.06
# How the training stages share the time between them (each the share of what its turn finds left).
WEIGHTS = {"models": 0.45, "search": 0.2, "cv": 0.35}

_command_start: Optional[float] = None  # the CLI's process start (wall clock), set by rayfit.cli


@contextmanager
def command_clock(with_process: bool = False) -> Iterator[None]:
    """The command's clock for what runs inside: it starts now, or (`with_process`: the CLI, a
    job's driver) when the process did, so that the interpreter's start and the imports count too.
    A clock already running (`rayfit.run` called by the CLI) is kept."""
    global _command_start
    if _command_start is not None:
        yield
        return
    _command_start = _process_start() if with_process else time.time()
    try:
        yield
    finally:
        _command_start = None


def _process_start() -> float:
    try:
        import psutil

        return psutil.Process(os.getpid()).create_time()
    except Exception:  # noqa: BLE001 - a sandbox hiding /proc: from now, then
        return time.time()


def command_start() -> float:
    """When the command started (the clock's start; now, outside one)."""
    return _command_start if _command_start is not None else time.time()


def check_limit(limit_s: Optional[float]) -> None:
    if limit_s is not None and limit_s < MIN_LIMIT_S:
        raise UserError(f"time_limit: {limit_s:g} s is too short to train anything; a run needs at least "
                        f"{MIN_LIMIT_S:g} s (starting Ray, preparing the data, the first baselines, the report)")


class Budget:
    """The deadline of a limited run, what each stage was given and took, and what was skipped."""

    def __init__(self, limit_s: float, started: float, used_before: float = 0.0):
        self.limit_s = limit_s
        self.started = started  # this command's start (a resumed run: the resume's)
        self.used_before = used_before  # what earlier commands of the same run spent
        self.deadline = started + limit_s - used_before
        self.stages: dict[str, dict] = {}
        self.skipped: dict[str, str] = {}

    @classmethod
    def of(cls, limit_s: Optional[float], started: float, used_before: float = 0.0) -> Optional["Budget"]:
        return cls(limit_s, started, used_before) if limit_s is not None else None

    def used(self) -> float:
        """Seconds of the limit spent so far, by this command and the ones before it."""
        return self.used_before + time.time() - self.started

    def left(self) -> float:
        return self.deadline - time.time()

    @property
    def reserve_s(self) -> float:
        return FINAL_RESERVE_S + FINAL_RESERVE_SHARE * self.limit_s

    def share(self, stage: str, later: tuple[str, ...] = ()) -> float:
        """Seconds `stage` may take, starting now: its weight's share of the time left before the
        reserve, against the stages still to come after it."""
        weights = WEIGHTS[stage] + sum(WEIGHTS[s] for s in later)
        seconds = max(0.0, (self.left() - self.reserve_s) * WEIGHTS[stage] / weights)
        self.stages[stage] = {"budget_s": round(seconds, 1)}
        return seconds

    def until(self, stage: str, later: tuple[str, ...] = ()) -> float:
        """The wall-clock time `stage` ends by (time.time() scale)."""
        return time.time() + self.share(stage, later)

    def took(self, stage: str, seconds: float) -> None:
        self.stages.setdefault(stage, {})["actual_s"] = round(seconds, 1)

    def skip(self, what: str, why: str) -> None:
        self.skipped[what] = why

    def entry(self) -> dict:
        """The `time_limit` entry of metrics.json (written when the evaluation ends)."""
        return {"limit_s": self.limit_s, "used_before_s": round(self.used_before, 1),
                "reserve_s": round(self.reserve_s, 1), "stages": self.stages, "skipped": self.skipped,
                "until_report_s": round(self.used(), 1)}

