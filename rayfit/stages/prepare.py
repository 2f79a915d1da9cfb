"""Stage: the data. `check_data` reads the source and runs every check that needs no Ray, so that bad
input raises UserError before a run directory is claimed or Ray is started; `prepare_data`, the one
stage that prepares, splits and preprocesses it once the run is open (on the cluster when the source
is prepared there, which is why it runs after Ray starts)."""
from __future__ import annotations

import time

from rayfit.budget import check_limit
from rayfit.config import Experiment
from rayfit.data import Source, check
from rayfit.errors import UserError
from rayfit.evaluation.baselines import BASELINES, baselines_for
from rayfit import metrics
from rayfit.progress import Display
from rayfit.stages.networks import enabled_frameworks
from rayfit.stages.searches import enabled_searches
from rayfit.stages.state import RunState
from rayfit.frameworks import FRAMEWORKS, NETWORKS, is_network_framework


def check_data(exp: Experiment, display: Display) -> tuple[Source, str, float]:
    """(the checked source, the primary metric, seconds taken)."""
    display.start("data", f"read {exp.data.source}")
    started = time.perf_counter()
    check_limit(exp.time_limit)
    source = check(exp.data)
    if source.task == "clustering":
        if exp.time_limit is not None:
            raise UserError("time_limit: not for task: clustering, whose candidates run to the end; leave it out")
        metric = exp.clustering.metric
    else:
        metric = primary_metric(exp, source.task)
        source.chosen_by = metric  # what `class_weight: auto` follows
        check_networks(exp, source.kind)
        check_baselines(exp, source.task)
        check_something_to_train(exp)
    display.finish("data", source.describe())
    return source, metric, time.perf_counter() - started


def prepare_data(state: RunState) -> None:
    """Split and preprocess the checked source into state.prepared."""
    display, exp = state.display, state.exp
    where = " on the cluster" if state.source.where == "cluster" else ""
    display.start("data", f"prepare {exp.data.source}{where}")
    started = time.perf_counter()
    prepared = state.source.prepare(exp.seed, shards=state.location.join("data", "train"), say=display.say)
    prepared.source = exp.data.source
    state.prepared = prepared
    state.stage_times["data"] = state.stage_times.get("data", 0.0) + time.perf_counter() - started
    display.finish("data", prepared.summary())
    if prepared.task != "clustering":
        _resolve_auto(state, prepared.split.rows["train"])


def _resolve_auto(state: RunState, train_rows: int) -> None:
    """The networks' `auto` batch size and epochs, now that the training rows are known: the run
    goes on with a revised Experiment (config.yaml keeps `auto`, which a resume resolves again)."""
    from rayfit.config import resolved_for_rows

    state.exp, assignments = resolved_for_rows(state.exp, train_rows)
    if assignments:
        state.display.say(f"networks: {', '.join(f'{key} auto -> {value}' for key, value in assignments)} "
                          f"({train_rows:,} training rows)")


def primary_metric(exp: Experiment, task: str) -> str:
    metric = exp.report.primary_metric
    if metric == "auto":
        return metrics.default_metric(task)
    valid = metrics.names(task)
    if metric not in valid:
        raise UserError(f"report.primary_metric: {metric!r} is not a {task} metric; choose from auto, {', '.join(valid)}")
    return metric


def check_networks(exp: Experiment, kind: str) -> None:
    """Each enabled network must take this kind of input (a CNN needs images, an RNN sequences)."""
    for framework, settings in enabled_frameworks(exp):
        for model in settings.models:
            accepted = NETWORKS[framework][model]
            if kind not in accepted:
                raise UserError(f"{framework}.model: {model!r} takes {' or '.join(accepted)} input, "
                                f"but {exp.data.source} is {kind} data")
    for key, search in enabled_searches(exp):
        if is_network_framework(search.model):
            network = getattr(exp, search.model).models[0]
            if kind not in NETWORKS[search.model][network]:
                raise UserError(f"{key}: searches {search.model}.model {network!r}, which takes "
                                f"{' or '.join(NETWORKS[search.model][network])} input, not {kind}")


def check_baselines(exp: Experiment, task: str) -> None:
    """Every baseline named, trained or searched, must serve the task (lasso does no classification)."""
    if exp.baselines.enabled:
        baselines_for(exp.baselines.models, task)
    for key, search in enabled_searches(exp):
        if not is_network_framework(search.model) and not BASELINES[search.model].serves(task):
            raise UserError(f"{key}.model: {search.model} does {' and '.join(BASELINES[search.model].tasks)} only, "
                            f"and this is a {task} task")


def check_something_to_train(exp: Experiment) -> None:
    if not (exp.baselines.enabled or enabled_frameworks(exp) or enabled_searches(exp)):
        raise UserError(f"nothing to train: baselines, {', '.join(FRAMEWORKS)} and tune are all disabled")
