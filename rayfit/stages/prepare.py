"""Stage: prepare. Load, clean and split the data and run every check that needs no Ray, so that
bad input raises UserError before a run directory is claimed or Ray is started."""
from __future__ import annotations

import time

from rayfit.cluster.storage import local_copy
from rayfit.config import Experiment
from rayfit.data import Prepared, prepare
from rayfit.data.on_cluster import ClusterPlan, peek, prepare_on_cluster, prepares_on_cluster
from rayfit.errors import UserError
from rayfit.evaluation.baselines import BASELINES, baselines_for
from rayfit import metrics
from rayfit.progress import Display
from rayfit.stages.networks import enabled_frameworks
from rayfit.stages.searches import enabled_searches
from rayfit.frameworks import FRAMEWORKS, NETWORKS, is_network_framework


def prepare_data(exp: Experiment, display: Display) -> tuple[Prepared, str, float]:
    """(the prepared splits, the primary metric, seconds taken)."""
    display.start("data", f"prepare {exp.data.source}")
    started = time.perf_counter()
    if exp.data.task == "clustering" and exp.data.prepare_on != "cluster":
        return _prepare_for_clustering(exp, display, started)
    if prepares_on_cluster(exp.data):
        return _plan_for_cluster(exp, display, started)
    with local_copy(exp.data.source) as source:  # a file in an object store is read from a copy
        prepared = prepare(exp.data.model_copy(update={"source": source}), exp.seed)
    prepared.source = exp.data.source
    metric = primary_metric(exp, prepared.task)
    check_networks(exp, prepared.kind)
    check_baselines(exp, prepared.task)
    check_something_to_train(exp)
    display.finish("data", f"{prepared.task}, {prepared.n_rows} rows -> {len(prepared.y_train)}/"
                           f"{len(prepared.y_val)}/{len(prepared.y_test)}, {prepared.n_features} features")
    return prepared, metric, time.perf_counter() - started


def _plan_for_cluster(exp: Experiment, display: Display, started: float) -> tuple[ClusterPlan, str, float]:
    """A source prepared on the cluster: only its first rows are read now, to check the experiment
    against them; the preparation itself waits for Ray (prepare_after_ray)."""
    plan = peek(exp.data)
    metric = primary_metric(exp, plan.task)
    check_networks(exp, plan.kind)
    check_baselines(exp, plan.task)
    check_something_to_train(exp)
    display.finish("data", f"{plan.task}, {plan.source_bytes / 2**20:,.0f} MiB: prepared on the cluster once Ray starts")
    return plan, metric, time.perf_counter() - started


def prepare_after_ray(state) -> None:
    """data.prepare_on: cluster: the three passes of rayfit/data/on_cluster.py, now that Ray runs."""
    if not isinstance(state.prepared, ClusterPlan):
        return
    display, exp = state.display, state.exp
    display.start("data", f"prepare {exp.data.source} on the cluster")
    started = time.perf_counter()
    prepared = prepare_on_cluster(exp.data, state.prepared, exp.seed, state.location.join("data", "train"),
                                  say=display.say)
    state.prepared = prepared
    state.stage_times["data"] = state.stage_times.get("data", 0.0) + time.perf_counter() - started
    rows = prepared.split_rows
    display.finish("data", f"{prepared.task}, {prepared.n_rows:,} rows -> {rows['train']:,}/{rows['val']:,}/"
                           f"{rows['test']:,}, {prepared.n_features} features (samples of {len(prepared.y_train):,}/"
                           f"{len(prepared.y_val):,}/{len(prepared.y_test):,} on the driver)")


def _prepare_for_clustering(exp: Experiment, display: Display, started: float):
    from rayfit.data.prepare import prepare_unlabelled

    with local_copy(exp.data.source) as source:
        data = prepare_unlabelled(exp.data.model_copy(update={"source": source}))
    data.source = exp.data.source
    labels = f", label column {data.target!r}" if data.target else ""
    display.finish("data", f"clustering, {data.n_rows} rows, {data.n_features} features{labels}")
    return data, exp.clustering.metric, time.perf_counter() - started


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
