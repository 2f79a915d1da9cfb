"""XGBoost and LightGBM data-parallel on Ray Train (`baselines.workers > 1`): `XGBoostTrainer` and
`LightGBMTrainer` worker groups, each worker reading its shard of the same training split the
networks read (its slice of the arrays in the object store, or its shard of the streamed Parquet
split). The boosters' own collectives (XGBoost's rabit tracker, LightGBM's socket network, both set
up by Ray Train) build one model over all shards; rank 0's checkpoint holds it.

The model keeps the registry's hyperparameters (evaluation/baselines.py) and class weights, and
comes back as a `BoosterModel`: the booster itself, answering like any ArrayModel.
"""
from __future__ import annotations

import time
from pathlib import Path
from typing import Optional

import numpy as np

from rayfit.evaluation.fitted import LOADERS, ArrayModel

DISTRIBUTED = ("xgboost", "lightgbm")  # the baselines that train as worker groups when baselines.workers > 1
# each library's objective for (regression, more than two classes, two classes)
OBJECTIVES = {"xgboost": ("reg:squarederror", "multi:softprob", "binary:logistic"),
              "lightgbm": ("regression", "multiclass", "binary")}


class BoosterModel(ArrayModel):
    """A booster trained by a worker group: class probabilities or values from the library's own
    Booster; `feature_importances_` is its total gain per feature (native importance)."""

    kind = "booster"
    is_booster = True

    def __init__(self, name: str, task: str, library: str, booster, n_classes: Optional[int] = None):
        super().__init__(name, task)
        self.library, self.booster, self.n_classes = library, booster, n_classes

    @property
    def estimator(self):  # what native_importance reads
        return self

    @property
    def feature_importances_(self) -> np.ndarray:
        if self.library == "xgboost":
            gains = self.booster.get_score(importance_type="total_gain")
            n = self.booster.num_features()
            return np.asarray([gains.get(f"f{j}", 0.0) for j in range(n)], dtype=float)
        return np.asarray(self.booster.feature_importance(importance_type="gain"), dtype=float)

    def _raw_predict(self, X):
        X = np.asarray(X, dtype=np.float32).reshape(len(X), -1)
        if self.library == "xgboost":
            import xgboost

            out = self.booster.predict(xgboost.DMatrix(X))
        else:
            out = self.booster.predict(X)
        out = np.asarray(out, dtype=np.float64)
        if self.task == "classification" and out.ndim == 1:  # binary: P(class 1)
            out = np.column_stack([1.0 - out, out])
        return out

    def _save_files(self, directory):
        self.booster.save_model(str(Path(directory) / _FILE[self.library]))

    def _meta(self):
        return {"library": self.library, "n_classes": self.n_classes}

    @classmethod
    def load(cls, directory: Path, meta: dict) -> "BoosterModel":
        return cls(meta["name"], meta["task"], meta["library"], _read_booster(meta["library"], Path(directory)),
                   meta.get("n_classes"))


_FILE = {"xgboost": "booster.json", "lightgbm": "booster.txt"}
LOADERS[BoosterModel.kind] = BoosterModel.load


def _read_booster(library: str, directory: Path):
    if library == "xgboost":
        import xgboost

        booster = xgboost.Booster()
        booster.load_model(str(directory / _FILE[library]))
        return booster
    import lightgbm

    return lightgbm.Booster(model_file=str(directory / _FILE[library]))


def booster_params(library: str, task: str, n_classes: Optional[int], seed: int, threads: int) -> tuple[dict, int]:
    """(the library's training parameters, boosting rounds) of the registry's estimator for `task`."""
    from rayfit.evaluation.baselines import make_estimator

    estimator = make_estimator(library, task, None, seed, threads)
    raw = estimator.get_params()
    if library == "xgboost":
        params = {k: v for k, v in estimator.get_xgb_params().items() if v is not None}
    else:
        params = {"learning_rate": raw["learning_rate"], "num_leaves": raw["num_leaves"], "seed": seed,
                  "num_threads": threads, "verbosity": -1}
    regression, multiclass, binary = OBJECTIVES[library]
    if task == "regression":
        params["objective"] = regression
    elif n_classes > 2:
        params.update(objective=multiclass, num_class=n_classes)
    else:
        params["objective"] = binary
    return params, raw["n_estimators"]


def _worker(config: dict) -> None:
    """One worker: its shard of the training split, the whole validation split, one booster built
    with the others through the library's collective."""
    import ray
    import ray.train

    from rayfit.cluster.ledger import note

    note(config["ledger"])
    context = ray.train.get_context()
    rank, world = context.get_world_rank(), context.get_world_size()
    if config["streaming"]:
        from rayfit.data.streaming import FEATURES, LABEL

        # the booster builds its histograms from all of its rows at once: the shard, gathered
        batches = list(ray.train.get_dataset_shard("train").iter_batches(batch_format="numpy", batch_size=65536))
        X = np.concatenate([b[FEATURES] for b in batches])
        y = np.concatenate([b[LABEL] for b in batches])
        held_out = ray.get(config["val"])
    else:
        arrays = ray.get(config["data"])
        X, y = arrays["X_train"][rank::world], arrays["y_train"][rank::world]
        held_out = arrays
    X = X.reshape(len(X), -1)
    X_val, y_val = held_out["X_val"].reshape(len(held_out["X_val"]), -1), held_out["y_val"]
    weights = config["class_weights"]
    w = np.asarray([weights[int(label)] for label in y], dtype=np.float64) if weights else None
    params, rounds = config["params"], config["rounds"]
    if config["library"] == "xgboost":
        import xgboost

        booster = xgboost.train(params, xgboost.DMatrix(X, label=y, weight=w), num_boost_round=rounds,
                                evals=[(xgboost.DMatrix(X_val, label=y_val), "val")], verbose_eval=False)
    else:
        import lightgbm
        from ray.train.lightgbm import get_network_params

        params = {**params, **get_network_params(), "tree_learner": "data_parallel", "pre_partition": True}
        train_set = lightgbm.Dataset(X, label=y, weight=w)
        booster = lightgbm.train(params, train_set, num_boost_round=rounds)
    # One report at the end, rank 0's carrying the model (every worker holds the same one). A
    # report per round, as Ray's callbacks make, costs a quarter of a second each on 2 CPUs.
    import tempfile

    with tempfile.TemporaryDirectory(prefix="rayfit-booster-") as directory:
        checkpoint = None
        if rank == 0:
            booster.save_model(str(Path(directory) / _FILE[config["library"]]))
            checkpoint = ray.train.Checkpoint.from_directory(directory)
        ray.train.report({"rows": int(len(X)), "rounds": int(rounds)}, checkpoint=checkpoint)


def fit_booster_group(library: str, data, n_classes: Optional[int], workers: int, cpus_per_worker: int, storage,
                      ledger: str) -> tuple[BoosterModel, float]:
    """Train `library` as a worker group of `workers`; (the model, wall seconds). `storage` (a
    Location) holds the group's run; `data` is the run's TrainingData."""
    import ray.train

    from rayfit.cluster.orphans import free_orphaned_placement_groups
    from rayfit.cluster.storage import Location
    from rayfit.cluster.watchdog import current_watchdog
    from rayfit.data.streaming import read_training_split

    params, rounds = booster_params(library, data.task, n_classes, data.seed, cpus_per_worker)
    streaming = data.train_path is not None
    config = {"library": library, "params": params, "rounds": rounds, "streaming": streaming,
              "data": data.ref, "val": data.val_ref, "class_weights": data.class_weights, "ledger": ledger}
    if library == "xgboost":
        from ray.train.xgboost import XGBoostTrainer as Trainer
    else:
        from ray.train.lightgbm import LightGBMTrainer as Trainer
    free_orphaned_placement_groups()
    trainer = Trainer(
        _worker, train_loop_config=config,
        datasets={"train": read_training_split(data.train_path)} if streaming else None,
        scaling_config=ray.train.ScalingConfig(num_workers=workers, resources_per_worker={"CPU": cpus_per_worker}),
        run_config=ray.train.RunConfig(name=f"{library}_x{workers}", storage_path=Location.of(storage).uri,
                                       failure_config=ray.train.FailureConfig(max_failures=1)))
    started = time.perf_counter()
    result = current_watchdog().run(trainer.fit)
    seconds = time.perf_counter() - started
    if result.error is not None:
        raise result.error
    with result.checkpoint.as_directory() as directory:
        booster = _read_booster(library, Path(directory))
    return BoosterModel(library, data.task, library, booster, n_classes), seconds
