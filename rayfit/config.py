"""One typed experiment config: defaults live here, each with what it means.

A config comes from a YAML file (or nothing: the built-in quickstart), then `--set key.path=value`
overrides, then validation. Unknown keys and wrong types fail at once, naming the key path.
"""
from __future__ import annotations

import math
import re
from pathlib import Path, PurePosixPath
from typing import Any, ClassVar, Iterable, Literal, Optional, Union

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from rayfit.errors import UserError, refuse_credentials
from rayfit import metrics
from rayfit.evaluation.baselines import BASELINES
from rayfit.frameworks import FRAMEWORKS
from rayfit.tuning.schedulers import EXPLOITING, SCHEDULERS
from rayfit.tuning.searchers import SEARCHERS

BASELINE_NAMES = tuple(BASELINES)


class _Section(BaseModel):
    # Unknown keys are typos until proven otherwise.
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class SplitConfig(_Section):
    train: float = Field(0.70, gt=0, lt=1)  # fraction of rows the models learn from
    val: float = Field(0.15, gt=0, lt=1)  # model selection, early stopping, tuning
    test: float = Field(0.15, gt=0, lt=1)  # touched once, by the final evaluation

    @model_validator(mode="after")
    def _sums_to_one(self):
        total = self.train + self.val + self.test
        if not math.isclose(total, 1.0, abs_tol=1e-6):
            raise ValueError(f"train + val + test must be 1.0, got {total:g}")
        return self


class DataConfig(_Section):
    # A built-in set name (see rayfit.data.builtin), a .csv / .parquet / .npz path, or a folder of
    # one image subfolder per class.
    source: str = "synthetic"
    # target column; built-in sets know their own. With task: clustering, an optional label column
    # that judges the clusters (adjusted Rand index, mutual information) and is never a feature.
    target: Optional[str] = None
    # auto: classification or regression, inferred from the target; clustering: no target to predict
    # (the `clustering` section says what is searched)
    task: Literal["auto", "classification", "regression", "clustering"] = "auto"
    split: SplitConfig = SplitConfig()
    # A table of test rows of the user's own (a .csv / .parquet path; `rayfit run --test`): every
    # row of `source` then trains or validates (split.val of them validate, split.test is not used),
    # and every model is scored on these rows, which nothing learns from. Tables prepared on the
    # driver only.
    test: Optional[str] = None
    stratify: bool = True  # keep class proportions in every split (classification)
    # drop exact duplicate rows. auto: keep them (how often a row occurs is part of what the table
    # says; the report counts them); true drops them on the driver (on the cluster, an error).
    drop_duplicates: Union[Literal["auto"], bool] = "auto"
    drop_constant: bool = True  # drop columns with a single value
    drop_id_like: bool = True  # drop columns that identify rows (unique integers / strings)
    categorical_encoding: Literal["auto", "onehot", "ordinal"] = "auto"  # auto: one-hot up to max_onehot_categories
    # How numeric features are scaled for every model: standard (mean 0, variance 1); quantile (each
    # column's training quantiles mapped onto a normal distribution: skewed columns and outliers
    # spread out; tables prepared on the driver only); auto: quantile for the columns whose skewness
    # on train is beyond 0.99, standard for the others (on the cluster: standard). A run saved
    # before this key existed was standard (SAVED_BEFORE_THE_KEY).
    numeric_scaling: Literal["standard", "quantile", "auto"] = "auto"
    max_onehot_categories: int = Field(20, ge=2)
    class_weight: Literal["auto", "balanced", "none"] = "auto"  # auto: balanced when classes differ > 1.5x
    # What one example is. auto: tabular for tables, image for 4-D arrays and image folders,
    # sequence for 3-D arrays; `digits` is tabular unless kind: image.
    kind: Literal["auto", "tabular", "image", "sequence"] = "auto"
    image_size: Optional[tuple[int, int]] = None  # image folders: resize to (height, width); default: the first image's
    window: Optional[int] = Field(None, ge=2)  # time-series CSV (kind: sequence): rows per input window
    horizon: int = Field(1, ge=1)  # time-series CSV: predict the target this many rows after the window
    # Stream the training split to Ray Train workers through Ray Data (each worker reads only its
    # shard, batch by batch) instead of handing every worker the arrays. auto: for Parquet sources.
    streaming: Union[Literal["auto"], bool] = "auto"
    # Where a table is cleaned, split and preprocessed. driver: in the driver's memory (pandas and
    # scikit-learn); cluster: by Ray Data, block by block on the cluster, the driver holding only
    # samples (rayfit/data/on_cluster.py); auto: cluster for a CSV or Parquet source larger than an
    # eighth of the memory available to the driver.
    prepare_on: Literal["auto", "driver", "cluster"] = "auto"
    # prepare_on: cluster: about this many rows of each split come to the driver. The baselines train
    # on the training split's sample, every model is judged on the validation and test samples.
    driver_rows: int = Field(50_000, ge=100)

    @field_validator("source", "test")
    @classmethod
    def _no_credentials(cls, uri: Optional[str], info) -> Optional[str]:
        if uri is not None:
            refuse_credentials(uri, f"data.{info.field_name}")  # a UserError of its own: never echoed
        return uri


class BaselinesConfig(_Section):
    enabled: bool = True
    # The classic-ML models trained side by side as Ray tasks (evaluation/baselines.py): default
    # (the cheap ones that serve the task), all (every one that serves it: kernel SVM and k nearest
    # neighbours too), or a list of names.
    models: Union[Literal["default", "all"], list[str]] = "default"
    cpus_per_model: int = Field(1, ge=1)  # CPUs each baseline's task holds, and the threads it may use
    # XGBoost and LightGBM: above 1, each trains data-parallel as a Ray Train worker group of this many
    # workers (XGBoostTrainer, LightGBMTrainer), each of cpus_per_model CPUs reading its shard of the
    # training split; 1: one Ray task each, like every other baseline
    workers: int = Field(1, ge=1)
    # The baselines with a GPU mode (xgboost, catboost) train on a GPU: auto when the cluster has
    # GPUs; each such task then holds gpus_per_model of one (a fraction shares it)
    gpu: Union[Literal["auto"], bool] = "auto"
    gpus_per_model: float = Field(1.0, gt=0)

    @field_validator("models")
    @classmethod
    def _known(cls, models):
        if isinstance(models, str):
            return models
        unknown = [n for n in models if n not in BASELINE_NAMES]
        if unknown:
            raise ValueError(f"unknown baseline {unknown[0]!r}; choose from {', '.join(BASELINE_NAMES)}")
        return models


class ClusteringConfig(_Section):
    """task: clustering. Each algorithm is searched over its settings, every candidate one Ray task;
    the best of each algorithm, and the run's best, by `metric`."""

    algorithms: list[Literal["kmeans", "agglomerative", "dbscan"]] = ["kmeans", "agglomerative", "dbscan"]
    k: tuple[int, int] = (2, 10)  # the numbers of clusters searched, both ends included (kmeans, agglomerative)
    linkage: Literal["ward", "average", "complete", "single"] = "ward"  # agglomerative
    min_samples: int = Field(5, ge=2)  # DBSCAN: neighbours that make a core point; eps is searched
    # the candidates' measure: silhouette and calinski_harabasz higher, davies_bouldin lower is better
    metric: str = metrics.default_metric(metrics.CLUSTERING)
    embeddings: list[Literal["pca", "tsne", "umap"]] = ["pca", "tsne", "umap"]  # 2-D views in the report
    # rows beyond this are sampled (same rows for all): t-SNE and UMAP embed them, silhouette scores
    # them, agglomerative clustering (quadratic memory) is skipped above max_agglomerative_rows
    sample_rows: int = Field(3000, ge=100)
    max_agglomerative_rows: int = Field(20000, ge=100)
    cpus_per_model: int = Field(1, ge=1)  # CPUs each candidate's Ray task holds, and its threads

    @field_validator("k")
    @classmethod
    def _range(cls, k):
        low, high = k
        if low < 2 or high < low:
            raise ValueError(f"k: [{low}, {high}] is not a range of at least 2 clusters (low >= 2, high >= low)")
        return k

    @field_validator("algorithms", "embeddings")
    @classmethod
    def _some(cls, names):
        if len(set(names)) != len(names):
            raise ValueError("names one twice")
        return names

    @field_validator("metric")
    @classmethod
    def _shape_metric(cls, metric: str) -> str:
        choices = metrics.names(metrics.CLUSTERING, choosing=True)
        if metric not in choices:
            raise ValueError(f"{metric!r} is not a clustering metric; choose from {', '.join(choices)}")
        return metric


class CNNSettings(_Section):
    channels: list[int] = [16, 32]  # filters per conv block (conv -> norm -> activation -> 2x2 max-pool)
    kernel_size: int = Field(3, ge=1)


class RNNSettings(_Section):
    cell: Literal["lstm", "gru"] = "lstm"
    hidden_size: int = Field(64, ge=1)
    layers: int = Field(1, ge=1)
    bidirectional: bool = False


class TransformerSettings(_Section):
    d_model: int = Field(32, ge=4)  # token embedding width; must divide by heads
    heads: int = Field(4, ge=1)
    layers: int = Field(2, ge=1)
    ff_dim: int = Field(64, ge=1)  # width of each encoder block's feed-forward layer

    @model_validator(mode="after")
    def _divisible(self):
        if self.d_model % self.heads:
            raise ValueError(f"d_model ({self.d_model}) must be divisible by heads ({self.heads})")
        return self


class NeuralConfig(_Section):
    """What every neural model of a framework shares: the network, the optimisation, the workers."""

    FRAMEWORK: ClassVar[str] = ""

    enabled: bool = True
    model: Union[str, list[str]] = "mlp"  # registered network, or a list: each is trained (rayfit/frameworks.py)
    # -- architecture
    hidden_sizes: list[int] = [64, 32]  # MLP layers, and the dense head of cnn / rnn / transformer
    activation: Literal["relu", "gelu", "tanh"] = "relu"
    dropout: float = Field(0.1, ge=0, lt=1)
    norm: Literal["none", "batch", "layer"] = "none"  # normalization after each hidden layer
    cnn: CNNSettings = CNNSettings()
    rnn: RNNSettings = RNNSettings()
    transformer: TransformerSettings = TransformerSettings()
    # -- optimisation
    # An upper bound: early stopping (patience) decides when to stop. At 40, an MLP on a few hundred
    # rows of the diabetes set was still improving at its last epochs (best epoch 39 of 40).
    # auto: follows the training rows (auto_epochs); a number as it is.
    epochs: Union[Literal["auto"], int] = "auto"
    # per worker; the global batch is batch_size * workers. auto: follows the training rows (auto_batch_size)
    batch_size: Union[Literal["auto"], int] = "auto"
    optimizer: Literal["adamw", "adam", "sgd", "rmsprop"] = "adamw"
    lr: float = Field(1e-3, gt=0)
    momentum: float = Field(0.9, ge=0, lt=1)  # sgd and rmsprop
    weight_decay: float = Field(0.0, ge=0)  # L2 penalty (decoupled for adamw)
    l1: float = Field(0.0, ge=0)  # L1 penalty on weights, added to the loss
    grad_clip: Optional[float] = Field(None, gt=0)  # max global gradient norm; None: no clipping
    schedule: Literal["none", "step", "cosine", "plateau"] = "none"  # learning-rate schedule, per epoch
    step_size: int = Field(10, ge=1)  # step: epochs between lr drops
    gamma: float = Field(0.5, gt=0, lt=1)  # step / plateau: lr multiplier at each drop
    warmup_epochs: int = Field(0, ge=0)  # linear warm-up from lr / (warmup_epochs + 1) to lr
    patience: int = Field(6, ge=1)  # epochs without val-loss improvement before stopping
    min_delta: float = Field(1e-4, ge=0)  # smallest val-loss drop that counts as improvement
    restore_best: bool = True  # the final model is the best epoch's, not the last one's
    # -- workers and devices
    workers: int = Field(2, ge=1)  # Ray Train data-parallel workers
    # ray_train: a Ray Train worker group of `workers`; task: one Ray task running the same loop (no
    # worker group to start: seconds, not tens of seconds); auto: task when the whole training is
    # estimated to take less than a worker group costs to pay back (see trainers/launch.py)
    launch: Literal["auto", "ray_train", "task"] = "auto"
    cpus_per_worker: float = Field(1, gt=0)
    gpus_per_worker: float = Field(1, gt=0)  # when training on GPUs
    gpu: Union[Literal["auto"], bool] = "auto"  # auto: use GPUs when the cluster has them
    mixed_precision: Union[Literal["auto"], bool] = "auto"  # auto: on when training on GPUs
    # -- checkpoints and faults
    keep_checkpoints: int = Field(2, ge=1)  # latest checkpoints kept; each also carries the best weights
    # a worker group or a task checkpoints when one more epoch would leave more than this much
    # training unsaved (every epoch when epochs take longer; 0: every epoch), and after the last
    checkpoint_every_s: float = Field(5.0, ge=0)
    max_failures: int = Field(2, ge=0)  # worker-group restarts (from the latest checkpoint) before giving up

    def for_rows(self, train_rows: int) -> "NeuralConfig":
        """These settings with `auto` batch size and epochs made whole numbers for `train_rows`
        training rows (unchanged where they are numbers already)."""
        batch = auto_batch_size(train_rows) if self.batch_size == "auto" else self.batch_size
        epochs = auto_epochs(train_rows, batch) if self.epochs == "auto" else self.epochs
        return self if (batch, epochs) == (self.batch_size, self.epochs) else \
            self.model_copy(update={"batch_size": batch, "epochs": epochs})

    @field_validator("epochs", "batch_size", mode="before")
    @classmethod
    def _auto_or_count(cls, value):
        if value == "auto" or (isinstance(value, int) and not isinstance(value, bool) and value >= 1):
            return value
        raise ValueError(f"must be auto or a whole number of at least 1 (got {value!r})")

    @field_validator("hidden_sizes")
    @classmethod
    def _positive(cls, sizes: list[int]) -> list[int]:
        if not sizes or any(s < 1 for s in sizes):
            raise ValueError("must be a non-empty list of positive layer widths")
        return sizes

    @field_validator("model")
    @classmethod
    def _registered(cls, model):
        from rayfit.frameworks import NETWORKS

        names = [model] if isinstance(model, str) else list(model)
        known = NETWORKS[cls.FRAMEWORK]
        if not names:
            raise ValueError("name at least one network")
        for name in names:
            if name not in known:
                raise ValueError(f"{name!r} is not a {cls.FRAMEWORK} network; choose from {', '.join(known)}")
        return model

    @model_validator(mode="after")
    def _nothing_ignored(self):
        """A setting no network or optimizer of this section would read is a mistake, not a no-op."""
        fields = type(self).model_fields

        def changed(key: str) -> bool:  # set to something else than its default (a saved config sets all)
            return key in self.model_fields_set and getattr(self, key) != fields[key].get_default(call_default_factory=True)

        for section in ("cnn", "rnn", "transformer"):
            if changed(section) and section not in self.models:
                raise ValueError(f"{section}: set, but no network here is a {section} (model: {', '.join(self.models)})")
        if changed("momentum") and self.optimizer in ("adam", "adamw"):
            raise ValueError(f"momentum: {self.optimizer} has none (sgd and rmsprop do)")
        return self

    @property
    def models(self) -> list[str]:
        return [self.model] if isinstance(self.model, str) else list(self.model)


# batch_size and epochs `auto`: a batch that grows with the table (a few hundred rows take 32 at a
# time, tens of thousands 512: an epoch of 30,000 rows at 32 took Keras 20 s), and enough epochs for
# about AUTO_STEPS optimizer steps (early stopping still ends a run sooner), within bounds.
AUTO_BATCH = (32, 512)
AUTO_EPOCHS = (10, 100)
AUTO_STEPS = 4000


def auto_batch_size(train_rows: int) -> int:
    """The power of two nearest train_rows / 100, within AUTO_BATCH."""
    return int(min(max(2 ** round(math.log2(max(train_rows, 1) / 100)), AUTO_BATCH[0]), AUTO_BATCH[1]))


def auto_epochs(train_rows: int, batch_size: int) -> int:
    """Epochs for about AUTO_STEPS steps of `batch_size` rows, within AUTO_EPOCHS."""
    steps_per_epoch = max(1, math.ceil(train_rows / batch_size))
    return int(min(max(math.ceil(AUTO_STEPS / steps_per_epoch), AUTO_EPOCHS[0]), AUTO_EPOCHS[1]))


def resolved_for_rows(exp: "Experiment", train_rows: int) -> tuple["Experiment", list[tuple[str, Any]]]:
    """(the Experiment with its `auto` batch sizes and epochs made numbers for `train_rows`
    training rows, the assignments that did it): what a run trains with and its report shows."""
    assignments = resolve_auto(exp, train_rows)
    return (revise(exp, assignments) if assignments else exp), assignments


def resolve_auto(exp: "Experiment", train_rows: int) -> list[tuple[str, Any]]:
    """The (dotted key, value) assignments that make every framework's `auto` batch size and
    epochs whole numbers for a training split of `train_rows` rows (config.revise applies them)."""
    found = []
    for name in FRAMEWORKS:
        settings, resolved = getattr(exp, name), getattr(exp, name).for_rows(train_rows)
        found += [(f"{name}.{key}", getattr(resolved, key)) for key in ("batch_size", "epochs")
                  if getattr(settings, key) == "auto"]
    return found


class TorchConfig(NeuralConfig):
    FRAMEWORK: ClassVar[str] = "torch"


class KerasConfig(NeuralConfig):
    FRAMEWORK: ClassVar[str] = "keras"


SEARCH_KINDS = ("uniform", "loguniform", "quniform", "randint", "choice", "grid")


class SearchDim(_Section):
    """One hyperparameter's distribution; exactly one key is set."""

    uniform: Optional[tuple[float, float]] = None  # [low, high]
    loguniform: Optional[tuple[float, float]] = None  # [low, high], both > 0
    quniform: Optional[tuple[float, float, float]] = None  # [low, high, q]: uniform, rounded to multiples of q
    randint: Optional[tuple[int, int]] = None  # [low, high): high excluded
    choice: Optional[list[Any]] = None  # one of the values, at random
    grid: Optional[list[Any]] = None  # every value, each in its own trial(s)

    @model_validator(mode="after")
    def _one_kind(self):
        kinds = [k for k in SEARCH_KINDS if getattr(self, k) is not None]
        if len(kinds) != 1:
            raise ValueError(f"give exactly one of {', '.join(SEARCH_KINDS)}")
        kind = kinds[0]
        value = getattr(self, kind)
        if kind in ("choice", "grid"):
            if not value:
                raise ValueError(f"{kind} needs at least one value")
        else:
            low, high = value[0], value[1]
            if not low < high:
                raise ValueError(f"{kind} bounds must be ordered low < high, got [{low}, {high}]")
            if kind == "loguniform" and low <= 0:
                raise ValueError(f"loguniform bounds must be positive, got [{low}, {high}]")
            if kind == "quniform" and not 0 < value[2] <= high - low:
                raise ValueError(f"quniform step q must be in (0, high - low], got {value[2]}")
        return self

    @property
    def kind(self) -> str:
        return next(k for k in SEARCH_KINDS if getattr(self, k) is not None)


TUNABLE = ("hidden_sizes", "activation", "dropout", "norm", "epochs", "batch_size", "optimizer", "lr", "momentum",
           "weight_decay", "l1", "grad_clip", "schedule", "step_size", "gamma", "warmup_epochs", "patience", "min_delta")


def _default_space() -> dict[str, SearchDim]:
    return {
        "lr": SearchDim(loguniform=(1e-4, 3e-2)),
        "hidden_sizes": SearchDim(choice=[[32], [64, 32], [128, 64], [256, 128]]),
        "dropout": SearchDim(uniform=(0.0, 0.5)),
        "batch_size": SearchDim(choice=[16, 32, 64]),
    }


# Baselines a search can tune, with their tunable hyperparameters and default space (the registry's).
BASELINE_SPACES = {name: {key: SearchDim(**{kind: args for kind, args in dim.items()}) for key, dim in b.space.items()}
                   for name, b in BASELINES.items() if b.tunable}
BASELINE_TUNABLE = {name: b.tunable for name, b in BASELINES.items() if b.tunable}
SEARCHER_NAMES = tuple(SEARCHERS)
TUNE_SCHEDULERS = tuple(SCHEDULERS)


class TuneSettings(_Section):
    enabled: bool = True
    # What is searched: the first torch.model / keras.model network, or a baseline (trained in steps of trees so
    # a scheduler can stop it early: gradient_boosting, random_forest; linear is a single step).
    model: Literal[(*FRAMEWORKS, *BASELINE_SPACES)] = next(iter(FRAMEWORKS))
    num_samples: int = Field(8, ge=1)  # trials (with grid dimensions: repeats of the whole grid)
    searcher: Literal[SEARCHER_NAMES] = "random"  # how configurations are proposed; optuna is TPE
    scheduler: Literal[TUNE_SCHEDULERS] = "asha"  # which trials stop early (asha, hyperband, median) or evolve (pbt)
    max_t: int = Field(20, ge=1)  # epochs a trial may run at most
    grace_period: int = Field(2, ge=1)  # epochs every trial runs before it may be stopped
    reduction_factor: float = Field(3, gt=1)  # asha / hyperband: keep 1 / reduction_factor at each rung
    perturbation_interval: int = Field(4, ge=1)  # pbt / pb2: epochs between exploit-and-explore steps
    quantile_fraction: float = Field(0.25, gt=0, le=0.5)  # pbt / pb2: the bottom share that clones the top share
    metric: str = metrics.default_metric(metrics.TRIAL)  # the validation metric trials are compared by
    mode: Literal["min", "max"] = "min"
    max_concurrent_trials: Optional[int] = Field(None, ge=1)  # None: as many as the resources allow
    cpus_per_trial: float = Field(1, gt=0)
    gpus_per_trial: float = Field(0, ge=0)  # fractions pack trials: 0.25 runs four on one GPU
    time_budget_s: Optional[float] = Field(None, gt=0)  # end the search (gracefully) after this long
    # inline: a trial trains the network itself (no worker group: cheap for small models);
    # distributed: a trial launches a Ray Train run of workers_per_trial workers sharing the trial's
    # cpus_per_trial / gpus_per_trial; auto: distributed for streamed data, more than one GPU per
    # trial or a trial too big to train alone, inline otherwise. Baselines always train inline.
    trial_mode: Literal["auto", "inline", "distributed"] = "auto"
    workers_per_trial: int = Field(2, ge=1)
    space: dict[str, SearchDim] = Field(default_factory=_default_space)

    @model_validator(mode="after")
    def _tunable(self):
        if self.model in BASELINE_SPACES and "space" not in self.model_fields_set:
            self.__dict__["space"] = dict(BASELINE_SPACES[self.model])  # the baseline's own default space
        tunable = BASELINE_TUNABLE.get(self.model, TUNABLE)
        for name in self.space:
            if name not in tunable:
                raise ValueError(f"space: cannot tune {name!r} of {self.model}; tunable: {', '.join(tunable)}")
        return self

    @field_validator("metric")
    @classmethod
    def _known_metric(cls, metric: str) -> str:
        if metric not in metrics.names(metrics.TRIAL):
            raise ValueError(f"{metric!r} is not reported by trials; choose from {', '.join(metrics.names(metrics.TRIAL))}")
        return metric

    @model_validator(mode="after")
    def _consistent(self):
        expected = metrics.get(self.metric).mode
        if self.mode != expected:
            raise ValueError(f"mode for {self.metric} is {expected}, not {self.mode}")
        if self.grace_period > self.max_t:
            raise ValueError(f"grace_period ({self.grace_period}) must not exceed max_t ({self.max_t})")
        if self.scheduler in EXPLOITING and self.perturbation_interval >= self.max_t:
            raise ValueError(f"perturbation_interval ({self.perturbation_interval}) must be below max_t "
                             f"({self.max_t}) for {self.scheduler} to exploit anything")
        grid = [name for name, dim in self.space.items() if dim.kind == "grid"]
        if self.searcher not in ("random", "grid") and grid:
            raise ValueError(f"grid dimensions ({', '.join(grid)}) need searcher random or grid, not {self.searcher}")
        if self.searcher == "grid" and len(grid) != len(self.space):
            raise ValueError("searcher grid needs every space dimension to be a grid: [...]")
        if self.trial_mode == "distributed" and self.model not in FRAMEWORKS:
            raise ValueError(f"trial_mode distributed trains networks ({', '.join(FRAMEWORKS)}); "
                             f"{self.model} trains inline")
        if self.trial_mode == "distributed" and self.cpus_per_trial / self.workers_per_trial < 0.1:
            raise ValueError(f"cpus_per_trial ({self.cpus_per_trial:g}) leaves under 0.1 CPU for each of "
                             f"a distributed trial's {self.workers_per_trial} workers")
        if self.trial_mode == "distributed" and self.scheduler in EXPLOITING:
            raise ValueError(f"{self.scheduler} restarts trials from Tune checkpoints, which a distributed "
                             "trial keeps in its Ray Train run; use trial_mode: inline")
        if self.scheduler == "pb2" and any(dim.kind not in ("uniform", "loguniform", "quniform")
                                           for dim in self.space.values()):
            raise ValueError("pb2 searches continuous dimensions only (uniform, loguniform, quniform)")
        return self


class RayConfig(_Section):
    # None: RAY_ADDRESS if set, else the cluster a `ray start` on this machine runs if it answers, else
    # a private Ray; "local": always a private Ray; "auto", host:port or ray://host:port: join that cluster.
    address: Optional[str] = None
    num_cpus: Optional[int] = Field(None, ge=1)  # local Ray only; None: all cores
    # Local Ray only: logical GPUs to declare. Ray schedules GPU requests against them (CUDA or not):
    # a CPU machine can rehearse a GPU cluster's placement. None: the GPUs Ray detects.
    num_gpus: Optional[int] = Field(None, ge=0)
    # Local Ray only: start Ray's dashboard (http://127.0.0.1:8265) with it. Off by default: it costs
    # about 2 s at start and a share of the cores throughout (on 2 cores about 5 s of a small
    # table's run); a cluster from `ray start`, which rayfit joins, has its own.
    dashboard: bool = False
    # Joining an address (ray.address, --address, RAY_ADDRESS): give up after this many seconds.
    connect_timeout_s: float = Field(15, gt=0)
    # The watchdog: a stage that has reported no progress for this long while Ray holds resource
    # demands it cannot place is stopped with an error naming what it waits for.
    stall_timeout_s: float = Field(300, gt=0)


class EvaluationConfig(_Section):
    # How the best model is chosen. auto: K-fold cross-validation (K=5, stratified) over train +
    # validation for tables of at most 10,000 such rows, the validation split above; K: always K
    # folds; none: the validation split. Classic-ML models are cross-validated and refitted on
    # train + validation; networks join the folds as cv_networks says (evaluation/selection.py).
    cv: Union[Literal["auto", "none"], int] = "auto"
    # What a cross-validated classic-ML model is tested and exported as: train+val, refitted on all
    # of train + validation; bagged, its K fold models averaged (no refit: they are the model).
    refit: Literal["train+val", "bagged"] = "train+val"
    # A weighted ensemble of at most this many cross-validated models (0 or 1: none), chosen by greedy
    # ensemble selection over their out-of-fold outputs, scored on the same folds and chosen like any
    # model when it wins.
    ensemble: int = Field(8, ge=0)
    # Networks in the same folds (tuned ones with their chosen hyperparameters): each trains on every
    # fold's rows, one Ray task per fold, and is chosen on the rows the fold holds out rather than on
    # the validation split it early-stopped (or was tuned) on. auto: when folds x its own measured
    # training time fits in cv_budget_s and it is within reach of the leader on validation (it
    # scores at or above the best model on at least cv_reach of 200 resamples of the validation
    # rows; one out of reach is never chosen over it); the report says which networks were chosen how.
    cv_networks: Union[Literal["auto"], bool] = "auto"
    cv_budget_s: float = Field(300.0, gt=0)
    cv_reach: float = Field(0.1, ge=0, le=1)

    @field_validator("cv")
    @classmethod
    def _folds(cls, cv):
        if isinstance(cv, int) and cv < 2:
            raise ValueError(f"cross-validation needs at least 2 folds, got {cv}")
        return cv


class ReportConfig(_Section):
    primary_metric: str = "auto"  # auto: accuracy (classification) / rmse (regression); chosen on validation
    importance_repeats: int = Field(5, ge=1)  # permutation-importance shuffles per feature
    # permutation importance for the best models the report details, best first (the others: native only)
    importance_models: int = Field(3, ge=0)
    importance_rows: int = Field(2000, ge=50)  # test rows it is measured on (a seeded sample beyond)


class ExportConfig(_Section):
    # best: model/ holds the chosen model; all: every other model too, each a complete model
    # directory under model/models/<name>/ (`rayfit predict RUN --model NAME`, `rayfit serve --model`)
    models: Literal["best", "all"] = "best"


class Experiment(_Section):
    name: str = "quickstart"  # names the run directory: a plain name, never a path
    seed: int = 0  # one seed for the split, the models and the search
    data: DataConfig = DataConfig()
    baselines: BaselinesConfig = BaselinesConfig()
    torch: TorchConfig = TorchConfig()
    keras: KerasConfig = KerasConfig()
    tune: TuneSettings = TuneSettings()
    searches: list[TuneSettings] = []  # more searches beside `tune`, e.g. one over gradient_boosting
    ray: RayConfig = RayConfig()
    evaluation: EvaluationConfig = EvaluationConfig()
    report: ReportConfig = ReportConfig()
    export: ExportConfig = ExportConfig()
    clustering: ClusteringConfig = ClusteringConfig()  # task: clustering

    @field_validator("storage", "tracking_uri")
    @classmethod
    def _no_credentials(cls, uri: Optional[str], info) -> Optional[str]:
        if uri is not None:
            refuse_credentials(uri, info.field_name)  # a UserError of its own: the URI is never echoed
        return uri

    @field_validator("name")
    @classmethod
    def _plain_name(cls, name: str) -> str:
        # It becomes a directory name under the storage root: a path in it would write elsewhere.
        if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]{0,99}", name) or ".." in name:
            raise ValueError(f"{name!r} is not a plain name: use letters, digits, '.', '_' and '-' "
                             "(at most 100, no '..', no path)")
        return name

    @model_validator(mode="after")
    def _one_search_per_model(self):
        """Each tuned model is one search's (its name, its tune/ directory, its report section)."""
        seen: dict[str, str] = {}
        keyed = [("tune", self.tune)] + [(f"searches.{i}", s) for i, s in enumerate(self.searches)]
        for key, search in keyed:
            if not search.enabled:
                continue
            if search.model in seen:
                raise ValueError(f"{key}: a second search of {search.model!r} ({seen[search.model]} searches it "
                                 "already); one search per model")
            seen[search.model] = key
        return self

    # mlflow: the finished run logged to MLflow (evaluation/tracking.py): one parent run, a child per
    # model and per trial. tracking_uri: an MLflow server or database URI; default a SQLite store
    # under the run directory (RUN/mlflow/mlflow.db). TensorBoard event files are written either way.
    tracking: Optional[Literal["mlflow"]] = None
    tracking_uri: Optional[str] = None

    # Where runs go: a directory (default runs/), a shared file system path on a cluster, or an
    # object-store URI (s3://bucket/prefix); each run is <storage>/<name>-<time> unless --out says.
    storage: Optional[str] = None
    # A hard limit in seconds for the whole command, from its start to its exit, the report
    # included (`rayfit run --time-limit`; rayfit/budget.py): the training stages share it, and stop
    # at their share with what they have. `rayfit resume` continues with the time left.
    time_limit: Optional[float] = Field(None, gt=0)


# ----------------------------------------------------------------------------------------------
# Loading: YAML + --set -> Experiment, with errors that name the key path.


def read_yaml(path: Union[str, Path]) -> dict:
    path = Path(path)
    if not path.is_file():
        raise UserError(f"config file not found: {path}")
    try:
        raw = yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" (line {mark.line + 1}, column {mark.column + 1})" if mark else ""
        problem = getattr(exc, "problem", None) or "invalid YAML"
        raise UserError(f"{path}: malformed YAML{where}: {problem}") from None
    if raw is None:
        return {}
    if not isinstance(raw, dict):
        raise UserError(f"{path}: the top level must be a mapping of keys, got {type(raw).__name__}")
    return raw


def parse_override(assignment: str) -> tuple[str, Any]:
    """`key.path=value` -> (key path, value); the value is parsed as YAML (numbers, lists, booleans)."""
    key, sep, text = assignment.partition("=")
    if not sep or not key.strip():
        raise UserError(f"--set expects key.path=value, got {assignment!r}")
    try:
        value = yaml.safe_load(text) if text.strip() else None
    except yaml.YAMLError:
        value = text
    return key.strip(), value


def set_key(raw: dict, key: str, value: Any) -> None:
    """Set one dotted key path (`torch.epochs`) in a raw config, in place."""
    parts = key.split(".")
    node = raw
    for i, part in enumerate(parts[:-1]):
        child = node.setdefault(part, {})
        if not isinstance(child, dict):
            raise UserError(f"--set {key}: {'.'.join(parts[:i + 1])} is not a section")
        node = child
    node[parts[-1]] = value


def apply_override(raw: dict, assignment: str) -> None:
    """Apply one `key.path=value` in place."""
    set_key(raw, *parse_override(assignment))


def _valid_keys(model: type[BaseModel], loc: tuple) -> list[str]:
    """The keys allowed at a location of the schema, to suggest on an unknown key."""
    for part in loc[:-1]:
        field = model.model_fields.get(str(part)) if isinstance(part, str) else None
        annotation = getattr(field, "annotation", None)
        if isinstance(annotation, type) and issubclass(annotation, BaseModel):
            model = annotation
        else:
            return []
    return list(model.model_fields)


def _describe(error: dict) -> str:
    loc = tuple(p for p in error["loc"] if not (isinstance(p, str) and p.startswith("function-")))
    path = ".".join(str(p) for p in loc) or "config"
    if error["type"] == "extra_forbidden":
        valid = _valid_keys(Experiment, loc)
        hint = f" (valid keys: {', '.join(valid)})" if valid else ""
        return f"{path}: unknown key{hint}"
    message = error["msg"].removeprefix("Value error, ")
    if error["type"] not in ("value_error", "assertion_error", "missing"):
        message = f"{message} (got {error.get('input')!r})"
    if not loc:  # a check across sections names its own keys
        return message
    return f"{path}: {message}"


def validate(raw: dict, origin: str = "config") -> Experiment:
    try:
        return Experiment.model_validate(raw)
    except ValidationError as exc:
        first = exc.errors()[0]
        more = len(exc.errors()) - 1
        suffix = f" (and {more} more problem{'s' if more > 1 else ''})" if more else ""
        raise UserError(f"{origin}: {_describe(first)}{suffix}") from None


# Keys added since runs were first saved, each with the value every run saved before it used: a
# run's config.yaml without one is read with that value (`load_saved_experiment`), so that `resume`
# and `report` prepare the data as the run did, not by today's default.
SAVED_BEFORE_THE_KEY = {"data.numeric_scaling": "standard"}


def load_saved_experiment(path: Union[str, Path], assignments: Iterable[tuple[str, Any]] = ()) -> Experiment:
    """A run's own config.yaml as the run read it, then `assignments`."""
    raw = read_yaml(path)

    def saved(key: str) -> bool:
        section = raw
        for part in key.split("."):
            if not isinstance(section, dict) or part not in section:
                return False
            section = section[part]
        return True

    before = [(key, value) for key, value in SAVED_BEFORE_THE_KEY.items() if not saved(key)]
    return build_experiment(str(path), assignments=[*before, *assignments])


def load_experiment(
    config_path: Optional[str] = None,
    data: Optional[str] = None,
    target: Optional[str] = None,
    task: Optional[str] = None,
    overrides: tuple[str, ...] = (),
    assignments: Iterable[tuple[str, Any]] = (),
) -> Experiment:
    """The CLI's inputs -> one validated Experiment: `--set` overrides, then `assignments` (the
    flags that name one key, such as --address and --storage)."""
    return build_experiment(config_path, data, target, task, [*map(parse_override, overrides), *assignments])


def revise(exp: Experiment, assignments: Iterable[tuple[str, Any]]) -> Experiment:
    """A new Experiment: `exp` with (dotted key, value) assignments, validated as a whole again.
    An Experiment is never changed once validated; what a later step decides makes a revised one."""
    return build_experiment(exp, assignments=assignments)


def build_experiment(
    config: Union[None, str, Path, dict, "Experiment"] = None,
    data: Optional[str] = None,
    target: Optional[str] = None,
    task: Optional[str] = None,
    assignments: Iterable[tuple[str, Any]] = (),
) -> Experiment:
    """One validated Experiment from a config (a YAML path, a dict or an Experiment), the data
    source, target and task that replace the config's, and (dotted key, value) overrides applied
    last: what `rayfit run` and `rayfit.run` share."""
    if isinstance(config, Experiment):
        raw, origin, named = config.model_dump(mode="json"), "config", True
    elif isinstance(config, dict):
        import copy

        raw, origin, named = copy.deepcopy(config), "config", False
    elif config is not None:
        raw, origin, named = read_yaml(config), str(config), False
    else:
        raw, origin, named = {}, "config", False
    if data is not None:
        raw.setdefault("data", {})
        if not isinstance(raw["data"], dict):
            raise UserError(f"{origin}: data: must be a section")
        raw["data"]["source"] = data
        if target is None and config is None and not _is_builtin(data) and task != "clustering":
            if not Path(data).exists() and "://" not in data:  # a typo says so before anything else
                raise UserError(f"data file not found: {data} (and not a built-in set)")
            raise UserError("--target is required with --data (name the column to predict)")
        if "name" not in raw:
            raw["name"] = name_from_file(data) if not _is_builtin(data) else data
    if target is not None:
        raw.setdefault("data", {})["target"] = target
    if task is not None:
        raw.setdefault("data", {})["task"] = task
    if isinstance(config, (str, Path)) and not named and "name" not in raw:
        raw["name"] = name_from_file(config)
    for key, value in assignments:
        set_key(raw, key, value)
    return validate(raw, origin)


def name_from_file(path: str | Path) -> str:
    """A plain run name from a file's stem, as people name files ('sales 2024.csv', 'penguins(1).csv',
    'données.csv'): accents folded to ASCII, every other run of characters a plain name refuses turned
    into one '-'. Only a name rayfit derives is mended; a name the user typed is validated as typed."""
    import unicodedata

    stem = PurePosixPath(str(path).rstrip("/")).stem  # a URI's last part too (s3://bucket/sales 2024.csv)
    ascii_stem = unicodedata.normalize("NFKD", stem).encode("ascii", "ignore").decode()
    name = re.sub(r"\.{2,}", ".", re.sub(r"[^A-Za-z0-9._-]+", "-", ascii_stem)).strip("._-")[:100].rstrip("._-")
    return name or "run"


def _is_builtin(source: str) -> bool:
    from rayfit.data.builtin import BUILTIN, BUILTIN_ARRAYS

    return source in BUILTIN or source in BUILTIN_ARRAYS


def to_yaml(exp: Experiment) -> str:
    return yaml.safe_dump(exp.model_dump(mode="json", exclude_none=False), sort_keys=False)
