"""Stage: cross-validate. With `evaluation.cv` on (auto: tables of at most 10,000 train +
validation rows), every classic-ML model, tuned ones with their chosen hyperparameters, is scored
on K stratified folds of train + validation and refitted on all of it, each fold and each refit
one Ray task (evaluation/selection.py). Evaluation then chooses on these scores, and the refitted
model is the one the test split scores.

Then the soft-voting ensemble of the best `evaluation.ensemble` of them: its score on each fold
comes from its members' out-of-fold outputs, so it competes on the same held-out footing; it
votes with the members as refitted (tested) and as fitted on train (its validation score)."""
from __future__ import annotations

from collections import defaultdict

import numpy as np

from rayfit.evaluation.baselines import BASELINES, fit_estimator
from rayfit.cluster.launch import as_finished, start
from rayfit.evaluation.fitted import SklearnModel, SoftVote
from rayfit.metrics import rank
from rayfit.evaluation.selection import (
    ensemble_folds, ensemble_members, folds_for, score_fold, split_folds, summarize,
)
from rayfit.stages.state import RunState, Trained

STAGE = "cv"
ENSEMBLE = "ensemble"


def train_and_validation(prepared) -> tuple[np.ndarray, np.ndarray]:
    return np.concatenate([prepared.X_train, prepared.X_val]), np.concatenate([prepared.y_train, prepared.y_val])


def cross_validate(state: RunState, data=None) -> None:
    """`data`: the run's TrainingData (networks in folds read its shape and class weights)."""
    import ray

    from rayfit.stages.network_folds import NetworkFold, plan_network_folds, score_network_fold, start_network_folds

    exp, prepared, display = state.exp, state.prepared, state.display
    X, y = train_and_validation(prepared)
    # `auto` goes by the splits' true size (prepared on the cluster, X and y are samples)
    rows = prepared.split.rows["train"] + prepared.split.rows["val"]
    state.cv_folds = folds_for(exp.evaluation.cv, rows, prepared.task, y)
    if state.cv_folds is None:
        return
    crossed = [name for name, trained in state.trained.items() if trained.framework == SklearnModel.kind]
    voters = [name for name in crossed if name != "dummy"]
    wants_ensemble = exp.evaluation.ensemble >= 2 and len(voters) >= 2 and ENSEMBLE not in state.trained
    # The ensemble's score needs its members' out-of-fold outputs, which live in this process only:
    # a run resumed before its ensemble was made cross-validates its models again.
    names = crossed if wants_ensemble else [name for name in crossed if name not in state.cv]
    deadline = state.deadline(STAGE)  # a time limit's share (None without one)
    networks, left_out = plan_network_folds(state, deadline) if data is not None else ([], {})
    for name, why in left_out.items():
        display.say(f"{STAGE}: {name} is compared on the validation split ({why})")
    state.cv_left_out.update(left_out)
    if not names and not networks:
        return
    folds = split_folds(y, prepared.task, state.cv_folds, exp.seed)
    cpus = exp.baselines.cpus_per_model
    cw = prepared.class_weights if prepared.task == "classification" else None
    shared = ray.put({"X": X.reshape(len(X), -1), "y": y})
    pending = []
    for name in names:
        estimator = ray.put(state.trained[name].model.estimator)
        baseline = registry_name(state, name)
        for i, (fit_rows, held_out) in enumerate(folds):
            pending.append(start(_score_fold_task, estimator, baseline, prepared.task, cw, cpus, shared, fit_rows,
                                 held_out, prepared.n_classes, name=f"rayfit.cv[{name}]", cpus=cpus, tag=(name, i)))
        pending.append(start(_refit_task, estimator, baseline, cw, cpus, shared, name=f"rayfit.refit[{name}]", cpus=cpus,
                             tag=(name, None)))
    if networks:
        pending += start_network_folds(state, data, networks, X, y, folds)
    total = len(pending)
    what = f"{len(names)} models" + (f" and {len(networks)} networks ({', '.join(p.name for p in networks)})"
                                     if networks else "")
    display.start(STAGE, f"{state.cv_folds}-fold cross-validation of {what}, then refit on train + validation",
                  total=total)
    scores, outputs, refitted = defaultdict(list), defaultdict(lambda: [None] * len(folds)), {}
    unfinished = []
    with state.timed(STAGE):
        for done, (handle, out) in enumerate(as_finished(pending, deadline, unfinished), 1):
            if isinstance(handle.tag, NetworkFold):  # a network trained on the fold's rows: scored on its held-out rows
                name, fold = handle.tag.name, handle.tag.fold
                held_out = folds[fold][1]
                out = score_network_fold(state, out, y[held_out])
            else:
                name, fold = handle.tag
            if fold is None:
                refitted[name] = out
            else:
                scores[name].append(out[0])
                outputs[name][fold] = out[1]
            display.advance(STAGE, done, total, name, echo=False)
            if len(scores[name]) == state.cv_folds and name in refitted:
                model = SklearnModel(name, prepared.task, refitted.pop(name), prepared.n_classes)
                state.finished_cv(name, summarize(scores.pop(name)), state.cv_folds, model)
            elif len(scores[name]) == state.cv_folds and name in {p.name for p in networks}:
                # chosen on its folds, tested as trained: no refit (its early stopping needs the validation split)
                state.finished_cv(name, summarize(scores.pop(name)), state.cv_folds, state.trained[name].model)
        _stopped_by_time(state, unfinished)
        if wants_ensemble:
            _soft_vote(state, y, folds, outputs)
    if state.budget is not None:
        state.budget.took(STAGE, state.stage_times[STAGE])
    if not state.cv:
        return
    best = rank({name: scores.get(state.metric, {}).get("mean") for name, scores in state.cv.items()}, state.metric)[0]
    display.finish(STAGE, f"{len(state.cv)} models, best {best}: cv {state.metric} "
                          f"{state.cv[best][state.metric]['mean']:.4f} ± {state.cv[best][state.metric]['std']:.4f}")


def _stopped_by_time(state: RunState, unfinished: list) -> None:
    """The models whose folds or refit the time limit stopped: chosen on the validation split."""
    from rayfit.stages.network_folds import NetworkFold

    names = sorted({h.tag.name if isinstance(h.tag, NetworkFold) else h.tag[0] for h in unfinished} - set(state.cv))
    if not names:
        return
    why = "its folds did not finish within the time limit's share for cross-validation"
    for name in names:
        state.cv_left_out[name] = why
    state.budget.skip(f"{STAGE}: {', '.join(names)}", why)
    state.display.say(f"{STAGE}: {', '.join(names)}: compared on the validation split ({why})")


def _soft_vote(state: RunState, y: np.ndarray, folds, outputs: dict[str, list]) -> None:
    prepared = state.prepared
    # models whose every out-of-fold output this command holds (a resumed run's earlier scores,
    # or folds a time limit cancelled, have none here)
    complete = {name: scores for name, scores in state.cv.items()
                if all(fold is not None for fold in outputs.get(name, [None]))}
    members = ensemble_members(complete, state.metric, state.exp.evaluation.ensemble)
    if len(members) < 2:
        return
    summary = summarize(ensemble_folds(prepared.task, y, folds, outputs, members, prepared.n_classes))
    on_train = SoftVote(ENSEMBLE, prepared.task, [state.trained[m].model for m in members])
    seconds = sum(state.trained[m].train_time_s for m in members)
    state.finished(ENSEMBLE, Trained(on_train, SoftVote.kind, seconds, run_info={"members": members}))
    state.finished_cv(ENSEMBLE, summary, state.cv_folds,
                      SoftVote(ENSEMBLE, prepared.task, [state.refitted[m] for m in members]))
    state.display.say(f"{STAGE}: soft-voting ensemble of {', '.join(members)}: cv {state.metric} "
                      f"{summary[state.metric]['mean']:.4f} ± {summary[state.metric]['std']:.4f}")


def registry_name(state: RunState, name: str) -> str:
    """The baseline a model is: its own name, or the model its search tuned (gradient_boosting_tuned)."""
    return name if name in BASELINES else state.searches[name]["model"]


def _score_fold_task(estimator, baseline, task, class_weight, threads, data, fit_rows, held_out, n_classes):
    return score_fold(estimator, baseline, task, class_weight, threads, data["X"], data["y"], fit_rows, held_out,
                      n_classes)


def _refit_task(estimator, baseline, class_weight, threads, data):
    from sklearn.base import clone

    return fit_estimator(baseline, clone(estimator), data["X"], data["y"], class_weight, threads)
