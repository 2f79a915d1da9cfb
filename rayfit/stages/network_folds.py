"""Networks in the cross-validation folds (part of the cross-validate stage).

A network chosen on the validation split it early-stopped on, or a tuned network chosen on the
validation split its search chose among trials on, is judged on rows it has seen. When a run
cross-validates (`evaluation.cv`), each network, tuned ones with their chosen hyperparameters,
trains on every fold's fit rows as well (one Ray task per fold: a 15% slice of those rows for its
early stopping, the rest to learn from; a network's folds follow each other in a few chains, on
workers that have its framework imported) and is scored on the rows the fold holds out: the same
folds and the same held-out footing as the classic-ML models.

`evaluation.cv_networks: auto` does so when folds x the network's own measured training time fits
in `evaluation.cv_budget_s`; the report says which networks were chosen on folds and which on
validation. A network is tested as it was trained (on train, early-stopped on validation): its
folds choose, they do not replace it.
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import numpy as np

from rayfit.cluster.launch import Handle, start
from rayfit.stages.state import RunState
from rayfit.frameworks import is_network_framework

INNER_VAL = 0.15  # each fold's early-stopping slice of its fit rows


@dataclass(frozen=True)
class NetworkFold:
    """What a network's fold task is (a launch handle's tag): which network, which fold, where it checkpoints."""

    name: str
    fold: int
    plan: "FoldPlan"
    checkpoints: object  # a Location


@dataclass
class FoldPlan:
    name: str  # the model's name in the run: torch_mlp, torch_tuned
    framework: str
    network: str
    settings: object  # the NeuralConfig it trains with
    params: dict  # a tuned network's chosen hyperparameters ({} otherwise)
    seconds: float  # one training's measured time


REACH_RESAMPLES = 200


def plan_network_folds(state: RunState, deadline: Optional[float] = None,
                       among: Optional[list[str]] = None) -> tuple[list[FoldPlan], dict[str, str]]:
    """(the networks that join the folds, name -> why each other network does not). A network out
    of reach of the leader on validation (`out_of_reach`: the best of every model trained so far)
    is also put in state.out_of_reach. `deadline`: a time limit's for the folds, which their
    estimate must fit too; `among`: the models to consider (default: every trained one)."""
    exp = state.exp
    setting, budget = exp.evaluation.cv_networks, exp.evaluation.cv_budget_s
    if deadline is not None:
        budget = min(budget, max(0.0, deadline - time.time()))
    plans, left_out = [], {}
    networks = [name for name, trained in state.trained.items()
                if is_network_framework(trained.framework) and name not in state.cv and (among is None or name in among)]
    reach = exp.evaluation.cv_reach
    behind = out_of_reach(state, networks) if setting == "auto" and reach > 0 and networks else {}
    for name in networks:
        trained = state.trained[name]
        if setting is False:
            left_out[name] = "evaluation.cv_networks: false"
            continue
        if name in behind:
            left_out[name] = behind[name]
            state.out_of_reach.add(name)
            continue
        plan = _fold_plan(state, name, trained)
        if plan is None:
            left_out[name] = "its training time is not known"
            continue
        estimate = plan.seconds * state.cv_folds
        if setting == "auto" and estimate > budget:
            limit = (f"the {budget:.0f} s the time limit left the folds" if budget < exp.evaluation.cv_budget_s
                     else f"evaluation.cv_budget_s={budget:g}")
            left_out[name] = (f"{state.cv_folds} folds x {plan.seconds:.0f} s of training would take about "
                              f"{estimate:.0f} s, more than {limit}")
            continue
        plans.append(plan)
    return plans, left_out


def out_of_reach(state: RunState, networks: list[str]) -> dict[str, str]:
    """name -> why, for the networks the validation rows say are behind the leader (the best of
    every trained model on validation): ahead of it or level on fewer than evaluation.cv_reach of
    REACH_RESAMPLES bootstrap resamples of those rows."""
    from rayfit.metrics import best, oriented, score_one

    prepared, metric, reach = state.prepared, state.metric, state.exp.evaluation.cv_reach
    X_val, y_val = prepared.X_val, prepared.y_val
    outputs = {name: trained.model.outputs(X_val) for name, trained in state.trained.items()}

    def score(name, rows=slice(None)):
        return score_one(metric, prepared.task, y_val[rows], outputs[name][rows], prepared.n_classes)

    scores = {name: score(name) for name in outputs}
    leader = best(scores, metric)
    if leader is None:
        return {}
    rng = np.random.default_rng(state.exp.seed)
    resamples = [rng.integers(0, len(y_val), len(y_val)) for _ in range(REACH_RESAMPLES)]
    leading = [oriented(metric, score(leader, rows)) for rows in resamples]
    found = {}
    for name in networks:
        if name == leader:
            continue
        ahead = np.mean([oriented(metric, score(name, rows)) >= lead for rows, lead in zip(resamples, leading)])
        if ahead < reach:
            found[name] = (f"out of reach of {leader} on validation ({metric} {scores[name]:.4f} against "
                           f"{scores[leader]:.4f}; at or above it on {ahead:.0%} of {REACH_RESAMPLES} resamples of "
                           f"the validation rows, under evaluation.cv_reach={reach:g}): not chosen over it")
    return found


def _fold_plan(state: RunState, name: str, trained) -> Optional[FoldPlan]:
    framework = trained.framework
    settings = getattr(state.exp, framework)
    summary = state.searches.get(name)
    if summary is None:  # a plain network: framework_network
        return FoldPlan(name, framework, name.removeprefix(f"{framework}_"), settings, {}, trained.train_time_s)
    best = next((t for t in summary["trials"] if t["params"] == summary["best_params"]), None)
    seconds = (best or {}).get("time_total_s")
    if seconds is None or not np.isfinite(seconds):
        return None
    search = next(s for s in [state.exp.tune, *state.exp.searches] if s.enabled and s.model == framework)
    return FoldPlan(name, framework, settings.models[0], settings.model_copy(update={"epochs": search.max_t}),
                    dict(summary["best_params"]), float(seconds))


def start_network_folds(state: RunState, data, plans: list[FoldPlan], X: np.ndarray, y: np.ndarray,
                        folds) -> list[Handle]:
    """Every (network, fold) as one Ray task, its handle's tag a NetworkFold. A network's folds
    run in `fold_lanes` chains, each fold waiting for the one before it in its lane: a chain runs
    in one warm worker of the framework's pool (cluster/launch.py), where folds started all at once
    would each take a CPU and every extra worker would import the framework again."""
    import ray
    from sklearn.model_selection import train_test_split

    from rayfit.trainers.launch import TrainingData, make_loop_config
    from rayfit.trainers.target_scale import fit_target_scale

    prepared = state.prepared
    lanes = fold_lanes(len(plans), ray.cluster_resources().get("CPU", 1))
    last: dict[tuple[str, int], Handle] = {}  # (network, lane) -> its latest fold
    pending = []
    for i, (fit_rows, held_out) in enumerate(folds):
        stratify = y[fit_rows] if prepared.task == "classification" else None
        learn, stop = train_test_split(fit_rows, test_size=INNER_VAL, random_state=state.exp.seed, stratify=stratify)
        # the held-out rows go with the fold: its task scores them where the framework is imported
        fold = TrainingData(ref=ray.put({"X_train": X[learn], "y_train": y[learn], "X_val": X[stop], "y_val": y[stop],
                                         "X_held": X[held_out]}),
                            task=data.task, n_outputs=data.n_outputs, class_weights=data.class_weights, seed=data.seed,
                            train_rows=len(learn), input_shape=data.input_shape,
                            target_scale=fit_target_scale(y[learn], data.task), run_key=data.run_key)
        for plan in plans:
            worker = state.plan.networks[plan.framework] if state.plan and plan.framework in state.plan.networks else None
            cpus = worker.cpus_per_worker if worker else 1
            gpus = worker.gpus_per_worker if worker is not None and worker.use_gpu else 0
            config = make_loop_config(plan.name, plan.framework, plan.network, plan.settings, fold,
                                      threads=max(1, int(cpus)), stage=plan.name)
            if plan.params:
                config = config.with_params(plan.params)
            checkpoints = state.location.join("checkpoints", "cv", plan.name, f"fold_{i}")
            lane = (plan.name, i % lanes)
            before = last[lane].ref if lane in last else None
            last[lane] = start(_fold_task, config, checkpoints.uri, before, name=f"rayfit.cv[{plan.name}]", cpus=cpus,
                               gpus=gpus, retries=1, tag=NetworkFold(plan.name, i, plan, checkpoints),
                               pool=plan.framework)
            pending.append(last[lane])
    return pending


def fold_lanes(networks: int, cpus: float) -> int:
    """How many of a network's folds run at once: half the cluster's CPUs go to the networks'
    folds, shared among them (the classic-ML folds take the rest); at least one."""
    return max(1, int(cpus // (2 * max(1, networks))))


def _fold_task(config, checkpoint_dir: str, before) -> dict:
    """A fold's training, and its network's outputs on the rows the fold holds out (the driver
    scores them: it never loads a fold's network, nor imports its framework for it). `before`: the
    result of the fold before it in its lane (Ray starts this one only once that one is done, on
    the worker it leaves warm)."""
    import ray

    from rayfit.trainers.checkpoints import latest_checkpoint
    from rayfit.trainers.contexts import train_task
    from rayfit.trainers.launch import load_checkpoint

    result = train_task(config, checkpoint_dir, 1)
    with latest_checkpoint(checkpoint_dir).as_directory() as directory:
        model, _, _ = load_checkpoint(config.framework, Path(directory), config.name, config.task,
                                      config.settings.restore_best)
    return {**result, "outputs": model.outputs(ray.get(config.data)["X_held"])}


def score_network_fold(state: RunState, result: dict, y_held: np.ndarray):
    """(scores, outputs) of a fold's network on the rows the fold held out, from its task's result."""
    from rayfit.metrics import score_outputs

    prepared = state.prepared
    return score_outputs(prepared.task, y_held, result["outputs"], prepared.n_classes), result["outputs"]
