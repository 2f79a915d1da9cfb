"""Stage: baselines and networks, side by side where they can be. Baseline tasks and single-task
networks run concurrently (each holds its own CPUs); Ray Train worker groups run one at a time."""
from __future__ import annotations

import time

from rayfit.stages.baselines import collect_baselines, run_booster_groups, start_baselines
from rayfit.stages.networks import network_finished, pending_networks, run_worker_group, start_network
from rayfit.stages.state import RunState


def train_models(state: RunState, data) -> None:
    from rayfit.progress import progress_hub

    hub = progress_hub()  # every network's epochs, tagged with its name
    with state.display.follow(hub):
        started = time.perf_counter()
        baselines = start_baselines(state, data) if state.exp.baselines.enabled else []
        in_tasks, in_groups = [], []
        for framework, model in pending_networks(state):
            pending = start_network(state, framework, model, data, hub)
            (in_tasks if pending is not None else in_groups).append((framework, model, pending))
        collect_baselines(state, baselines)
        state.stage_times["baselines"] = time.perf_counter() - started
        run_booster_groups(state, data)  # XGBoost and LightGBM data-parallel, when baselines.workers > 1
        for framework, model, _ in in_groups:
            run_worker_group(state, framework, model, data, hub)
        for framework, model, pending in in_tasks:
            result = pending.result()
            network_finished(state, framework, pending.name, result, "task")
            state.stage_times[pending.name] = result.train_time_s
