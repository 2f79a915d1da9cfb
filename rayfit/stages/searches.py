"""Stage: the Ray Tune searches, `tune` first, then `searches` in order. Each tuned model joins the
evaluation; each search's summary goes to the report and metrics.json.

Without a time limit the searches run beside the models stage (`searches_beside`), in a thread of
the driver, where every trial trains inside its own one-CPU actor and the models stage runs tasks
only: nothing in either waits for a gang of CPUs the other holds, and the trials' actors start
(a process each, importing Ray Tune and the framework: 3-5 s of a core) while the models' tasks
still run, instead of after them. Under a time limit each stage has its own share, in turn.
"""
from __future__ import annotations

import threading
import time
from contextlib import contextmanager
from typing import Optional

from rayfit.config import Experiment
from rayfit.evaluation.fitted import SklearnModel
from rayfit.stages.state import RunState, Trained
from rayfit.frameworks import FRAMEWORKS, is_network_framework


def enabled_searches(exp: Experiment) -> list[tuple[str, object]]:
    """(config key, TuneSettings) of every enabled search, `tune` first."""
    keyed = [("tune", exp.tune)] + [(f"searches.{i}", s) for i, s in enumerate(exp.searches)]
    return [(key, settings) for key, settings in keyed if settings.enabled]


MIN_SEARCH_S = 12.0  # under a time limit, a search given less than this is skipped: too few trials to pay


def run_searches(state: RunState, data) -> None:
    """Every enabled search not finished yet (`rayfit resume` skips those). Under a time limit they
    share the search stage's part of it, each ending (gracefully, with its best trial) at its share."""
    from rayfit.tuning.search import NoTrialFinished, tuned_name

    pending = [settings for _, settings in enabled_searches(state.exp) if tuned_name(settings) not in state.searches]
    if not pending:
        return
    started, deadline = time.perf_counter(), state.deadline("search")
    for i, settings in enumerate(pending):
        name = tuned_name(settings)
        if deadline is not None:
            share = (deadline - time.time()) / (len(pending) - i)
            if share < MIN_SEARCH_S:
                why = f"the time limit left it {max(share, 0):.0f} s, less than the {MIN_SEARCH_S:g} s a search needs"
                state.budget.skip(name, why)
                state.display.say(f"{name}: skipped: {why}")
                continue
            settings = settings.model_copy(update={"time_budget_s": min(settings.time_budget_s or share, share)})
        with state.timed(name):
            try:
                run_search(state, settings, data)
            except NoTrialFinished:
                if deadline is None:
                    raise
                why = f"no trial finished an epoch in the {settings.time_budget_s:.0f} s the time limit left it"
                state.budget.skip(name, why)
                state.display.finish(name, f"skipped: {why}")
    if state.budget is not None:
        state.budget.took("search", time.perf_counter() - started)


def run_search(state: RunState, settings, data) -> None:
    """One Tune search; its tuned model joins the evaluation, its summary the report."""
    record_search(state, settings, tune_one(state, settings, data))


def tune_one(state: RunState, settings, data, abandon: Optional[threading.Event] = None):
    """One Tune search, to its SearchResult; the run's state is left to `record_search`. With
    `abandon` (an Event that ends it) it runs beside the models stage."""
    from rayfit.tuning.search import run_search as tune_search, tuned_name

    exp, display = state.exp, state.display
    name = tuned_name(settings)
    display.start(name, f"tune {settings.model} ({settings.searcher}, {settings.scheduler})", total=settings.num_samples)

    def on_event(event):
        info = f"trial {event['trial']}" + (f" epoch {event['epoch']}" if event.get("epoch") else "")
        if event.get("best") is not None:
            info += f", best {event['metric']} {event['best']:.4f}"
        if event.get("stopped_early"):
            info += f", {event['stopped_early']} stopped early"
        display.advance(name, event["done"], settings.num_samples, info, echo=event.get("finished", False))

    return tune_search(settings, search_base(exp, settings), data, state.location.join("tune"), on_event,
                       state.prepared.n_classes, abandon, beside=abandon is not None, say=display.say)


def search_base(exp: Experiment, settings):
    """The network section whose settings the search's trials share: its framework's; a baseline's
    search takes the first framework's."""
    return getattr(exp, settings.model if is_network_framework(settings.model) else next(iter(FRAMEWORKS)))


def record_search(state: RunState, settings, search) -> None:
    """A finished search's tuned model into the evaluation, its summary into the run's record."""
    from rayfit.tuning.search import tuned_name

    name = tuned_name(settings)
    framework = settings.model if is_network_framework(settings.model) else SklearnModel.kind
    nodes = state.nodes_of(name)
    run_info = {**search.runtime, "launch_reason": f"tune trials: {search.trial_mode} ({search.trial_mode_reason})"}
    state.finished(name, Trained(search.model, framework, search.wall_time_s, search.history,
                                 "", {**(run_info if search.runtime else {}), "nodes": nodes}))
    summary = {**search_summary(settings, search), "nodes": nodes}
    state.record_search(name, summary)
    state.display.finish(name, f"{len(search.trials)} trials, {search.epochs_trained}/{search.epochs_budget} "
                               f"epochs, best val_loss {search.trials[0]['val_loss']:.4f}")


def search_summary(settings, search) -> dict:
    """What the run record keeps of a search (results.py's `search_entry` reads metrics.json's from it)."""
    return {"model": settings.model, "searcher": settings.searcher, "scheduler": settings.scheduler,
            "best_params": search.best_params, "trials": search.trials,
            "epochs_trained": search.epochs_trained, "epochs_budget": search.epochs_budget,
            "wall_time_s": search.wall_time_s, "trial_mode": search.trial_mode,
            "trial_mode_reason": search.trial_mode_reason, "plan": search.plan,
            "trial_mode_figures": search.trial_mode_figures}


class _Beside:
    """The pending searches in a thread of the driver, started by the models stage once its tasks are
    placed (`start`); `finish` waits for them and records them in the order they ran."""

    JOIN_S = 0.5  # the driver's thread waits in slices: a signal reaches it while it waits

    def __init__(self, state: RunState, data):
        from rayfit.tuning.search import tuned_name

        self.state, self.data = state, data
        self.pending = [settings for _, settings in enabled_searches(state.exp)
                        if tuned_name(settings) not in state.searches]
        self.abandoned = threading.Event()
        self.results: list = []  # (settings, SearchResult), in order
        self.error: Optional[BaseException] = None
        self.thread: Optional[threading.Thread] = None

    @property
    def running(self) -> bool:
        return self.thread is not None

    def start(self) -> None:
        from rayfit.tuning.search import trials_surely_inline

        state, data, pending = self.state, self.data, self.pending
        if (not pending or state.budget is not None or self.thread is not None
                or not all(trials_surely_inline(settings, search_base(state.exp, settings), data) for settings in pending)):
            return  # they run after the models (run_searches)
        self.thread = threading.Thread(target=self._run, args=(pending,), name="rayfit-searches", daemon=True)
        self.thread.start()

    def _run(self, pending: list) -> None:
        from rayfit.tuning.search import tuned_name

        try:
            for settings in pending:
                with self.state.timed(tuned_name(settings)):
                    self.results.append((settings, tune_one(self.state, settings, self.data, self.abandoned)))
        except BaseException as exc:  # raised in the driver's thread by finish()
            self.error = exc

    def _join(self, timeout: Optional[float] = None) -> None:
        deadline = None if timeout is None else time.monotonic() + timeout
        while self.thread is not None and self.thread.is_alive():
            if deadline is not None and time.monotonic() >= deadline:
                return
            self.thread.join(self.JOIN_S)

    def finish(self) -> None:
        try:
            self._join()
        except BaseException:  # a signal while the driver's thread waits for them
            self.abandon()
            raise
        for settings, search in self.results:
            record_search(self.state, settings, search)
        if self.error is not None:
            raise self.error

    def abandon(self, timeout_s: float = 30.0) -> None:
        """The driver's thread failed or was stopped: end the searches where they stand (their trials
        resume with the run) and wait for their thread, so Ray is not stopped under it."""
        self.abandoned.set()
        self._join(timeout_s)


@contextmanager
def searches_beside(state: RunState, data):
    """Around the models stage, which calls `start()` on what this yields once nothing it still has
    to launch needs a gang of CPUs (a Ray Train worker group): the searches then run beside it. On
    the way out their results join the run; an error in the models stage abandons them."""
    beside = _Beside(state, data)
    try:
        yield beside
    except BaseException:
        beside.abandon()
        raise
    beside.finish()
