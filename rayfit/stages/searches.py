"""Stage: the Ray Tune searches, `tune` first, then `searches` in order. Each tuned model joins the
evaluation; each search's summary goes to the report and metrics.json."""
from __future__ import annotations

import time

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

    network = is_network_framework(settings.model)
    # A baseline's search still takes a network section for its trials' shared settings: the first
    # framework's.
    base = getattr(exp, settings.model if network else next(iter(FRAMEWORKS)))
    search = tune_search(settings, base, data, state.location.join("tune"), on_event, state.prepared.n_classes)
    framework = settings.model if network else SklearnModel.kind
    nodes = state.nodes_of(name)
    run_info = {**search.runtime, "launch_reason": f"tune trials: {search.trial_mode} ({search.trial_mode_reason})"}
    state.finished(name, Trained(search.model, framework, search.wall_time_s, search.history,
                                 "", {**(run_info if search.runtime else {}), "nodes": nodes}))
    summary = {**search_summary(settings, search), "nodes": nodes}
    state.record_search(name, summary)
    display.finish(name, f"{len(search.trials)} trials, {search.epochs_trained}/{search.epochs_budget} epochs, "
                         f"best val_loss {search.trials[0]['val_loss']:.4f}")


def search_summary(settings, search) -> dict:
    """What the run record keeps of a search (results.py's `search_entry` reads metrics.json's from it)."""
    return {"model": settings.model, "searcher": settings.searcher, "scheduler": settings.scheduler,
            "best_params": search.best_params, "trials": search.trials,
            "epochs_trained": search.epochs_trained, "epochs_budget": search.epochs_budget,
            "wall_time_s": search.wall_time_s, "trial_mode": search.trial_mode,
            "trial_mode_reason": search.trial_mode_reason, "plan": search.plan,
            "trial_mode_figures": search.trial_mode_figures}
