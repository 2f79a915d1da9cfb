"""Stage: the classic-ML baselines, each one Ray task of `baselines.cpus_per_model` CPUs (and as
many threads), collected as they finish."""
from __future__ import annotations

from rayfit.cluster.launch import Handle, start
from rayfit.cluster.ledger import note, stage_key
from rayfit.evaluation.baselines import baselines_for, has_gpu_mode
from rayfit.evaluation.fitted import SklearnModel
from rayfit.stages.state import RunState, Trained


def start_baselines(state: RunState, data) -> list[Handle]:
    """Start every unfinished baseline as a Ray task (its handle's tag: the baseline's name)."""
    exp, prepared, display = state.exp, state.prepared, state.display
    names = [name for name in baselines_for(exp.baselines.models, prepared.task)
             if name not in state.trained and name not in in_worker_groups(state)]
    if names:
        display.start("baselines", "classic-ML baselines", total=len(names))
    cpus, gpus = exp.baselines.cpus_per_model, baseline_gpus(state)
    cw = prepared.class_weights if prepared.task == "classification" else None
    return [start(_fit_baseline_task, name, prepared.task, cw, exp.seed, data.ref, stage_key(state.run_key, name), cpus,
                  name=f"rayfit.baseline[{name}]", cpus=cpus, gpus=gpus if has_gpu_mode(name) else 0, tag=name)
            for name in names]


def baseline_gpus(state: RunState) -> float:
    """The GPU share each baseline with a GPU mode holds: none unless baselines.gpu is true, or auto
    on a cluster with GPUs."""
    import ray

    setting = state.exp.baselines.gpu
    if setting is False or (setting == "auto" and not ray.cluster_resources().get("GPU", 0)):
        return 0.0
    return state.exp.baselines.gpus_per_model


def in_worker_groups(state: RunState) -> list[str]:
    """The baselines that train as Ray Train worker groups (baselines.workers > 1): XGBoost, LightGBM."""
    from rayfit.trainers.boosters import DISTRIBUTED

    if state.exp.baselines.workers < 2 or not state.exp.baselines.enabled:
        return []
    return [name for name in baselines_for(state.exp.baselines.models, state.prepared.task) if name in DISTRIBUTED]


def run_booster_groups(state: RunState, data) -> None:
    """Each distributed booster as a worker group of baselines.workers, one group at a time."""
    from rayfit.trainers.boosters import fit_booster_group

    exp, display = state.exp, state.display
    workers, cpus = exp.baselines.workers, exp.baselines.cpus_per_model
    for name in in_worker_groups(state):
        if name in state.trained:
            continue
        display.start(name, f"{name} x{workers} (Ray Train, {cpus} CPU each)")
        with state.timed(name):
            model, seconds = fit_booster_group(name, data, state.prepared.n_classes, workers, cpus,
                                               state.location.join("checkpoints"), stage_key(state.run_key, name))
        state.finished(name, Trained(model, name, seconds, launch="ray_train",
                                     run_info={"workers": workers, "device": "cpu", "nodes": state.nodes_of(name),
                                               "launch_reason": f"baselines.workers: {workers}"}))
        display.finish(name, f"{workers} workers, {seconds:.1f}s")


def record_baseline(state: RunState, name: str, outcome) -> None:
    """A finished baseline task's (estimator, seconds, device) as a trained model of the run."""
    prepared = state.prepared
    estimator, seconds, device = outcome
    model = SklearnModel(name, prepared.task, estimator, prepared.n_classes)
    info = {"nodes": state.nodes_of(name), **({"device": device[0], "device_reason": device[1]}
                                               if device[1] != "no GPU assigned" else {})}
    state.finished(name, Trained(model, SklearnModel.kind, seconds, run_info=info))


def note_unfinished(state: RunState, unfinished: list[Handle]) -> None:
    """Baselines a time limit stopped: skipped in its record, said on the display."""
    for handle in unfinished:
        state.budget.skip(handle.tag, "not finished within the time limit's share for the models")
    if unfinished:
        state.display.say(f"baselines: {', '.join(h.tag for h in unfinished)} stopped by the time limit")


def _fit_baseline_task(name, task, class_weight, seed, arrays, ledger, threads):
    """(estimator, seconds, (device, why)): on the GPU Ray assigned the task where there really is one."""
    from rayfit.evaluation.baselines import fit_baseline, gpu_device

    note(ledger)
    device = gpu_device(name)
    estimator, seconds = fit_baseline(name, task, class_weight, seed, arrays["X_train"], arrays["y_train"], threads,
                                      device=device[0], layout=arrays.get("categories"))
    return estimator, seconds, device
