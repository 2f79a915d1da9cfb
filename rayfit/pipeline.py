"""The driver: prepared data -> every model as Ray work -> one evaluation -> the run directory."""
from __future__ import annotations

import json
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

import numpy as np
import yaml

from rayfit.config import CLASSIFICATION_METRICS, REGRESSION_METRICS, Experiment, load_experiment, to_yaml
from rayfit.data import Prepared, prepare
from rayfit.data.preprocessing import save_preprocessing
from rayfit.data.streaming import should_stream, write_split
from rayfit.errors import UserError
from rayfit.evaluation.fitted import FittedModel, SklearnModel, load_model
from rayfit.evaluation.metrics import default_primary_metric, is_better, score_model
from rayfit.progress import Display
from rayfit.run_dir import LOG_FILE, claim_run_dir, output_to_log, plan_run_dir
from rayfit.run_record import RunRecord


@dataclass
class Trained:
    """One model ready for evaluation."""

    model: FittedModel
    framework: str
    train_time_s: float
    history: list[dict] = field(default_factory=list)
    launch: str = ""  # networks: "ray_train" (a worker group) or "task" (one Ray task)
    # networks: how they ran (launch_reason, launch_figures, workers, device, gpus_per_worker, amp)
    run_info: dict = field(default_factory=dict)


@dataclass
class RunState:
    exp: Experiment
    prepared: Prepared
    run_dir: Path
    display: Display
    record: RunRecord
    trained: dict[str, Trained] = field(default_factory=dict)
    stage_times: dict[str, float] = field(default_factory=dict)
    # tuned model name -> its search's summary (best_params, trials, epochs, wall time); the first
    # one (`tune`) is the report's tuning section and best_params.yaml
    searches: dict[str, dict] = field(default_factory=dict)
    launches: dict[str, object] = field(default_factory=dict)  # network -> its Launch decision

    @property
    def search(self) -> Optional[dict]:
        return next(iter(self.searches.values()), None)
    owns_ray: bool = False  # this run started Ray (and stops it); False when joining a session
    plan: Optional[object] = None  # the RunPlan (cluster/plan.py), made before the first launch


def primary_metric(exp: Experiment, task: str) -> str:
    metric = exp.report.primary_metric
    if metric == "auto":
        return default_primary_metric(task)
    valid = CLASSIFICATION_METRICS if task == "classification" else REGRESSION_METRICS
    if metric not in valid:
        raise UserError(f"report.primary_metric: {metric!r} is not a {task} metric; choose from auto, {', '.join(valid)}")
    return metric


def _prepare(exp: Experiment, display: Display) -> tuple[Prepared, str, float]:
    """Load, clean and split the data; every check that needs no Ray. Bad input raises UserError."""
    display.start("data", f"prepare {exp.data.source}")
    started = time.perf_counter()
    prepared = prepare(exp.data, exp.seed)
    metric = primary_metric(exp, prepared.task)
    _check_networks(exp, prepared.kind)
    if not any([exp.baselines.enabled, exp.torch.enabled, exp.keras.enabled, exp.tune.enabled,
                any(s.enabled for s in exp.searches)]):
        raise UserError("nothing to train: baselines, torch, keras and tune are all disabled")
    display.finish("data", f"{prepared.task}, {prepared.n_rows} rows -> {len(prepared.y_train)}/"
                           f"{len(prepared.y_val)}/{len(prepared.y_test)}, {prepared.n_features} features")
    return prepared, metric, time.perf_counter() - started


def run_experiment(exp: Experiment, out: Optional[str], display: Display, verbose: bool = False) -> Path:
    """Everything `rayfit run` does. Bad input raises UserError before the run directory exists."""
    run_path = plan_run_dir(out, exp.name)
    prepared, metric, prep_time = _prepare(exp, display)
    existed = run_path.exists()
    run_dir = claim_run_dir(run_path)
    (run_dir / "config.yaml").write_text(to_yaml(exp))
    record = RunRecord.create(run_dir, exp.data.source)

    def give_back():
        # The request cannot run on this cluster: give back the directory claimed for it.
        display.detach_log()
        if existed:
            for path in run_dir.iterdir():
                path.unlink()
        else:
            shutil.rmtree(run_dir)

    state = RunState(exp, prepared, run_dir, display, record, stage_times={"data": prep_time})
    _execute(state, metric, verbose, on_preflight_error=give_back)
    return run_dir


def resume_experiment(run_dir: str, display: Display, verbose: bool = False, address: Optional[str] = None) -> Path:
    """`rayfit resume`: finished stages are loaded, unfinished ones run (Ray Train from its checkpoint)."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise UserError(f"run directory not found: {run_dir}")
    record = RunRecord.load(run_dir)
    exp = load_experiment(str(run_dir / "config.yaml"))
    if address:  # `rayfit resume --address`: this time, join (or start) a different Ray
        exp.ray.address = address
    record.check_source(exp.data.source)
    prepared, metric, prep_time = _prepare(exp, display)
    state = RunState(exp, prepared, run_dir.resolve(), display, record, stage_times={"data": prep_time})
    for name, info in record.data["stages"].items():
        if name.startswith("search:"):
            state.searches[name.removeprefix("search:")] = info
        else:
            state.trained[name] = Trained(load_model(record.model_dir(name)), info["framework"],
                                          info["train_time_s"], info.get("history", []), info.get("launch", ""),
                                          info.get("run_info", {}))
    display.say(f"resuming {run_dir}: {len(record.data['stages'])} stage(s) already finished")
    _execute(state, metric, verbose)
    return run_dir


def _execute(state: RunState, metric: str, verbose: bool, on_preflight_error=None) -> None:
    state.display.attach_log(state.run_dir / LOG_FILE)
    with output_to_log(state.run_dir / LOG_FILE, verbose):
        try:
            try:
                _start_ray(state)
            except UserError:
                if on_preflight_error:
                    on_preflight_error()
                raise
            _train_everything(state)
            _evaluate_and_write(state, metric)
            state.record.finish()
        finally:
            if state.owns_ray:
                import ray

                ray.shutdown()  # inside the redirect: Ray flushes its deduplicated log lines here


def _start_ray(state: RunState) -> None:
    import ray

    from rayfit.cluster.session import ensure_ray, find_ray

    exp, display = state.exp, state.display
    with _timed(state, "ray"):
        display.start("ray", find_ray(exp.ray.address).describe(exp.ray.connect_timeout_s))
        session = ensure_ray(exp.ray.address, exp.ray.num_cpus, connect_timeout_s=exp.ray.connect_timeout_s,
                             num_gpus=exp.ray.num_gpus)
        state.owns_ray = session.started
        resources = ray.cluster_resources()
        display.finish("ray", f"{session.summary}, {resources.get('CPU', 0):g} CPUs, {resources.get('GPU', 0):g} GPUs")
    _preflight(exp)


def _train_everything(state: RunState) -> None:
    from rayfit.cluster.watchdog import Watchdog

    # Every progress line is a heartbeat; a stage silent for stall_timeout_s while Ray cannot
    # place its demands ends the run with an error instead of a wait for ever.
    with Watchdog(state.exp.ray.stall_timeout_s) as watchdog:
        state.display.listeners.append(watchdog.beat)
        try:
            _train_stages(state)
        finally:
            state.display.listeners.remove(watchdog.beat)


def _train_stages(state: RunState) -> None:
    import ray

    from rayfit.cluster.plan import ClusterShape
    from rayfit.trainers.launch import TrainingData
    from rayfit.trainers.target_scale import fit_target_scale

    exp, prepared = state.exp, state.prepared
    state.plan = _plan(exp, ClusterShape.current())
    arrays = {"X_train": prepared.X_train, "y_train": prepared.y_train,
              "X_val": prepared.X_val, "y_val": prepared.y_val}
    stream, why = should_stream(exp.data, prepared.kind, prepared.X_train.nbytes + prepared.y_train.nbytes,
                                ray.cluster_resources().get("object_store_memory", 0))
    state.display.say(f"data: {why}")
    data = TrainingData(
        ref=ray.put(arrays),  # once into the object store; every task, worker and trial reads it there
        train_path=str(write_split(prepared.X_train, prepared.y_train, state.run_dir / "data" / "train.parquet"))
        if stream else None,
        val_ref=ray.put({"X_val": prepared.X_val, "y_val": prepared.y_val}) if stream else None,
        task=prepared.task,
        # Binary classification and regression: one output; multi-class: one logit per class.
        n_outputs=prepared.n_classes if prepared.task == "classification" and prepared.n_classes > 2 else 1,
        class_weights=([prepared.class_weights[i] for i in range(prepared.n_classes)]
                       if prepared.class_weights else None),
        seed=exp.seed,
        train_rows=len(prepared.X_train),
        input_shape=tuple(prepared.X_train.shape[1:]),
        target_scale=fit_target_scale(prepared.y_train, prepared.task),
    )
    _train_models(state, data)
    from rayfit.tuning.search import tuned_name

    for settings in ([exp.tune] if exp.tune.enabled else []) + list(exp.searches):
        if settings.enabled and tuned_name(settings) not in state.searches:
            with _timed(state, tuned_name(settings)):
                _run_search(state, settings, data)


def _finished(state: RunState, trained: Trained, name: str) -> None:
    """A model is ready: keep it for evaluation and record it on disk for `rayfit resume`."""
    state.trained[name] = trained
    state.record.record(name, {"framework": trained.framework, "train_time_s": trained.train_time_s,
                               "history": trained.history, "launch": trained.launch,
                               "run_info": trained.run_info}, trained.model)


def _check_networks(exp: Experiment, kind: str) -> None:
    """Each enabled network must take this kind of input (a CNN needs images, an RNN sequences)."""
    from rayfit.trainers.registry import NETWORKS

    for framework in ("torch", "keras"):
        settings = getattr(exp, framework)
        if not settings.enabled:
            continue
        for model in settings.models:
            accepted = NETWORKS[framework][model]
            if kind not in accepted:
                raise UserError(f"{framework}.model: {model!r} takes {' or '.join(accepted)} input, "
                                f"but {exp.data.source} is {kind} data")
    for key, search in [("tune", exp.tune)] + [(f"searches.{i}", s) for i, s in enumerate(exp.searches)]:
        if search.enabled and search.model in NETWORKS:
            network = getattr(exp, search.model).models[0]
            if kind not in NETWORKS[search.model][network]:
                raise UserError(f"{key}: searches {search.model}.model {network!r}, which takes "
                                f"{' or '.join(NETWORKS[search.model][network])} input, not {kind}")


def _preflight(exp: Experiment) -> None:
    """Resource checks for every stage before the first one starts: Ray would wait forever."""
    from rayfit.cluster.plan import ClusterShape, check_trial_request

    cluster = ClusterShape.current()
    _plan(exp, cluster)
    for key, search in [("tune", exp.tune)] + [(f"searches.{i}", s) for i, s in enumerate(exp.searches)]:
        if search.enabled:
            check_trial_request(search.cpus_per_trial, search.gpus_per_trial, cluster, key)


def _plan(exp: Experiment, cluster):
    """Each enabled framework's workers fitted to the cluster (a search plans its trials itself,
    once its trial mode is known)."""
    from rayfit.cluster.plan import RunPlan, plan_workers

    plan = RunPlan(cluster)
    for framework in ("torch", "keras"):
        settings = getattr(exp, framework)
        if settings.enabled:
            plan.networks[framework] = plan_workers(framework, settings.workers, settings.cpus_per_worker,
                                                    settings.gpus_per_worker, settings.gpu, cluster)
    return plan


class _timed:
    def __init__(self, state: RunState, stage: str):
        self.state, self.stage = state, stage

    def __enter__(self):
        self.started = time.perf_counter()

    def __exit__(self, *exc):
        self.state.stage_times[self.stage] = time.perf_counter() - self.started


def _train_models(state: RunState, data) -> None:
    """Baselines and networks, side by side where they can be: baseline tasks and single-task
    networks run concurrently (each takes its CPUs); Ray Train worker groups run one at a time."""
    from rayfit.progress import ProgressHub

    exp, display = state.exp, state.display
    networks = [(framework, model) for framework in ("torch", "keras") if getattr(exp, framework).enabled
                for model in getattr(exp, framework).models if f"{framework}_{model}" not in state.trained]
    hub = ProgressHub.remote()  # every network's epochs, tagged with its name
    with display.follow(hub):
        started = time.perf_counter()
        baselines = _start_baselines(state, data) if exp.baselines.enabled else {}
        in_tasks, in_groups = [], []
        for framework, model in networks:
            pending = _start_network(state, framework, model, data, hub)
            (in_tasks if pending is not None else in_groups).append((framework, model, pending))
        _collect_baselines(state, baselines)
        state.stage_times["baselines"] = time.perf_counter() - started
        for framework, model, _ in in_groups:
            _run_worker_group(state, framework, model, data, hub)
        for framework, model, pending in in_tasks:
            result = pending.result()
            _network_finished(state, framework, pending.name, result, "task")
            state.stage_times[pending.name] = result.train_time_s


def _start_network(state: RunState, framework: str, model: str, data, hub):
    """Decide how a network trains; a single task starts now (returned), a worker group later (None)."""
    from rayfit.trainers.launch import choose_launch, start_in_task

    settings, display = getattr(state.exp, framework), state.display
    name = f"{framework}_{model}"
    plan = state.plan.networks[framework]
    if plan.note:
        display.say(f"{name}: {plan.note}")
    launch = choose_launch(framework, model, settings, data, plan)
    state.launches[name] = launch
    if launch.kind == "ray_train":
        display.say(f"{name}: Ray Train, {plan.describe()} ({launch.reason})")
        return None
    display.start(name, f"{name} (one task)", total=settings.epochs)
    display.say(f"{name}: one Ray task, {plan.resources.get('CPU'):g} CPU"
                f"{f', {plan.gpus_per_worker:g} GPU' if plan.use_gpu else ''}, batch {settings.batch_size} "
                f"({launch.reason})")
    return start_in_task(framework, model, settings, data, state.run_dir / "checkpoints", plan, progress=hub)


def _run_worker_group(state: RunState, framework: str, model: str, data, hub) -> None:
    from rayfit.trainers.launch import fit_neural

    settings, display = getattr(state.exp, framework), state.display
    name = f"{framework}_{model}"
    plan = state.plan.networks[framework]
    display.start(name, f"{name} x{plan.workers}", total=settings.epochs)
    display.say(f"{name}: batch {settings.batch_size} per worker, {settings.batch_size * plan.workers} global")
    with _timed(state, name):
        result = fit_neural(framework, model, settings, data, state.run_dir / "checkpoints", progress=hub, plan=plan)
    _network_finished(state, framework, name, result, "ray_train")


def _network_finished(state: RunState, framework: str, name: str, result, launch: str) -> None:
    decision = state.launches.get(name)
    run_info = {**result.runtime, "launch_reason": decision.reason if decision else "",
                "launch_figures": decision.figures if decision else {}}
    _finished(state, Trained(result.model, framework, result.train_time_s, result.history, launch, run_info), name)
    state.display.finish(name, f"{len(result.history)} epochs, best epoch {result.best_epoch}, "
                               f"val_loss {min((h['val_loss'] for h in result.history), default=float('nan')):.4f}")


def _start_baselines(state: RunState, data) -> dict:
    """Submit every unfinished baseline as a Ray task: ObjectRef -> name."""
    import ray

    exp, prepared, display = state.exp, state.prepared, state.display
    names = [name for name in exp.baselines.models if name not in state.trained]
    if names:
        display.start("baselines", "scikit-learn baselines", total=len(names))
    fit = ray.remote(num_cpus=1)(_fit_baseline_task)
    cw = prepared.class_weights if prepared.task == "classification" else None
    return {fit.remote(name, prepared.task, cw, exp.seed, data.ref): name for name in names}


def _collect_baselines(state: RunState, pending: dict) -> None:
    import ray

    from rayfit.cluster.watchdog import current_watchdog

    prepared, display = state.prepared, state.display
    total, done = len(pending), 0
    while pending:
        ready = current_watchdog().wait(list(pending))
        name = pending.pop(ready[0])
        estimator, seconds = ray.get(ready[0])
        _finished(state, Trained(SklearnModel(name, prepared.task, estimator, prepared.n_classes), "sklearn", seconds), name)
        done += 1
        display.advance("baselines", done, total, f"{name} {seconds:.1f}s")
    if total:
        display.finish("baselines", ", ".join(n for n in state.exp.baselines.models))


def _fit_baseline_task(name, task, class_weight, seed, arrays):
    from rayfit.evaluation.baselines import fit_baseline

    return fit_baseline(name, task, class_weight, seed, arrays["X_train"], arrays["y_train"])


def _run_search(state: RunState, settings, data) -> None:
    """One Tune search; its tuned model joins the evaluation, its summary the report."""
    from rayfit.tuning.search import run_search, tuned_name

    exp, display = state.exp, state.display
    name = tuned_name(settings)
    display.start(name, f"tune {settings.model} ({settings.searcher}, {settings.scheduler})", total=settings.num_samples)

    def on_event(event):
        info = f"trial {event['trial']}" + (f" epoch {event['epoch']}" if event.get("epoch") else "")
        display.advance(name, event["done"], settings.num_samples, info, echo=event.get("finished", False))

    base = exp.keras if settings.model == "keras" else exp.torch
    search = run_search(settings, base, data, state.run_dir / "tune", on_event, state.prepared.n_classes)
    framework = settings.model if settings.model in ("torch", "keras") else "sklearn"
    run_info = {**search.runtime, "launch_reason": f"tune trials: {search.trial_mode} ({search.trial_mode_reason})"}
    _finished(state, Trained(search.model, framework, search.wall_time_s, search.history,
                             "", run_info if search.runtime else {}), name)
    summary = {"model": settings.model, "searcher": settings.searcher, "scheduler": settings.scheduler,
               "best_params": search.best_params, "trials": search.trials,
               "epochs_trained": search.epochs_trained, "epochs_budget": search.epochs_budget,
               "wall_time_s": search.wall_time_s, "trial_mode": search.trial_mode,
               "trial_mode_reason": search.trial_mode_reason, "plan": search.plan,
               "trial_mode_figures": search.trial_mode_figures}
    state.searches[name] = summary
    state.record.record(f"search:{name}", summary)
    display.finish(name, f"{len(search.trials)} trials, {search.epochs_trained}/{search.epochs_budget} epochs, "
                         f"best val_loss {search.trials[0]['val_loss']:.4f}")


# ----------------------------------------------------------------------------------------------
# Evaluation and the run directory


def _evaluate_and_write(state: RunState, metric: str) -> None:
    from rayfit.evaluation.context import ReportContext
    from rayfit.evaluation.importance import permutation_importance
    from rayfit.evaluation.plots import render_all
    from rayfit.evaluation.report import write_report

    exp, prepared, display, run_dir = state.exp, state.prepared, state.display, state.run_dir
    started = time.perf_counter()
    display.start("evaluate", "evaluate (test split)", total=len(state.trained))
    scores: dict[str, dict] = {}
    for i, (name, trained) in enumerate(state.trained.items(), 1):
        scores[name] = {
            "framework": trained.framework,
            "test": score_model(trained.model, prepared.X_test, prepared.y_test, prepared.n_classes),
            "val": score_model(trained.model, prepared.X_val, prepared.y_val, prepared.n_classes),
            "train_time_s": round(trained.train_time_s, 3),
            **({"launch": trained.launch} if trained.launch else {}),
            **_how_it_ran(trained),
        }
        display.advance("evaluate", i, len(state.trained), name, echo=False)
    best = None
    for name, entry in scores.items():
        if best is None or is_better(metric, entry["val"][metric], scores[best]["val"][metric]):
            best = name
    best_model = state.trained[best].model
    importance = []  # a pixel's importance says little; images get none
    if prepared.kind != "image":
        importance = permutation_importance(best_model, prepared.X_test, prepared.y_test, prepared.feature_names,
                                            metric, prepared.n_classes, exp.report.importance_repeats, exp.seed)

    model_dir = run_dir / "model"
    best_model.save(model_dir)
    save_preprocessing(prepared, model_dir)

    dataset = {"rows": prepared.n_rows, "features": prepared.n_features}
    if prepared.task == "classification":
        dataset["classes"] = prepared.n_classes
    metrics = {"task": prepared.task, "primary_metric": metric, "best_model": best, "dataset": dataset,
               "models": scores}
    if state.plan is not None:
        metrics["resources"] = state.plan.describe()
    summaries = {name: {"model": s["model"], "searcher": s.get("searcher"), "scheduler": s.get("scheduler"),
                        "trials": len(s["trials"]), "epochs_trained": s["epochs_trained"],
                        "epochs_budget": s["epochs_budget"], "wall_time_s": round(s["wall_time_s"], 3),
                        "best_params": s["best_params"], "trial_mode": s.get("trial_mode", "inline"),
                        "trial_mode_reason": s.get("trial_mode_reason", ""), "placement": s.get("plan", "")}
                 for name, s in state.searches.items()}
    if summaries:
        metrics["tuning"] = next(iter(summaries.values()))  # the first search, as before
        metrics["searches"] = summaries
    (run_dir / "metrics.json").write_text(json.dumps(_plain(metrics), indent=2, allow_nan=False))
    best_params = state.search["best_params"] if state.search is not None else {}
    (run_dir / "best_params.yaml").write_text(yaml.safe_dump(_plain(best_params), sort_keys=False))
    display.finish("evaluate", f"best {best}: val {metric} {scores[best]['val'][metric]:.4f}, "
                               f"test {metric} {scores[best]['test'][metric]:.4f}")

    display.start("report", "plots and report")
    state.stage_times["evaluate"] = time.perf_counter() - started
    ctx = ReportContext(
        name=exp.name, task=prepared.task, primary_metric=metric, best_model=best,
        dataset={**dataset, "source": prepared.source, "target": prepared.target,
                 "split_sizes": {"train": len(prepared.y_train), "val": len(prepared.y_val), "test": len(prepared.y_test)}},
        models=scores, prep_log=prepared.log,
        histories={n: t.history for n, t in state.trained.items() if t.history},
        best_params=best_params, trials=state.search["trials"] if state.search is not None else [],
        searches=state.searches,
        y_test=prepared.y_test, y_pred=best_model.predict(prepared.X_test), proba=best_model.predict_proba(prepared.X_test),
        class_names=prepared.class_names, importance=importance, config_yaml=to_yaml(exp),
        stage_times=state.stage_times, created=time.strftime("%Y-%m-%d %H:%M:%S"),
        resources=metrics.get("resources", {}),
        artifacts={"best model + preprocessing": "model/", "checkpoints": "checkpoints/", "tuning": "tune/",
                   "metrics": "metrics.json", "config": "config.yaml", "best params": "best_params.yaml",
                   "log": LOG_FILE},
    )
    plots = render_all(ctx, run_dir / "plots")
    write_report(ctx, run_dir, plots)
    display.finish("report", f"{len(plots)} plots, report.html")


def _how_it_ran(trained: Trained) -> dict:
    """A network's metrics.json entry on how it ran: workers, device, GPUs, AMP, and why this launch."""
    info = trained.run_info
    if not info:
        return {}
    keys = ("workers", "device", "gpus_per_worker", "amp", "launch_reason", "launch_figures")
    return {k: info[k] for k in keys if k in info and info[k] not in ("", {})}


def _plain(value):
    """numpy scalars and tuples -> plain JSON / YAML types; NaN -> None (JSON has no NaN)."""
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not np.isfinite(value):
        return None
    return value
