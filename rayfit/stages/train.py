"""Stage: baselines and networks, side by side where they can be. Baseline tasks and single-task
networks run concurrently (each holds its own CPUs); Ray Train worker groups run one at a time."""
from __future__ import annotations

import time

from rayfit.stages.baselines import collect_baselines, run_booster_groups, start_baselines
from rayfit.stages.networks import finish_network, network_name, pending_networks, start_network
from rayfit.stages.state import RunState


def train_models(state: RunState, data) -> None:
    from rayfit.progress import progress_hub

    hub = progress_hub()  # every network's epochs, tagged with its name
    with state.display.follow(hub):
        started = time.perf_counter()
        baselines = start_baselines(state, data) if state.exp.baselines.enabled else []
        networks = [(framework, model, start_network(state, framework, model, data, hub))
                    for framework, model in pending_networks(state)]
        collect_baselines(state, baselines)
        state.stage_times["baselines"] = time.perf_counter() - started
        run_booster_groups(state, data)  # XGBoost and LightGBM data-parallel, when baselines.workers > 1
        # worker groups first, one at a time, while the tasks started above go on beside them
        networks.sort(key=lambda network: state.launches[network_name(*network[:2])].kind.concurrent)
        for framework, model, pending in networks:
            finish_network(state, framework, model, pending)
