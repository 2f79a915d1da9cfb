"""Stage: the time limit's plan (rayfit/budget.py), made once the data is prepared: which limited
stages this run has, and what is left for them after start-up and the reserve for the end."""
from __future__ import annotations

from rayfit.evaluation.selection import folds_for
from rayfit.stages.searches import enabled_searches
from rayfit.stages.state import RunState


def plan_time(state: RunState) -> None:
    budget = state.budget
    if budget is None:
        return
    from rayfit.stages.cross_validate import train_and_validation
    from rayfit.tuning.search import tuned_name

    exp, prepared = state.exp, state.prepared
    stages = ["models"]
    if any(tuned_name(settings) not in state.searches for _, settings in enabled_searches(exp)):
        stages.append("search")
    rows = prepared.split.rows["train"] + prepared.split.rows["val"]
    if folds_for(exp.evaluation.cv, rows, prepared.task, train_and_validation(prepared)[1]) is not None:
        stages.append("cv")
    state.budget_stages = tuple(stages)
    state.display.say(f"time limit: {budget.limit_s:g} s; {max(0.0, budget.left()):.0f} s left after start-up, "
                      f"{budget.reserve_s:.0f} s of it kept for the evaluation and the report, the rest shared by "
                      f"{', '.join(stages)}")
