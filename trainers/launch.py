"""Train a neural model with Ray Train (a worker group) or in one Ray task, and return it as a ArrayModel."""
from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

from rayfit.cluster.launch import Handle, start
from rayfit.cluster.ledger import stage_key
from rayfit.cluster.plan import WorkerPlan
from rayfit.cluster.storage import Location
from rayfit.data.streaming import read_training_split
from rayfit.evaluation.fitted import ArrayModel
from rayfit import frameworks as registry
from rayfit.trainers.contexts import train_task, train_worker
from rayfit.trainers.core import LoopConfig, read_history
from rayfit.trainers.device import read_runtime
from rayfit.trainers.remote_network import held_network, network_from_checkpoint


@dataclass
class TrainingData:
    """What every training loop receives: arrays in the object store and the task's shape."""

    ref: Any  # ObjectRef of {"X_train", "y_train", "X_val", "y_val"}
    task: str
    n_outputs: int  # classes for multi-class; 1 for binary (one logit) and regression
    class_weights: Optional[list[float]]
    seed: int
    train_path: Optional[str] = None  # Parquet of the training split: Ray Train workers stream their shards
    val_ref: Any = None  # with train_path: ObjectRef of {"X_val", "y_val"} only, so workers never get X_train
    train_rows: int = 0  # the training split's size and one row's shape: what a trial's cost is estimated from
    input_shape: tuple = ()
    target_scale: Optional[tuple] = None  # regression: (mean, std) the networks standardize the target by
    run_key: str = ""  # the run's ledger (cluster/ledger.py): where each stage's processes ran

@dataclass
class NeuralResult:
    model: ArrayModel
    history: list[dict]  # per-epoch metrics, for the learning curves
    train_time_s: float
    best_epoch: int
    runtime: dict = field(default_factory=dict)  # the checkpoint's runtime.json: device, workers, GPUs, AMP


def make_loop_config(name: str, framework: str, network: str, settings, data: TrainingData, progress=None,
                     threads: int = 1, streaming: bool = False, stage: Optional[str] = None,
                     deadline: Optional[float] = None) -> LoopConfig:
    """The training core's typed configuration for one network on this data; `stage` (default
    `name`) is the run's stage it trains for, whose ledger notes where it ran. `auto` batch size and
    epochs follow the training rows (a run has made them numbers already)."""
    settings = settings.for_rows(data.train_rows)
    return LoopConfig(
        name=name, framework=framework, network=network, settings=settings, task=data.task,
        n_outputs=data.n_outputs, class_weights=data.class_weights, seed=data.seed,
        # a streaming worker reads its shard of the split; it needs only the validation arrays
        data=data.val_ref if streaming else data.ref, streaming=streaming,
        target_scale=data.target_scale, threads=threads, progress=progress,
        ledger=stage_key(data.run_key, stage or name), deadline=deadline)


def worker_group_trainer(config: LoopConfig, plan: WorkerPlan, run_config, datasets=None, backend=None):
    """A Ray Train trainer of the config's framework whose every worker runs the training core.
    backend: trainer_backend()'s answer where the caller already has it."""
    import ray.train

    trainer_cls = registry.framework(config.framework).load("trainer")
    return trainer_cls(
        train_worker,
        datasets=datasets,
        train_loop_config={"config": config},
        scaling_config=ray.train.ScalingConfig(num_workers=plan.workers, use_gpu=plan.use_gpu,
                                               resources_per_worker=plan.resources),
        run_config=run_config,
        **(backend if backend is not None else trainer_backend(config.framework, plan)),
    )


def load_checkpoint(framework: str, directory: Path, name: str, task: str, best: bool) -> tuple:
    """(the network as a ArrayModel, its history, its runtime record) from a checkpoint."""
    fitted = registry.framework(framework).load("fitted").from_checkpoint(Path(directory), name, task, best=best)
    return fitted, read_history(directory), read_runtime(Path(directory))


def fit_neural(framework: str, model: str, settings, data: TrainingData, storage, progress=None,
               plan: Optional[WorkerPlan] = None, deadline: Optional[float] = None) -> NeuralResult:
    """Train one network of `settings` (a NeuralConfig) data-parallel with Ray Train, on the
    workers of `plan` (default: the settings' own, fitted to the cluster now).

    `storage` (a cluster/storage.py Location: a directory or a URI) is where Ray Train keeps the
    run; re-running with the same storage resumes: Ray Train finds the run's latest checkpoint and
    the loop continues from it (after a worker failure, or `rayfit resume`).
    """
    import ray.train

    from rayfit.cluster.orphans import free_orphaned_placement_groups
    from rayfit.cluster.plan import ClusterShape, plan_workers
    from rayfit.cluster.watchdog import current_watchdog

    name = f"{framework}_{model}"
    plan = plan or plan_workers(framework, settings.workers, settings.cpus_per_worker, settings.gpus_per_worker,
                                settings.gpu, ClusterShape.current())
    free_orphaned_placement_groups()  # a dead run's workers must not hold this run's CPUs (cluster/orphans.py)
    # Read before the workers are placed: they may take every CPU, and Ray Data's read tasks would
    # then wait behind them (cluster/plan.py).
    datasets = {"train": read_training_split(data.train_path)} if data.train_path else None
    config = make_loop_config(name, framework, model, settings, data, progress, threads=int(plan.cpus_per_worker),
                              streaming=data.train_path is not None, deadline=deadline)
    trainer = worker_group_trainer(config, plan, datasets=datasets, run_config=ray.train.RunConfig(
        name=name,
        storage_path=Location.of(storage).uri,
        # The latest N checkpoints; each carries the best epoch's weights too.
        checkpoint_config=ray.train.CheckpointConfig(num_to_keep=settings.keep_checkpoints),
        failure_config=ray.train.FailureConfig(max_failures=settings.max_failures),
    ))
    started = time.perf_counter()
    # In a thread the driver watches: a group that can never be placed ends in the watchdog's error.
    result = current_watchdog().run(trainer.fit)
    elapsed = time.perf_counter() - started
    if result.error is not None:
        raise result.error
    with result.checkpoint.as_directory() as directory:
        fitted = network_from_checkpoint(framework, Path(directory), name, data.task, settings.restore_best)
        history, runtime = read_history(directory), read_runtime(Path(directory))
    return NeuralResult(model=fitted, history=history, train_time_s=elapsed, best_epoch=_best_epoch(history),
                        runtime=runtime)


def _best_epoch(history: list[dict]) -> int:
    return min(history, key=lambda m: m["val_loss"])["epoch"] if history else 0


def trainer_backend(framework: str, plan: WorkerPlan) -> dict:
    """Extra trainer arguments for the workers' real devices (the framework's `backend` hook)."""
    spec = registry.framework(framework)
    return spec.load("backend")(plan) if spec.backend else {}


# -- One Ray task instead of a worker group ------------------------------------------------------

class LaunchKind:
    """How a network trains, as an object the way the execution contexts are (trainers/contexts.py):
    `name` is what `launch:` in a config and `launch` in metrics.json say. `start` returns what the
    driver waits on (`result()` -> NeuralResult)."""

    name: str
    concurrent: bool  # True: starts at once, beside the baselines; False: runs later, one at a time

    def describe(self, plan: WorkerPlan, settings) -> str:
        raise NotImplementedError

    def start(self, framework: str, model: str, settings, data: "TrainingData", storage, plan: WorkerPlan,
              progress=None, deadline: Optional[float] = None):
        """`deadline`: the time limit's, on time.time()'s scale (training stops at the epoch that reaches it)."""
        raise NotImplementedError


class OneTask(LaunchKind):
    """One Ray task: one process, no worker group to start; started at once."""

    name, concurrent = "task", True

    def describe(self, plan: WorkerPlan, settings) -> str:
        gpus = f", {plan.gpus_per_worker:g} GPU" if plan.use_gpu else ""
        return f"one Ray task, {plan.resources.get('CPU'):g} CPU{gpus}, batch {settings.batch_size}"

    def start(self, framework, model, settings, data, storage, plan, progress=None, deadline=None) -> "PendingFit":
        return start_in_task(framework, model, settings, data, storage, plan, progress, deadline)


class WorkerGroup(LaunchKind):
    """A Ray Train worker group, data-parallel; groups run one at a time, when waited on."""

    name, concurrent = "ray_train", False

    def describe(self, plan: WorkerPlan, settings) -> str:
        return (f"Ray Train, {plan.describe()}, batch {settings.batch_size} per worker, "
                f"{settings.batch_size * plan.workers} global")

    def start(self, framework, model, settings, data, storage, plan, progress=None, deadline=None) -> "DeferredFit":
        return DeferredFit(lambda: fit_neural(framework, model, settings, data, storage, progress, plan, deadline))


ONE_TASK, WORKER_GROUP = OneTask(), WorkerGroup()
LAUNCH_KINDS = {kind.name: kind for kind in (ONE_TASK, WORKER_GROUP)}


@dataclass(frozen=True)
class DeferredFit:
    """A worker group's training, run when its result is asked for."""

    run: Any

    def result(self) -> NeuralResult:
        return self.run()


@dataclass(frozen=True)
class Launch:
    kind: LaunchKind
    reason: str
    figures: dict = field(default_factory=dict)  # what auto weighed: estimate_s, saving_s, start_cost_s, ...


def estimate_train_seconds(framework: str, model: str, settings, data: TrainingData, resources: dict) -> float:
    """One step, timed on a worker holding `resources`, scaled to the run: steps per epoch x epochs
    (an upper bound: early stopping may end sooner), Keras steps taken as dearer than PyTorch's."""
    from rayfit.trainers.launch_cost import step_seconds_on_worker

    settings = settings.for_rows(data.train_rows)
    steps = math.ceil(data.train_rows / settings.batch_size) * settings.epochs
    step = step_seconds_on_worker(model, settings, data.input_shape, data.n_outputs, resources)
    return step * steps * registry.framework(framework).step_cost_factor


def worth_a_worker_group(framework: str, seconds: float, workers: int, what: str, start_cost=None) -> Launch:
    """The one rule `launch: auto` and `tune.trial_mode: auto` share: n workers cut `seconds` of
    training to 1/n at best; a worker group pays only if that saves more than it costs to start here."""
    from rayfit.trainers.launch_cost import MIN_START_S, worker_group_start_cost

    saving = seconds * (1 - 1 / workers)
    figures = {"estimate_s": round(seconds, 2), "saving_s": round(saving, 2)}
    if saving <= MIN_START_S:
        return Launch(ONE_TASK, f"about {seconds:.1f} s of {what}; {workers} workers would save at most "
                              f"{saving:.1f} s, less than any worker group takes to start", figures)
    cost = (start_cost or worker_group_start_cost)(framework)
    figures.update(start_cost_s=round(cost.seconds, 2), start_cost_source=cost.source)
    if saving > cost.seconds:
        return Launch(WORKER_GROUP, f"about {seconds:.0f} s of {what}; {workers} workers save up to {saving:.0f} s, "
                                   f"more than the {cost.seconds:.1f} s a worker group takes to start here "
                                   f"({cost.source})", figures)
    return Launch(ONE_TASK, f"about {seconds:.1f} s of {what}; {workers} workers would save at most {saving:.1f} s, "
                          f"less than the {cost.seconds:.1f} s a worker group takes to start here ({cost.source})",
                  figures)


def bound_train_seconds(framework: str, model: str, settings, data: TrainingData) -> Optional[float]:
    """An upper bound on the training, known without a probe: every step of every epoch at an MLP's
    bounded step (launch_cost.mlp_step_bound); None for other networks."""
    from rayfit.trainers.core import architecture
    from rayfit.trainers.launch_cost import mlp_step_bound

    settings = settings.for_rows(data.train_rows)
    step = mlp_step_bound(architecture(settings.model_dump(), model, data.input_shape, data.n_outputs),
                          settings.batch_size)
    if step is None:
        return None
    steps = math.ceil(data.train_rows / settings.batch_size) * settings.epochs
    return step * steps * registry.framework(framework).step_cost_factor


def surely_one_task(framework: str, bound: float, workers: int) -> Optional[Launch]:
    """One task, where even the bound on the training could not pay for a worker group: its workers
    would save less than each takes to import the framework (or than the group's cached start-up
    cost). None where only a probe can tell."""
    from rayfit.trainers.launch_cost import MIN_START_S, known_worker_group_start_cost

    saving = bound * (1 - 1 / workers)
    spec = registry.framework(framework)
    figures = {"bound_s": round(bound, 2), "saving_s": round(saving, 2)}
    floor = max(MIN_START_S, spec.start_s)
    if saving <= floor:
        return Launch(ONE_TASK, f"at most about {bound:.1f} s of training alone; {workers} workers would save at most "
                              f"{saving:.1f} s, less than the {floor:g} s each takes to import {spec.label}", figures)
    known = known_worker_group_start_cost(framework)
    if known is not None and saving <= known.seconds:
        return Launch(ONE_TASK, f"at most about {bound:.0f} s of training alone; {workers} workers would save at "
                              f"most {saving:.1f} s, less than the {known.seconds:.1f} s a worker group takes to "
                              f"start here ({known.source})", {**figures, "start_cost_s": round(known.seconds, 2),
                                                              "start_cost_source": known.source})
    return None


def choose_launch(framework: str, model: str, settings, data: TrainingData, plan: WorkerPlan,
                  estimate=estimate_train_seconds, start_cost=None, bound=bound_train_seconds) -> Launch:
    """The configured launch, or auto's choice with the reason the run states. A network the bound
    on its training already sends to one task is not probed: the probe's worker start and import
    would delay every network's start (about 2.5 s on 2 cores)."""
    if settings.launch != "auto":
        return Launch(LAUNCH_KINDS[settings.launch], f"{framework}.launch: {settings.launch}")
    if data.train_path is not None:
        return Launch(WORKER_GROUP, "the training split streams from Parquet to Ray Train workers")
    if plan.workers == 1:
        return Launch(ONE_TASK, "one worker: no worker group to start")
    if plan.use_gpu:
        return Launch(WORKER_GROUP, f"{plan.workers} GPU workers")
    limit = bound(framework, model, settings, data)
    surely = surely_one_task(framework, limit, plan.workers) if limit is not None else None
    if surely is not None:
        return surely
    seconds = estimate(framework, model, settings, data, plan.resources)
    return worth_a_worker_group(framework, seconds, plan.workers, "training alone", start_cost)


@dataclass
class PendingFit:
    """A network training in a Ray task; `result()` waits for it."""

    handle: Handle
    name: str
    framework: str
    task: str
    checkpoint_dir: Location
    restore_best: bool

    def result(self) -> NeuralResult:
        from rayfit.trainers.checkpoints import latest_checkpoint

        outcome = self.handle.result()
        with latest_checkpoint(self.checkpoint_dir).as_directory() as directory:
            history, runtime = read_history(directory), read_runtime(Path(directory))
        # the network stays with the workers that have its framework (trainers/remote_network.py)
        fitted = held_network(self.framework, self.name, self.task, outcome["saved"])
        return NeuralResult(model=fitted, history=history, train_time_s=outcome["seconds"],
                            best_epoch=_best_epoch(history), runtime=runtime)


def start_in_task(framework: str, model: str, settings, data: TrainingData, storage, plan: WorkerPlan,
                  progress=None, deadline: Optional[float] = None) -> PendingFit:
    """Train one network in one Ray task (one process, no worker group) and return at once.

    The task checkpoints every epoch under storage/<name>; when its worker dies Ray retries it (up
    to max_failures times) and it continues from the latest checkpoint, as does `rayfit resume`.
    """
    name = f"{framework}_{model}"
    config = make_loop_config(name, framework, model, settings, data, progress, threads=int(plan.cpus_per_worker),
                              deadline=deadline)
    checkpoint_dir = Location.of(storage).join(name)
    handle = start(train_and_save, config, checkpoint_dir.uri, settings.keep_checkpoints, name=f"rayfit.train[{name}]",
                   cpus=plan.cpus_per_worker, gpus=plan.gpus_per_worker, retries=settings.max_failures, pool=framework)
    return PendingFit(handle, name, framework, data.task, checkpoint_dir, settings.restore_best)


def train_and_save(config: LoopConfig, checkpoint_dir: str, keep: int) -> dict:
    """A network's task: `train_task`'s result, and the trained network as its saved archive
    (made here, where the framework is imported: the driver never loads the network)."""
    from rayfit.trainers.checkpoints import latest_checkpoint
    from rayfit.trainers.remote_network import saved_network

    result = train_task(config, checkpoint_dir, keep)
    with latest_checkpoint(checkpoint_dir).as_directory() as directory:
        saved = saved_network(config.framework, Path(directory), config.name, config.task,
                              config.settings.restore_best)
    return {**result, "saved": saved}
