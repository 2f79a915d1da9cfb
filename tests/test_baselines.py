"""The contract every registered baseline keeps (evaluation/baselines.py), for every task it serves:
it fits tiny data, predicts, beats the dummy on a learnable table, yields every metric, saves and
loads, grows in steps when it says it does, and never runs more threads than it was given."""
from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import numpy as np
import pytest
from sklearn.base import clone
from sklearn.datasets import make_classification, make_regression

from rayfit.evaluation.manifest import write_manifest
from rayfit.config import validate
from rayfit import metrics
from rayfit.errors import UserError
from rayfit.evaluation.baselines import BASELINES, baselines_for, fit_baseline, fit_estimator, grow, make_estimator
from rayfit.evaluation.fitted import SklearnModel, load_model
from rayfit.metrics import score_model

CASES = [(name, task) for name, baseline in BASELINES.items() for task in baseline.tasks]


def _data(task: str, n_classes: int = 3):
    """A learnable table: 240 rows to learn from, 120 to score on."""
    if task == "classification":
        X, y = make_classification(360, 8, n_informative=5, n_classes=n_classes, class_sep=1.5, random_state=0)
    else:
        X, y = make_regression(360, 8, n_informative=5, noise=5.0, random_state=0)
        y = 300.0 + 40.0 * y / y.std()  # a target far from unit scale
    X = X.astype(np.float32)
    return X[:240], y[:240], X[240:], y[240:]


def _primary(task: str, scores: dict) -> float:
    return scores["accuracy"] if task == "classification" else scores["r2"]


@pytest.mark.parametrize("name, task", CASES, ids=[f"{n}-{t}" for n, t in CASES])
def test_every_baseline_fits_predicts_scores_and_beats_the_dummy(name, task, tmp_path):
    if not BASELINES[name].installed:
        pytest.skip(f"{BASELINES[name].package} is not installed")
    X, y, X_test, y_test = _data(task)
    n_classes = 3 if task == "classification" else None
    weights = {0: 1.0, 1: 2.0, 2: 0.5} if task == "classification" else None  # class weights, when it takes them
    estimator, seconds = fit_baseline(name, task, weights, 0, X, y)
    assert seconds >= 0
    model = SklearnModel(name, task, estimator, n_classes)
    predictions = model.predict(X_test)
    assert predictions.shape == (len(X_test),)
    scores = score_model(model, X_test, y_test, n_classes)
    expected = metrics.names(task)
    assert set(expected) <= set(scores) and all(np.isfinite(scores[m]) for m in expected), scores
    if name != "dummy":
        dummy = SklearnModel("dummy", task, fit_baseline("dummy", task, None, 0, X, y)[0], n_classes)
        assert _primary(task, scores) > _primary(task, score_model(dummy, X_test, y_test, n_classes)) + 0.1

    model.save(tmp_path / name)  # as a run keeps it (its manifest last), and as predict loads it
    write_manifest(tmp_path / name)
    assert np.array_equal(load_model(tmp_path / name).predict(X_test), predictions)

    # what the folds and the refit do to every model: an unfitted copy, weighted and fitted again
    # (CatBoost's own class_weights parameter once broke scikit-learn's clone here)
    refitted = fit_estimator(name, clone(estimator), np.concatenate([X, X_test]), np.concatenate([y, y_test]), weights)
    again = SklearnModel(name, task, refitted, n_classes).outputs(X_test)
    assert again.shape == model.outputs(X_test).shape and np.all(np.isfinite(again))


GROWING = [(name, task) for name, task in CASES if BASELINES[name].growth]


@pytest.mark.parametrize("name, task", GROWING, ids=[f"{n}-{t}" for n, t in GROWING])
def test_a_baseline_that_grows_adds_its_step_of_trees_each_step(name, task):
    """How a Tune scheduler stops a tree ensemble early: each step is an `epoch` of more trees."""
    if not BASELINES[name].installed:
        pytest.skip(f"{BASELINES[name].package} is not installed")
    X, y, X_test, y_test = _data(task)
    estimator = make_estimator(name, task, None, 0)
    parameter, per_step = BASELINES[name].growth
    for step in (1, 2, 3):
        grow(name, estimator, step, X, y, None)
        assert _trees(estimator) == per_step * step * (3 if name == "xgboost" and task == "classification" else 1)


def _trees(estimator) -> int:
    if hasattr(estimator, "get_booster"):  # xgboost: one tree per class per round
        return len(estimator.get_booster().get_dump())
    if hasattr(estimator, "booster_"):  # LightGBM: rounds
        return estimator.booster_.current_iteration()
    if hasattr(estimator, "n_iter_"):  # scikit-learn's histogram gradient boosting
        return estimator.n_iter_
    return len(estimator.estimators_)


@pytest.mark.parametrize("name", [n for n, b in BASELINES.items() if b.tunable])
def test_every_tunable_hyperparameter_of_the_default_space_reaches_the_estimator(name):
    baseline = BASELINES[name]
    sampled = {key: _a_value(dim) for key, dim in baseline.space.items()}
    assert set(sampled) <= set(baseline.tunable)
    for task in baseline.tasks:
        if not baseline.installed:
            pytest.skip(f"{baseline.package} is not installed")
        estimator = make_estimator(name, task, None, 0, params=sampled)
        params = estimator.get_params()
        for key, value in baseline.params_for(task, sampled).items():
            assert params[key] == value, (name, task, key)


def _a_value(dim: dict):
    kind, args = next(iter(dim.items()))
    return {"choice": lambda a: a[-1], "randint": lambda a: a[0] + 1, "uniform": lambda a: (a[0] + a[1]) / 2,
            "loguniform": lambda a: float(np.sqrt(a[0] * a[1]))}[kind](args)


def test_the_default_set_is_the_cheap_ones_that_serve_the_task():
    classification = baselines_for("default", "classification")
    regression = baselines_for("default", "regression")
    assert {"dummy", "linear", "random_forest", "gradient_boosting"} <= set(classification) & set(regression)
    assert "lasso" in regression and "lasso" not in classification  # regression only
    assert "svm" not in classification and "svm" in baselines_for("all", "classification")  # quadratic in rows
    assert validate({}).baselines.models == "default"
    with pytest.raises(UserError, match="baselines.models: lasso does regression only, and this is a "
                                        "classification task"):
        baselines_for(["dummy", "lasso"], "classification")


# Threads: each baseline fitted with 1 thread and with 2, in a process of its own, on a table big
# enough that a pool would show. CPU seconds over wall seconds is how many cores it kept busy: at
# most about one with 1 thread; with 2, the parallel ones show more, so the measure can see it.
THREADS = textwrap.dedent("""
    import json, os, sys, time
    import numpy as np
    from sklearn.datasets import make_classification
    from rayfit.evaluation.baselines import BASELINES, fit_baseline

    X, y = make_classification(4000, 30, n_informative=10, random_state=0)
    X = X.astype(np.float32)
    out = {}
    for name in sys.argv[1:]:
        for threads in (1, 2):
            fit_baseline(name, "classification", None, 0, X[:300], y[:300], threads)  # imports done
            cpu, wall = sum(os.times()[:2]), time.perf_counter()
            fit_baseline(name, "classification", None, 0, X, y, threads)
            cpu, wall = sum(os.times()[:2]) - cpu, time.perf_counter() - wall
            out.setdefault(name, {})[threads] = [round(cpu, 3), round(wall, 3)]
    print(json.dumps(out))
""")


def test_no_baseline_keeps_more_cores_busy_than_threads_it_was_given():
    names = [n for n, b in BASELINES.items() if "classification" in b.tasks and b.installed]
    done = subprocess.run([sys.executable, "-c", THREADS, *names], capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    measured = json.loads(done.stdout.strip().splitlines()[-1])
    print(measured)
    # Cores kept busy, for fits long enough to tell (a few tens of milliseconds are clock noise).
    busy = {name: {t: cpu / wall for t, (cpu, wall) in runs.items() if wall > 0.2} for name, runs in measured.items()}
    assert {name: round(b["1"], 2) for name, b in busy.items() if b.get("1", 0) > 1.25} == {}, measured
    assert max(b.get("2", 0) for b in busy.values()) > 1.3, measured  # the measure sees a second core in use


# XGBoost and LightGBM data-parallel: one `rayfit run` with baselines.workers: 2 trains each as a
# 2-worker Ray Train group (XGBoostTrainer, LightGBMTrainer) over the run's own training split.


@pytest.fixture(scope="module")
def distributed_run(tmp_path_factory, messy_csv, ray_session):
    from rayfit.cli import main

    out = tmp_path_factory.mktemp("boosters") / "run"
    code = main(["run", "--data", str(messy_csv), "--target", "label", "--out", str(out),
                 "--set", "baselines.models=[dummy, xgboost, lightgbm]", "--set", "baselines.workers=2",
                 "--set", "torch.enabled=false", "--set", "keras.enabled=false", "--set", "tune.enabled=false",
                 "--set", "evaluation.cv=none", "--set", "evaluation.ensemble=0"])
    assert code == 0
    return out


def test_xgboost_and_lightgbm_train_as_two_worker_groups(distributed_run):
    metrics = json.loads((distributed_run / "metrics.json").read_text())
    dummy = metrics["models"]["dummy"]
    assert dummy["framework"] == "sklearn" and "launch" not in dummy
    for name in ("xgboost", "lightgbm"):
        entry = metrics["models"][name]
        assert (entry["framework"], entry["launch"], entry["workers"]) == (name, "ray_train", 2), entry
        assert entry["test"]["accuracy"] > dummy["test"]["accuracy"] + 0.15, entry["test"]
        assert entry["native_importance"]["kind"] == "gain"
    # Ray Train kept each group's run in the run's storage
    assert (distributed_run / "checkpoints" / "xgboost_x2").is_dir()
    assert (distributed_run / "checkpoints" / "lightgbm_x2").is_dir()


def test_the_two_xgboost_workers_built_one_model_of_all_their_rows(distributed_run, messy_csv):
    """Each worker held half the training rows; their histograms were summed through XGBoost's
    collective, so the model is the one a single process makes from every row, not from half."""
    import xgboost

    from rayfit.config import load_experiment
    from rayfit.data import prepare
    from rayfit.trainers.boosters import booster_params

    exp = load_experiment(str(distributed_run / "config.yaml"))
    prepared = prepare(exp.data, exp.seed)
    model = load_model(distributed_run / "models" / "xgboost")
    params, rounds = booster_params("xgboost", "classification", 2, exp.seed, 1)

    def alone(rows):
        booster = xgboost.train(params, xgboost.DMatrix(prepared.X_train[rows], label=prepared.y_train[rows]), rounds)
        return booster.predict(xgboost.DMatrix(prepared.X_test))

    grouped = model.predict_proba(prepared.X_test)[:, 1]
    every_row, half = alone(slice(None)), alone(slice(0, None, 2))
    # seen: 1.2e-7 from the every-row model, 0.81 from the half-row one
    assert np.abs(grouped - every_row).max() < 1e-3
    assert np.abs(grouped - half).max() > 0.05


BOOSTERS = [name for name, baseline in BASELINES.items() if baseline.early_stopping]


@pytest.mark.parametrize("name", BOOSTERS)
def test_a_booster_early_stops_on_an_inner_split_and_a_copy_keeps_its_size(name):
    """How the baselines stage, the folds and the refit fit a booster: it holds out a tenth of the
    rows, stops when their loss stops improving, and predicts with its best round."""
    from rayfit.evaluation.baselines import MAX_ROUNDS, PATIENCE

    if not BASELINES[name].installed:
        pytest.skip(f"{BASELINES[name].package} is not installed")
    rng = np.random.default_rng(0)
    X = rng.normal(size=(400, 5)).astype(np.float32)
    y = (X[:, 0] + rng.normal(scale=1.5, size=400) > 0).astype(int)  # noisy: a few rounds are enough
    stopped = fit_estimator(name, make_estimator(name, "classification", None, 0), X, y, None, inner_stop=True)
    rounds = _rounds(stopped)
    assert rounds < MAX_ROUNDS - PATIENCE, rounds
    plain = fit_estimator(name, make_estimator(name, "classification", None, 0), X, y, None)  # a search's way
    assert _rounds(plain) == make_estimator(name, "classification", None, 0).get_params()[_size(name)]
    if name != "catboost":  # a fitted CatBoost model's parameters cannot change
        assert clone(stopped).get_params()[_size(name)] == rounds


def _size(name: str) -> str:
    return "iterations" if name == "catboost" else "n_estimators"


def _rounds(model) -> int:
    if hasattr(model, "get_best_iteration"):  # CatBoost: the model shrinks to its best round
        return model.tree_count_
    if hasattr(model, "booster_"):  # LightGBM: the rounds it predicts with
        return model.best_iteration_ or model.booster_.current_iteration()
    return model.best_iteration + 1 if hasattr(model, "best_iteration") else len(model.get_booster().get_dump())
