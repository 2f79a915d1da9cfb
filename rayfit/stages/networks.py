"""Stage: the networks of every enabled framework. Each trains either in one Ray task (started at
once, beside the baselines) or as a Ray Train worker group (run later, one group at a time): the
launch kind trainers/launch.py's `choose_launch` decides."""
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


def start_network(state: RunState, framework: str, model: str, data, hub, deadline=None):
    """Decide how a network trains (trainers/launch.py's `choose_launch`) and start it: a single
    task starts now, a worker group when waited on (finish_network)."""
    from rayfit.trainers.launch import choose_launch

    settings, display = getattr(state.exp, framework), state.display
    name = network_name(framework, model)
    plan = state.plan.networks[framework]
    if plan.note:
        display.say(f"{name}: {plan.note}")
    launch = choose_launch(framework, model, settings, data, plan)
    state.launches[name] = launch
    display.say(f"{name}: {launch.kind.describe(plan, settings)} ({launch.reason})")
    if launch.kind.concurrent:
        display.start(name, f"{name} (one task)", total=settings.epochs)
    return launch.kind.start(framework, model, settings, data, state.location.join("checkpoints"), plan, hub,
                             deadline)


def finish_network(state: RunState, framework: str, model: str, pending) -> None:
    """Wait for a started network (or run a worker group) and record it."""
    settings, name = getattr(state.exp, framework), network_name(framework, model)
    launch = state.launches[name]
    if not launch.kind.concurrent:
        state.display.start(name, f"{name} x{state.plan.networks[framework].workers}", total=settings.epochs)
    result = pending.result()
    state.stage_times[name] = result.train_time_s
    if result.history and result.history[-1].get("stopped_by_time_limit"):
        state.display.say(f"{name}: stopped at epoch {len(result.history)} of {settings.epochs} by the time limit")
    run_info = {**result.runtime, "launch_reason": launch.reason, "launch_figures": launch.figures,
                "nodes": state.nodes_of(name)}
    state.finished(name, Trained(result.model, framework, result.train_time_s, result.history, launch.kind.name,
                                 run_info))
    state.display.finish(name, f"{len(result.history)} epochs, best epoch {result.best_epoch}, "
                               f"val_loss {min((h['val_loss'] for h in result.history), default=float('nan')):.4f}")
