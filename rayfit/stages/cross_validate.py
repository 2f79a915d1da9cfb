"""Stage: cross-validate. With `evaluation.cv` on (auto: tables of at most 10,000 train +
validation rows), every classic-ML model, tuned ones with their chosen hyperparameters, is scored
on K stratified folds of train + validation and refitted on all of it, each fold and each refit
one Ray task (evaluation/selection.py). Evaluation then chooses on these scores, and the refitted
model is the one the test split scores.

Then the weighted ensemble, by greedy ensemble selection over every cross-validated model's
out-of-fold outputs (at most `evaluation.ensemble` members): its score on each fold comes from
its members' out-of-fold outputs, so it competes on the same held-out footing; it votes with the
members as refitted (tested) and as fitted on train (its validation score)."""
from __future__ import annotations

import time
from collections import defaultdict

import numpy as np

from rayfit.evaluation.baselines import BASELINES, fit_estimator
from rayfit.cluster.launch import as_finished, start
from rayfit.evaluation.fitted import SklearnModel, SoftVote
from rayfit.metrics import rank
from rayfit.evaluation.selection import (
    THRESHOLD_METRICS, ensemble_folds, folds_for, out_of_fold, score_fold, select_ensemble, split_folds, summarize,
    tune_threshold,
)
from rayfit.stages.state import RunState, Trained

STAGE = "cv"
ENSEMBLE = "ensemble"
BAGGED = "bagged"  # evaluation.refit: the fold models averaged are the model


def train_and_validation(prepared) -> tuple[np.ndarray, np.ndarray]:
    return np.concatenate([prepared.X_train, prepared.X_val]), np.concatenate([prepared.y_train, prepared.y_val])


class CrossValidation:
    """The stage's folds in flight. `start()` launches those of every model trained so far that has
    none yet, and may be called again as more models arrive (the searches' tuned models); `finish()`
    collects them, then makes the ensemble. Without a time limit the pipeline starts the models
    stage's folds as soon as that stage ends, beside the searches, and adds the tuned models' after
    them; a network joins the folds when it is within reach of the leader among the models trained
    when its folds are planned (stages/network_folds.py)."""

    def __init__(self, state: RunState, data=None):
        """`data`: the run's TrainingData (networks in folds read its shape and class weights)."""
        import ray

        self.state, self.data = state, data
        exp, prepared = state.exp, state.prepared
        self.X, self.y = train_and_validation(prepared)
        # `auto` goes by the splits' true size (prepared on the cluster, X and y are samples)
        rows = prepared.split.rows["train"] + prepared.split.rows["val"]
        state.cv_folds = folds_for(exp.evaluation.cv, rows, prepared.task, self.y)
        self.deadline = state.deadline(STAGE)  # a time limit's share (None without one)
        self.pending, self.considered, self.networks = [], set(), []
        self.wants_ensemble = exp.evaluation.ensemble >= 2 and ENSEMBLE not in state.trained
        self.started_at = None
        if state.cv_folds is None:
            return
        self.folds = split_folds(self.y, prepared.task, state.cv_folds, exp.seed)
        self.shared = ray.put({"X": self.X.reshape(len(self.X), -1), "y": self.y})

    def start(self) -> None:
        """Launch the folds (and refits) of the models trained since the last call."""
        import ray

        from rayfit.stages.network_folds import plan_network_folds, start_network_folds

        state = self.state
        if state.cv_folds is None:
            return
        exp, prepared, display = state.exp, state.prepared, state.display
        new = [name for name in state.trained if name not in self.considered]
        self.considered.update(new)
        crossed = [name for name in new if state.trained[name].framework == SklearnModel.kind]
        # The ensemble's score needs its members' out-of-fold outputs, which live in this process only:
        # a run resumed before its ensemble was made cross-validates its models again.
        names = crossed if self.wants_ensemble else [name for name in crossed if name not in state.cv]
        networks, left_out = plan_network_folds(state, self.deadline, new) if self.data is not None else ([], {})
        for name, why in left_out.items():
            display.say(f"{STAGE}: {name} is compared on the validation split ({why})")
        state.cv_left_out.update(left_out)
        if not names and not networks:
            return
        cpus = exp.baselines.cpus_per_model
        cw = prepared.class_weights if prepared.task == "classification" else None
        bagged = exp.evaluation.refit == BAGGED
        pending = []
        for name in names:
            estimator = ray.put(state.trained[name].model.estimator)
            baseline = registry_name(state, name)
            for i, (fit_rows, held_out) in enumerate(self.folds):
                pending.append(start(_score_fold_task, estimator, baseline, prepared.task, cw, cpus, self.shared,
                                     fit_rows, held_out, prepared.n_classes, bagged, name=f"rayfit.cv[{name}]",
                                     cpus=cpus, tag=(name, i)))
            if not bagged:  # bagged: the fold models are the model, nothing to refit
                pending.append(start(_refit_task, estimator, baseline, cw, cpus, self.shared,
                                     name=f"rayfit.refit[{name}]", cpus=cpus, tag=(name, None)))
        if networks:
            pending += start_network_folds(state, self.data, networks, self.X, self.y, self.folds)
        self.networks += networks
        what = " and ".join(part for part in (f"{len(names)} models" if names else "",
                                              f"{len(networks)} networks ({', '.join(p.name for p in networks)})"
                                              if networks else "") if part)
        if self.started_at is None:
            self.started_at = time.perf_counter()
            then = "the fold models bagged" if bagged else "then refit on train + validation"
            display.start(STAGE, f"{state.cv_folds}-fold cross-validation of {what}, {then}", total=len(pending))
        else:
            display.say(f"{STAGE}: and of {what}")
        self.pending += pending

    def finish(self) -> None:
        """Every fold collected (each model chosen on its folds as they complete), then the ensemble."""
        from rayfit.stages.network_folds import NetworkFold, score_network_fold

        state = self.state
        if state.cv_folds is None or self.started_at is None:
            return
        folds, y, display, prepared = self.folds, self.y, state.display, state.prepared
        folded_networks = {plan.name for plan in self.networks}
        scores, outputs, refitted = defaultdict(list), defaultdict(lambda: [None] * len(folds)), {}
        members = defaultdict(lambda: [None] * len(folds))  # bagged: each fold's fitted model
        unfinished, total = [], len(self.pending)
        try:
            for done, (handle, out) in enumerate(as_finished(self.pending, self.deadline, unfinished), 1):
                if isinstance(handle.tag, NetworkFold):  # trained on the fold's rows: scored on its held-out rows
                    name, fold = handle.tag.name, handle.tag.fold
                    out = score_network_fold(state, out, y[folds[fold][1]])
                else:
                    name, fold = handle.tag
                if fold is None:
                    refitted[name] = out
                else:
                    scores[name].append(out[0])
                    outputs[name][fold] = out[1]
                    if len(out) > 2:
                        members[name][fold] = out[2]
                display.advance(STAGE, done, total, name, echo=False)
                if len(scores[name]) == state.cv_folds and name in members:
                    model = SoftVote(name, prepared.task, [SklearnModel(name, prepared.task, fitted, prepared.n_classes)
                                                           for fitted in members.pop(name)])
                    state.finished_cv(name, summarize(scores.pop(name)), state.cv_folds, model)
                elif len(scores[name]) == state.cv_folds and name in refitted:
                    model = SklearnModel(name, prepared.task, refitted.pop(name), prepared.n_classes)
                    state.finished_cv(name, summarize(scores.pop(name)), state.cv_folds, model)
                elif len(scores[name]) == state.cv_folds and name in folded_networks:
                    # chosen on its folds, tested as trained: no refit (its early stopping needs the validation split)
                    state.finished_cv(name, summarize(scores.pop(name)), state.cv_folds, state.trained[name].model)
            _stopped_by_time(state, unfinished)
            if tunes_threshold(state):
                _tune_thresholds(state, y, folds, outputs, list(state.cv))
            if self.wants_ensemble:
                _soft_vote(state, y, folds, outputs)
        finally:
            state.stage_times[STAGE] = time.perf_counter() - self.started_at
        if state.budget is not None:
            state.budget.took(STAGE, state.stage_times[STAGE])
        if not state.cv:
            return
        best = rank({name: scores.get(state.metric, {}).get("mean") for name, scores in state.cv.items()},
                    state.metric)[0]
        display.finish(STAGE, f"{len(state.cv)} models, best {best}: cv {state.metric} "
                              f"{state.cv[best][state.metric]['mean']:.4f} ± {state.cv[best][state.metric]['std']:.4f}")


def cross_validate(state: RunState, data=None, started: "CrossValidation | None" = None) -> None:
    """The whole stage: the folds `started` already launched (the models stage's, beside the
    searches), those of the models trained since, then the ensemble."""
    cv = started or CrossValidation(state, data)
    cv.start()
    cv.finish()


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
    """The weighted ensemble, chosen by greedy ensemble selection over the out-of-fold outputs of
    every model cross-validated here (evaluation/selection.py), when it has two members or more."""
    prepared = state.prepared
    # models whose every out-of-fold output this command holds (a resumed run's earlier scores,
    # or folds a time limit cancelled, have none here)
    complete = {name: outputs[name] for name in state.cv
                if name in outputs and all(fold is not None for fold in outputs[name])}
    weights = select_ensemble(prepared.task, y, folds, complete, state.metric, prepared.n_classes,
                              state.exp.evaluation.ensemble)
    if len(weights) < 2:
        return
    members = list(weights)
    summary = summarize(ensemble_folds(prepared.task, y, folds, outputs, weights, prepared.n_classes))
    shares = [weights[m] for m in members]
    on_train = SoftVote(ENSEMBLE, prepared.task, [state.trained[m].model for m in members], shares)
    seconds = sum(state.trained[m].train_time_s for m in members)
    state.finished(ENSEMBLE, Trained(on_train, SoftVote.kind, seconds,
                                     run_info={"members": members, "weights": {m: round(weights[m], 4) for m in members}}))
    state.finished_cv(ENSEMBLE, summary, state.cv_folds,
                      SoftVote(ENSEMBLE, prepared.task, [state.refitted[m] for m in members], shares))
    state.display.say(f"{STAGE}: ensemble of {', '.join(f'{m} {weights[m]:.2f}' for m in members)} (greedy "
                      f"selection over out-of-fold outputs): cv {state.metric} {summary[state.metric]['mean']:.4f} "
                      f"± {summary[state.metric]['std']:.4f}")
    if tunes_threshold(state):
        outputs[ENSEMBLE] = [sum(weights[m] * np.asarray(outputs[m][i]) for m in members) for i in range(len(folds))]
        _tune_thresholds(state, y, folds, outputs, [ENSEMBLE])


def tunes_threshold(state: RunState) -> bool:
    """Two classes chosen by a threshold metric (F1): each model's decision threshold is tuned."""
    prepared = state.prepared
    return prepared.task == "classification" and prepared.n_classes == 2 and state.metric in THRESHOLD_METRICS


def _tune_thresholds(state: RunState, y: np.ndarray, folds, outputs: dict[str, list], names: list[str]) -> None:
    """Each model's decision threshold on the second class, tuned on its out-of-fold probabilities
    where that beats the most probable class (evaluation/selection.py tune_threshold); its fold
    scores are then the threshold's, and the threshold goes with the model (validation, test,
    export). A network whose workers hold it keeps the most probable class."""
    from rayfit.metrics import score_outputs

    prepared, tuned = state.prepared, []
    for name in names:
        per_fold, model = outputs.get(name), state.refitted.get(name)
        if model is None or not model.in_process or not per_fold or any(fold is None for fold in per_fold):
            continue
        threshold = tune_threshold(y, out_of_fold(folds, per_fold), state.metric)
        if threshold is None:
            continue
        summary = summarize([score_outputs(prepared.task, y[held_out], per_fold[i], prepared.n_classes, threshold)
                             for i, (_, held_out) in enumerate(folds)])
        model.threshold = state.trained[name].model.threshold = threshold
        state.finished_cv(name, summary, state.cv_folds, model)
        tuned.append(f"{name} {threshold:.2f}")
    if tuned:
        state.display.say(f"{STAGE}: decision thresholds on P({prepared.class_names[1]}) tuned on out-of-fold "
                          f"predictions for {state.metric}: {', '.join(tuned)}")


def registry_name(state: RunState, name: str) -> str:
    """The baseline a model is: its own name, or the model its search tuned (gradient_boosting_tuned)."""
    return name if name in BASELINES else state.searches[name]["model"]


def _score_fold_task(estimator, baseline, task, class_weight, threads, data, fit_rows, held_out, n_classes, keep):
    return score_fold(estimator, baseline, task, class_weight, threads, data["X"], data["y"], fit_rows, held_out,
                      n_classes, keep)


def _refit_task(estimator, baseline, class_weight, threads, data):
    from sklearn.base import clone

    return fit_estimator(baseline, clone(estimator), data["X"], data["y"], class_weight, threads, inner_stop=True)
