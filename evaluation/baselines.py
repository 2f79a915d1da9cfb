"""The classic-ML zoo: the registry (the one place a baseline is named), each trained as its own Ray task.

An entry says what the model is and how to handle it: a builder, the tasks it serves, whether it
is cheap enough for the default set, how it takes class weights, its default search space and
tunable hyperparameters (empty: not tunable), and how it grows in steps a Tune scheduler can stop
(trees added per step). The config validates names and spaces from here; the baselines stage and
the tuning layer build, fit and grow estimators only through `make_estimator`, `fit_estimator` and
`grow`. Adding a baseline is one entry; the contract test (tests/test_baselines.py) runs over all.

Every builder takes the threads its Ray task was given: a baseline never starts more threads than
the CPUs Ray reserved for it, so baselines running side by side never oversubscribe the cores.
Models whose defaults assume a target of unit scale (SVR's epsilon, Lasso's alpha, distances in k
nearest neighbours) learn a standardized regression target and answer in the target's units.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Callable, Literal, Optional

import numpy as np

TASKS = ("classification", "regression")


@dataclass(frozen=True)
class Baseline:
    # (task, class_weight, seed, threads) -> an unfitted estimator; class_weight is None or
    # {class_index: weight}
    build: Callable[[str, Optional[dict], int, int], object]
    tasks: tuple = TASKS  # the tasks it serves
    default: bool = True  # in the default set: cheap enough to train on every run (`baselines.models: default`)
    # How class weights reach it: its own `class_weight` parameter ("param"), per-row weights in
    # fit ("sample_weight"), or not at all (None).
    class_weights: Optional[Literal["param", "sample_weight"]] = "param"
    # default search space in the config's syntax ({name: {kind: args}}); empty: not tunable
    space: dict = field(default_factory=dict)
    tunable: tuple = ()  # hyperparameters a search may set
    growth: Optional[tuple] = None  # (parameter that grows, by how much per step), or one step
    in_steps: dict = field(default_factory=dict)  # parameters set when it grows in steps (besides warm_start)
    # A booster that grows by continuing to train: the fit arguments that continue from the model
    # fitted so far (xgboost's xgb_model, LightGBM's init_model); None: scikit-learn's warm_start.
    continue_fit: Optional[Callable[[object], dict]] = None
    # (task, sampled hyperparameters) -> the estimator's own parameters, where a task's estimator
    # spells a hyperparameter differently or wraps the model that has it; None: the same names
    translate: Optional[Callable[[str, dict], dict]] = None
    package: str = "sklearn"  # the import it needs (the contract test names it when missing)
    # Parameters that train it on the CUDA device Ray assigned its task (empty: no GPU mode)
    gpu_params: dict = field(default_factory=dict)
    # A booster that early-stops on an inner split of the rows it is fitted on: (estimator, held-out
    # X, y, per-row weights or None) -> the fit arguments that watch them, after setting its cap on
    # rounds (see `fit_estimator`); None: it trains its configured size. `stopped`: the parameters
    # that say the fitted model's size once it stopped, so that a copy (a fold's, a refit's) is
    # that size when fitted without an inner split.
    early_stopping: Optional[Callable[[object, np.ndarray, np.ndarray, Optional[np.ndarray]], dict]] = None
    stopped: Optional[Callable[[object], dict]] = None
    # A model that splits on categorical columns natively: the fit argument that names them (it is
    # wrapped in evaluation/categories.py's NativeCategories where the table has any); None: it
    # takes the one-hot and ordinal features every model sees.
    categories: Optional[str] = None

    def serves(self, task: str) -> bool:
        return task in self.tasks

    @property
    def installed(self) -> bool:
        import importlib.util

        return importlib.util.find_spec(self.package) is not None

    def params_for(self, task: str, params: dict) -> dict:
        return self.translate(task, params) if self.translate else dict(params)


# -- builders ------------------------------------------------------------------------------------

def _standardized_target(regressor):
    """A regressor that learns (y - mean) / std and predicts in y's units."""
    from sklearn.compose import TransformedTargetRegressor
    from sklearn.preprocessing import StandardScaler

    return TransformedTargetRegressor(regressor=regressor, transformer=StandardScaler())


def _prefixed(prefix: str, tasks: tuple = TASKS) -> Callable[[str, dict], dict]:
    """Parameters of a model wrapped by another (a calibrator, a target scaler), for these tasks."""
    def translate(task: str, params: dict) -> dict:
        return {f"{prefix}__{k}": v for k, v in params.items()} if task in tasks else dict(params)
    return translate


def _calibrated_or_scaled(task: str, params: dict) -> dict:
    """An SVM's parameters: inside its calibrator (classification) or its target scaler (regression)."""
    return _prefixed("estimator" if task == "classification" else "regressor")(task, params)


def _dummy(task, cw, seed, threads):
    from sklearn.dummy import DummyClassifier, DummyRegressor

    return DummyClassifier(strategy="most_frequent") if task == "classification" else DummyRegressor(strategy="mean")


def _linear(task, cw, seed, threads):
    from sklearn.linear_model import LogisticRegression, Ridge

    return LogisticRegression(max_iter=2000, class_weight=cw) if task == "classification" else Ridge(alpha=1.0)


def _linear_params(task, params):
    """C, the inverse regularization strength, for both tasks. Logistic regression minimizes
    C * loss + ||w||^2 / 2; Ridge minimizes loss + alpha * ||w||^2: the same trade-off at
    alpha = 1 / (2 C)."""
    params = dict(params)
    if task == "regression" and "C" in params:
        params["alpha"] = 1.0 / (2.0 * params.pop("C"))
    return params


def _ridge(task, cw, seed, threads):
    from sklearn.linear_model import Ridge

    return Ridge(alpha=1.0)


def _lasso(task, cw, seed, threads):
    from sklearn.linear_model import Lasso

    return _standardized_target(Lasso(alpha=0.01, max_iter=5000, random_state=seed))


def _elastic_net(task, cw, seed, threads):
    from sklearn.linear_model import ElasticNet

    return _standardized_target(ElasticNet(alpha=0.01, l1_ratio=0.5, max_iter=5000, random_state=seed))


def _linear_svm(task, cw, seed, threads):
    from sklearn.calibration import CalibratedClassifierCV
    from sklearn.svm import LinearSVC, LinearSVR

    if task == "classification":
        # A linear SVM scores, it does not give probabilities: Platt scaling on 3 folds does.
        return CalibratedClassifierCV(LinearSVC(C=1.0, class_weight=cw, random_state=seed), cv=3)
    # the primal problem of the squared loss: converges where the dual of the plain one often does not
    return _standardized_target(LinearSVR(C=1.0, loss="squared_epsilon_insensitive", dual=False, random_state=seed))


def _svm(task, cw, seed, threads):
    from sklearn.calibration import CalibratedClassifierCV
    from sklearn.svm import SVC, SVR

    if task == "classification":
        # probabilities by Platt scaling of one SVC over cross-validated scores (what scikit-learn
        # 1.9 recommends in place of SVC(probability=True))
        return CalibratedClassifierCV(SVC(C=1.0, kernel="rbf", class_weight=cw, random_state=seed), ensemble=False)
    return _standardized_target(SVR(C=1.0, kernel="rbf"))


def _knn(task, cw, seed, threads):
    from sklearn.neighbors import KNeighborsClassifier, KNeighborsRegressor

    if task == "classification":
        return KNeighborsClassifier(n_neighbors=15, weights="distance", n_jobs=threads)
    return KNeighborsRegressor(n_neighbors=15, weights="distance", n_jobs=threads)


def _decision_tree(task, cw, seed, threads):
    from sklearn.tree import DecisionTreeClassifier, DecisionTreeRegressor

    if task == "classification":
        return DecisionTreeClassifier(min_samples_leaf=5, class_weight=cw, random_state=seed)
    return DecisionTreeRegressor(min_samples_leaf=5, random_state=seed)


def _random_forest(task, cw, seed, threads):
    from sklearn.ensemble import RandomForestClassifier, RandomForestRegressor

    if task == "classification":
        return RandomForestClassifier(n_estimators=200, class_weight=cw, random_state=seed, n_jobs=threads)
    return RandomForestRegressor(n_estimators=200, random_state=seed, n_jobs=threads)


def _extra_trees(task, cw, seed, threads):
    from sklearn.ensemble import ExtraTreesClassifier, ExtraTreesRegressor

    if task == "classification":
        return ExtraTreesClassifier(n_estimators=200, class_weight=cw, random_state=seed, n_jobs=threads)
    return ExtraTreesRegressor(n_estimators=200, random_state=seed, n_jobs=threads)


def _gradient_boosting(task, cw, seed, threads):
    from sklearn.ensemble import HistGradientBoostingClassifier, HistGradientBoostingRegressor

    if task == "classification":
        return HistGradientBoostingClassifier(class_weight=cw, random_state=seed)
    return HistGradientBoostingRegressor(random_state=seed)


def _xgboost(task, cw, seed, threads):
    import xgboost

    common = dict(n_estimators=200, learning_rate=0.1, max_depth=6, tree_method="hist", n_jobs=threads,
                  random_state=seed, verbosity=0)
    return xgboost.XGBClassifier(**common) if task == "classification" else xgboost.XGBRegressor(**common)


def _lightgbm(task, cw, seed, threads, **config):
    import lightgbm

    # gain, as xgboost's feature_importances_ reports: the report's native importances compare
    common = dict(n_estimators=200, learning_rate=0.05, num_leaves=31, n_jobs=threads, random_state=seed,
                  verbosity=-1, importance_type="gain") | config
    if task == "classification":
        return lightgbm.LGBMClassifier(class_weight=cw, **common)
    return lightgbm.LGBMRegressor(**common)


# LightGBM's portfolio: the three configurations of AutoGluon 1.6's default hyperparameters
# (autogluon.tabular.configs.hyperparameter_configs, `default`, "GBM": {}, LightGBMXT, LightGBMLarge),
# each a candidate of its own, cross-validated like any other.
def _lightgbm_xt(task, cw, seed, threads):
    return _lightgbm(task, cw, seed, threads, extra_trees=True)


def _lightgbm_large(task, cw, seed, threads):
    return _lightgbm(task, cw, seed, threads, learning_rate=0.03, num_leaves=128, colsample_bytree=0.9,
                     min_child_samples=3)


def _catboost(task, cw, seed, threads):
    import catboost

    # no files: CatBoost writes catboost_info/ into the working directory unless told not to
    common = dict(iterations=300, learning_rate=0.05, depth=6, thread_count=threads, random_seed=seed,
                  verbose=False, allow_writing_files=False)
    # class weights reach it as per-row weights in fit: its `class_weights` parameter breaks
    # scikit-learn's clone, which the folds and the refit make of every model
    return catboost.CatBoostClassifier(**common) if task == "classification" else catboost.CatBoostRegressor(**common)


# Early stopping on an inner split, as AutoGluon trains its boosters: the cap on rounds is high, and
# training stops PATIENCE rounds after the inner split's loss (log loss, or squared error) last improved;
# the model predicts with its best round.
INNER_SHARE = 0.1  # of the rows a booster is fitted on, held out to stop it
INNER_MIN_ROWS = 100  # fewer rows than this: no inner split, the booster trains its configured size
MAX_ROUNDS = 2000
PATIENCE = 50


def _xgboost_stop(estimator, X_val, y_val, w_val) -> dict:
    estimator.set_params(n_estimators=MAX_ROUNDS, early_stopping_rounds=PATIENCE)
    return {"eval_set": [(X_val, y_val)], "verbose": False,
            **({"sample_weight_eval_set": [w_val]} if w_val is not None else {})}


def _lightgbm_stop(estimator, X_val, y_val, w_val) -> dict:
    import lightgbm

    estimator.set_params(n_estimators=MAX_ROUNDS)
    return {"eval_set": [(X_val, y_val)], "callbacks": [lightgbm.early_stopping(PATIENCE, verbose=False)],
            **({"eval_sample_weight": [w_val]} if w_val is not None else {})}


def _xgboost_size(model) -> dict:
    return {"n_estimators": model.best_iteration + 1, "early_stopping_rounds": None}


def _lightgbm_size(model) -> dict:
    return {"n_estimators": max(model.best_iteration_, 1)}


_LIGHTGBM_STOPS = {"early_stopping": _lightgbm_stop, "stopped": _lightgbm_size}  # every LightGBM configuration's


def _catboost_stop(estimator, X_val, y_val, w_val) -> dict:
    import catboost

    from rayfit.evaluation.categories import category_columns

    estimator.set_params(iterations=MAX_ROUNDS)
    return {"eval_set": catboost.Pool(X_val, y_val, weight=w_val, cat_features=category_columns(X_val)),
            "early_stopping_rounds": PATIENCE, "use_best_model": True}


_TREE_SPACE = {"max_depth": {"choice": [None, 4, 8, 16]}, "min_samples_leaf": {"randint": [1, 20]},
               "max_features": {"choice": ["sqrt", 0.5, 1.0]}}
_TREE_TUNABLE = ("max_depth", "min_samples_leaf", "max_features", "min_samples_split")

BASELINES: dict[str, Baseline] = {
    "dummy": Baseline(_dummy, class_weights=None),
    # logistic regression / ridge regression
    "linear": Baseline(_linear, space={"C": {"loguniform": [1e-3, 100.0]}}, tunable=("C",),
                       translate=_linear_params),
    "ridge": Baseline(_ridge, tasks=("regression",), default=False, class_weights=None,
                      space={"alpha": {"loguniform": [1e-3, 1e3]}}, tunable=("alpha",)),
    "lasso": Baseline(_lasso, tasks=("regression",), class_weights=None,
                      space={"alpha": {"loguniform": [1e-4, 1.0]}}, tunable=("alpha",),
                      translate=_prefixed("regressor")),
    "elastic_net": Baseline(_elastic_net, tasks=("regression",), class_weights=None,
                            space={"alpha": {"loguniform": [1e-4, 1.0]}, "l1_ratio": {"uniform": [0.05, 0.95]}},
                            tunable=("alpha", "l1_ratio"), translate=_prefixed("regressor")),
    "linear_svm": Baseline(_linear_svm, default=False, space={"C": {"loguniform": [1e-3, 100.0]}}, tunable=("C",),
                           translate=_calibrated_or_scaled),
    # kernel SVM: quadratic in the rows, so not in the default set
    "svm": Baseline(_svm, default=False,
                    space={"C": {"loguniform": [1e-2, 100.0]}, "gamma": {"loguniform": [1e-4, 1.0]}},
                    tunable=("C", "gamma"), translate=_calibrated_or_scaled),
    # k nearest neighbours: predicting is a search through every training row, so not in the default set
    "knn": Baseline(_knn, default=False, class_weights=None, space={"n_neighbors": {"randint": [1, 50]}},
                    tunable=("n_neighbors", "weights")),
    "decision_tree": Baseline(_decision_tree, space={"max_depth": {"choice": [None, 3, 5, 8, 12]},
                                                     "min_samples_leaf": {"randint": [1, 30]}},
                              tunable=("max_depth", "min_samples_leaf", "min_samples_split")),
    "random_forest": Baseline(_random_forest, space=_TREE_SPACE, tunable=_TREE_TUNABLE, growth=("n_estimators", 20)),
    "extra_trees": Baseline(_extra_trees, space=_TREE_SPACE, tunable=_TREE_TUNABLE, growth=("n_estimators", 20)),
    "gradient_boosting": Baseline(
        _gradient_boosting,
        space={"learning_rate": {"loguniform": [0.01, 0.3]}, "max_leaf_nodes": {"randint": [8, 64]},
               "min_samples_leaf": {"randint": [5, 50]}, "l2_regularization": {"loguniform": [1e-4, 1.0]}},
        tunable=("learning_rate", "max_leaf_nodes", "min_samples_leaf", "l2_regularization", "max_depth"),
        growth=("max_iter", 10), in_steps={"early_stopping": False}),  # the scheduler decides when to stop
    "xgboost": Baseline(
        _xgboost, class_weights="sample_weight", package="xgboost",
        space={"learning_rate": {"loguniform": [0.01, 0.3]}, "max_depth": {"randint": [2, 10]},
               "subsample": {"uniform": [0.5, 1.0]}, "colsample_bytree": {"uniform": [0.5, 1.0]},
               "reg_lambda": {"loguniform": [1e-3, 10.0]}},
        tunable=("learning_rate", "max_depth", "subsample", "colsample_bytree", "reg_lambda", "reg_alpha",
                 "min_child_weight"),
        growth=("n_estimators", 10), continue_fit=lambda model: {"xgb_model": model.get_booster()},
        gpu_params={"device": "cuda"}, early_stopping=_xgboost_stop,
        stopped=_xgboost_size),
    "lightgbm": Baseline(
        _lightgbm, package="lightgbm",
        space={"learning_rate": {"loguniform": [0.01, 0.3]}, "num_leaves": {"randint": [8, 128]},
               "min_child_samples": {"randint": [5, 50]}, "subsample": {"uniform": [0.5, 1.0]},
               "colsample_bytree": {"uniform": [0.5, 1.0]}, "reg_lambda": {"loguniform": [1e-3, 10.0]}},
        tunable=("learning_rate", "num_leaves", "min_child_samples", "subsample", "colsample_bytree", "reg_lambda",
                 "reg_alpha", "max_depth"),
        # subsample only takes effect with bagging every iteration
        growth=("n_estimators", 10), in_steps={"subsample_freq": 1},
        continue_fit=lambda model: {"init_model": model.booster_}, **_LIGHTGBM_STOPS),
    "lightgbm_xt": Baseline(_lightgbm_xt, package="lightgbm", **_LIGHTGBM_STOPS),
    "lightgbm_large": Baseline(_lightgbm_large, package="lightgbm", **_LIGHTGBM_STOPS),
    # CatBoost, where it installs (the `catboost` extra): a fitted model's parameters cannot change,
    # so it is fitted whole (no growth in steps for a scheduler to stop)
    "catboost": Baseline(
        _catboost, package="catboost", class_weights="sample_weight",
        space={"learning_rate": {"loguniform": [0.01, 0.3]}, "depth": {"randint": [4, 10]},
               "l2_leaf_reg": {"loguniform": [0.1, 30.0]}},
        tunable=("learning_rate", "depth", "l2_leaf_reg", "iterations", "bagging_temperature"),
        # (a fitted CatBoost model's parameters cannot change: a copy keeps the cap, and stops as well)
        gpu_params={"task_type": "GPU", "devices": "0"}, early_stopping=_catboost_stop,
        # as AutoGluon trains it: categories by ordered target statistics (on sacramento's city and
        # zip code, test R2 0.66 one-hot against 0.74 native)
        categories="cat_features"),
}


def tunable_baselines() -> list[str]:
    return [name for name, baseline in BASELINES.items() if baseline.tunable]


def baselines_for(models, task: str) -> list[str]:
    """The baselines a run trains for `task`: `default` (the cheap ones), `all`, or the names given
    (each must serve the task: asking for lasso on a classification table is a mistake). `default`
    and `all` leave out a model whose package is not installed; a name given must be installed."""
    from rayfit.errors import UserError

    if models in ("default", "all"):
        return [name for name, b in BASELINES.items()
                if b.serves(task) and b.installed and (models == "all" or b.default)]
    for name in models:
        baseline = BASELINES[name]
        if not baseline.serves(task):
            raise UserError(f"baselines.models: {name} does {' and '.join(baseline.tasks)} only, "
                            f"and this is a {task} task")
        if not baseline.installed:
            raise UserError(f"baselines.models: {name} needs the {baseline.package} package "
                            f"(pip install 'rayfit[{baseline.package}]')")
    return list(models)


# -- building, fitting and growing: the one way every stage does it ---------------------------

def make_estimator(name: str, task: str, class_weight: Optional[dict], seed: int, threads: int = 1,
                   params: Optional[dict] = None, layout=None):
    """An unfitted estimator of baseline `name`, with the sampled hyperparameters `params` (if any).
    `layout`: where the table's categorical columns lie in its features (a CategoricalLayout, or
    None), for a baseline that takes them natively."""
    from rayfit.evaluation.categories import NativeCategories

    baseline = BASELINES[name]
    estimator = baseline.build(task, class_weight if baseline.class_weights == "param" else None, seed, threads)
    if params:
        estimator.set_params(**baseline.params_for(task, params))
    if baseline.categories and layout is not None:
        estimator = NativeCategories(estimator, layout, baseline.categories)
    return estimator


def fit_estimator(name: str, estimator, X, y, class_weight: Optional[dict], threads: int = 1,
                  inner_stop: bool = False, **fit_args):
    """Fit in place, with no more threads than `threads` (OpenMP and BLAS pools included).
    `inner_stop`: a booster that early-stops holds out INNER_SHARE of the rows (stratified) and
    stops on them (how the baselines stage, every fold and every refit fit it; a search grows it
    in steps instead, for its scheduler to stop)."""
    from threadpoolctl import threadpool_limits

    from rayfit.evaluation.categories import NativeCategories

    wrapper = estimator if isinstance(estimator, NativeCategories) else None
    if wrapper is not None:  # its estimator fitted on its own encoding of the rows
        X, estimator = wrapper.encode(X), wrapper.estimator
        fit_args.update(wrapper.fit_arguments())
    baseline = BASELINES[name]
    weights = (np.asarray([class_weight[int(label)] for label in y], dtype=np.float64)
               if baseline.class_weights == "sample_weight" and class_weight else None)
    stops = inner_stop and baseline.early_stopping is not None and len(y) >= INNER_MIN_ROWS
    if stops:
        fit, held_out = _inner_split(estimator, y)
        fit_args.update(baseline.early_stopping(estimator, _rows(X, held_out), y[held_out],
                                                None if weights is None else weights[held_out]))
        X, y, weights = _rows(X, fit), y[fit], None if weights is None else weights[fit]
    if weights is not None:
        fit_args["sample_weight"] = weights
    with threadpool_limits(limits=threads):
        estimator.fit(X, y, **fit_args)
    if stops and baseline.stopped is not None:
        estimator.set_params(**baseline.stopped(estimator))
    return wrapper if wrapper is not None else estimator


def _rows(X, rows: np.ndarray):
    return X.iloc[rows] if hasattr(X, "iloc") else X[rows]


def _inner_split(estimator, y) -> tuple[np.ndarray, np.ndarray]:
    """(rows to fit, rows to stop on): INNER_SHARE held out, stratified for a classifier whose every
    class has two rows or more, the same rows for the same labels every time."""
    from sklearn.base import is_classifier
    from sklearn.model_selection import train_test_split

    rows = np.arange(len(y))
    stratify = y if is_classifier(estimator) and np.unique(y, return_counts=True)[1].min() >= 2 else None
    try:
        return tuple(train_test_split(rows, test_size=INNER_SHARE, random_state=0, stratify=stratify))
    except ValueError:  # more classes than held-out rows
        return tuple(train_test_split(rows, test_size=INNER_SHARE, random_state=0))


def grow(name: str, estimator, step: int, X, y, class_weight: Optional[dict], threads: int = 1):
    """Step `step` (from 1) of a baseline trained in steps: `growth` more trees each step, added by
    warm start or by continuing the booster; a baseline without growth is fitted once, at step 1."""
    baseline = BASELINES[name]
    if baseline.growth is None:
        return fit_estimator(name, estimator, X, y, class_weight, threads)
    parameter, per_step = baseline.growth
    if baseline.continue_fit is None:
        estimator.set_params(warm_start=True, **{parameter: per_step * step}, **baseline.in_steps)
        return fit_estimator(name, estimator, X, y, class_weight, threads)
    estimator.set_params(**{parameter: per_step}, **baseline.in_steps)
    more = baseline.continue_fit(estimator) if step > 1 else {}
    fit_estimator(name, estimator, X, y, class_weight, threads, **more)
    # The parameter says the whole model's size again, so that a copy (cross-validation's, a
    # refit's) grows as many trees at once.
    estimator.set_params(**{parameter: per_step * step})
    return estimator


def fit_baseline(name: str, task: str, class_weight: Optional[dict], seed: int, X, y, threads: int = 1,
                 device: str = "cpu", layout=None):
    """Fit one baseline; returns (estimator, seconds). Runs inside a Ray task of `threads` CPUs
    (and, with device "cuda", the GPU Ray assigned it: see `gpu_device`). `layout`: as for
    `make_estimator`."""
    estimator = make_estimator(name, task, class_weight, seed, threads, layout=layout)
    if device == "cuda":
        estimator.set_params(**BASELINES[name].gpu_params)
    X = X.reshape(len(X), -1)  # images and sequences: one flat row per example
    start = time.perf_counter()
    fit_estimator(name, estimator, X, y, class_weight, threads, inner_stop=True)
    seconds = time.perf_counter() - start
    if device == "cuda" and name == "xgboost":
        estimator.set_params(device="cpu")  # predicts wherever it is loaded, a driver without a GPU too
    return estimator, seconds


def has_gpu_mode(name: str) -> bool:
    return bool(BASELINES[name].gpu_params)


def gpu_device(name: str) -> tuple[str, str]:
    """("cuda" | "cpu", why) for baseline `name` in this Ray task: the GPU Ray assigned it, when the
    library was built for CUDA and a CUDA device is really there (Ray's GPUs may be logical)."""
    from rayfit.cluster.plan import assigned_gpu_ids

    ids = assigned_gpu_ids()
    if not ids:
        return "cpu", "no GPU assigned"
    if name == "xgboost":
        import xgboost

        if not xgboost.build_info().get("USE_CUDA"):
            return "cpu", f"GPU {ids} assigned, but this xgboost has no CUDA (the xgboost-cpu package)"
    if name == "catboost":
        from catboost.utils import get_gpu_device_count

        if get_gpu_device_count() < 1:
            return "cpu", f"GPU {ids} assigned, but CatBoost sees no CUDA device"
    import torch

    if not torch.cuda.is_available():
        return "cpu", f"GPU {ids} assigned, but CUDA is not available here"
    return "cuda", f"GPU {ids}"
