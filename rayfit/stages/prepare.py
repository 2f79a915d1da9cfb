"""Stage: prepare. Load, clean and split the data and run every check that needs no Ray, so that
bad input raises UserError before a run directory is claimed or Ray is started."""
from __future__ import annotations

import time

from rayfit.cluster.storage import local_copy
from rayfit.config import CLASSIFICATION_METRICS, REGRESSION_METRICS, Experiment
from rayfit.data import Prepared, prepare
from rayfit.errors import UserError
from rayfit.evaluation.baselines import BASELINES, baselines_for
from rayfit.evaluation.metrics import default_primary_metric
from rayfit.progress import Display
from rayfit.stages.networks import enabled_frameworks
from rayfit.stages.searches import enabled_searches
from rayfit.trainers.registry import FRAMEWORKS, NETWORKS, is_network_framework


def prepare_data(exp: Experiment, display: Display) -> tuple[Prepared, str, float]:
    """(the prepared splits, the primary metric, seconds taken)."""
    display.start("data", f"prepare {exp.data.source}")
    started = time.perf_counter()
    if exp.data.task == "clustering":
        return _prepare_for_clustering(exp, display, started)
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
        return default_primary_metric(task)
    valid = CLASSIFICATION_METRICS if task == "classification" else REGRESSION_METRICS
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
