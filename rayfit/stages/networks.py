"""Stage: the networks of every enabled framework. Each trains either in one Ray task (started at
once, beside the baselines) or as a Ray Train worker group (run later, one group at a time), as
trainers/launch.py's `choose_launch` decides."""
from __future__ import annotations

from rayfit.config import Experiment
from rayfit.stages.state import RunState, Trained
from rayfit.frameworks import FRAMEWORKS


def enabled_frameworks(exp: Experiment) -> list[tuple[str, object]]:
    """(framework name, its config section) of every enabled framework, in the registry's order."""
    return [(name, getattr(exp, name)) for name in FRAMEWORKS if getattr(exp, name).enabled]


def network_name(framework: str, model: str) -> str:
    return f"{framework}_{model}"  # torch_mlp, keras_cnn: the model's name in the report


def pending_networks(state: RunState) -> list[tuple[str, str]]:
    """(framework, network) of every enabled network not trained yet (`rayfit resume` skips those)."""
    return [(framework, model) for framework, settings in enabled_frameworks(state.exp)
            for model in settings.models if network_name(framework, model) not in state.trained]


def start_network(state: RunState, framework: str, model: str, data, hub):
    """Decide how a network trains; a single task starts now (returned), a worker group later (None)."""
    from rayfit.trainers.launch import choose_launch, start_in_task

    settings, display = getattr(state.exp, framework), state.display
    name = network_name(framework, model)
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
    return start_in_task(framework, model, settings, data, state.location.join("checkpoints"), plan, progress=hub)


def run_worker_group(state: RunState, framework: str, model: str, data, hub) -> None:
    from rayfit.trainers.launch import fit_neural

    settings, display = getattr(state.exp, framework), state.display
    name = network_name(framework, model)
    plan = state.plan.networks[framework]
    display.start(name, f"{name} x{plan.workers}", total=settings.epochs)
    display.say(f"{name}: batch {settings.batch_size} per worker, {settings.batch_size * plan.workers} global")
    with state.timed(name):
        result = fit_neural(framework, model, settings, data, state.location.join("checkpoints"), progress=hub, plan=plan)
    network_finished(state, framework, name, result, "ray_train")


def network_finished(state: RunState, framework: str, name: str, result, launch: str) -> None:
    decision = state.launches.get(name)
    run_info = {**result.runtime, "launch_reason": decision.reason if decision else "",
                "launch_figures": decision.figures if decision else {}, "nodes": state.nodes_of(name)}
    state.finished(name, Trained(result.model, framework, result.train_time_s, result.history, launch, run_info))
    state.display.finish(name, f"{len(result.history)} epochs, best epoch {result.best_epoch}, "
                               f"val_loss {min((h['val_loss'] for h in result.history), default=float('nan')):.4f}")
