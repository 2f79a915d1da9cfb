"""Stage: baselines and networks, side by side where they can be. Single-task networks and baseline
tasks run concurrently (each holds its own CPUs), the networks started first, and are collected in
the order they finish; Ray Train worker groups run one at a time, after the baselines."""
from __future__ import annotations

import time

from rayfit.cluster.launch import as_finished
from rayfit.stages.baselines import (in_worker_groups, note_unfinished, record_baseline, run_booster_groups,
                                     start_baselines)
from rayfit.stages.networks import finish_network, network_name, pending_networks, start_network
from rayfit.frameworks import FRAMEWORKS
from rayfit.stages.state import RunState

MIN_TRAINING_S = 3.0  # the least training worth starting a framework for
WORKER_GROUP_START_S = 15.0  # a Ray Train group's start where none was measured (2 cores: about 15 s)


def train_models(state: RunState, data, beside=None) -> None:
    """`beside`: the searches (stages/searches.py's `searches_beside`), started once the models'
    tasks are placed where nothing after them needs a gang of CPUs (a Ray Train worker group)."""
    from rayfit.progress import progress_hub

    hub = progress_hub()  # every network's epochs, tagged with its name
    deadline = state.deadline("models")  # a time limit's share (None without one)
    with state.display.follow(hub):
        started = time.perf_counter()
        # The networks' tasks first: they are the longest (a framework to import, then the epochs),
        # and Ray runs tasks asking the same resources in the order they came; the baselines, many
        # and short, fill the CPUs beside them.
        # Under a time limit the baselines come first all the same: cheap and sure, they are what a
        # short limit must not lose to networks that hold every CPU until their deadline.
        baselines = start_baselines(state, data) if state.exp.baselines.enabled and deadline else []
        networks = [(framework, model, start_network(state, framework, model, data, hub, deadline))
                    for framework, model in pending_networks(state) if affordable(state, framework, model, deadline)]
        if state.exp.baselines.enabled and not deadline:
            baselines = start_baselines(state, data)
        tasks = [network for network in networks if _in_a_task(state, network)]
        groups = [network for network in networks if not _in_a_task(state, network)]
        if beside is not None and not groups and not in_worker_groups(state):
            beside.start()  # its trials' actors take CPUs as the models' tasks free them
        # with a worker group to run, the networks' tasks go on beside it and are collected after it
        collect(state, baselines, [] if groups else tasks, deadline, started)
        if not in_worker_groups(state) or time_for_a_group(state, deadline, "the data-parallel boosters"):
            run_booster_groups(state, data)  # XGBoost and LightGBM data-parallel, when baselines.workers > 1
        for framework, model, pending in groups:  # one at a time, each started only now
            if time_for_a_group(state, deadline, network_name(framework, model)):
                finish_network(state, framework, model, pending)
        for framework, model, pending in tasks if groups else []:
            finish_network(state, framework, model, pending)
    if state.budget is not None:
        state.budget.took("models", time.perf_counter() - started)


def _in_a_task(state: RunState, network) -> bool:
    return state.launches[network_name(*network[:2])].kind.concurrent


def collect(state: RunState, baselines: list, networks: list, deadline, started: float) -> None:
    """The baselines and the networks training in tasks, each as it finishes: a network's model
    loads in the driver (its framework imported there, for the first) while the rest still train.
    At a time limit's deadline the unfinished baselines are cancelled, except the dummy (a run
    always keeps its yardstick); a network stops at that deadline on its own and is waited for."""
    display, total, done, unfinished = state.display, len(baselines), 0, []
    if not total:
        state.stage_times["baselines"] = time.perf_counter() - started
    in_tasks = {pending.handle.ref: (framework, model, pending) for framework, model, pending in networks}
    spare = [pending.handle for _, _, pending in networks] + [h for h in baselines if h.tag == "dummy"]
    for handle, outcome in as_finished(baselines + [pending.handle for _, _, pending in networks], deadline,
                                       unfinished, spare):
        if handle.ref in in_tasks:
            finish_network(state, *in_tasks[handle.ref])
            continue
        record_baseline(state, handle.tag, outcome)
        done += 1
        display.advance("baselines", done, total, f"{handle.tag} {outcome[1]:.1f}s")
        if done == total:
            _baselines_done(state, baselines, unfinished, started)
    if total and done < total:  # some stopped by the time limit
        _baselines_done(state, baselines, unfinished, started)


def _baselines_done(state: RunState, baselines: list, unfinished: list, started: float) -> None:
    note_unfinished(state, unfinished)
    state.display.finish("baselines", ", ".join(handle.tag for handle in baselines if handle not in unfinished))
    state.stage_times["baselines"] = time.perf_counter() - started


def time_for_a_group(state: RunState, deadline, what: str) -> bool:
    """Under a time limit, whether a Ray Train worker group (started only now) can start and train
    before the models' deadline; if not, it is skipped, and the report says why."""
    if deadline is None:
        return True
    from rayfit.trainers.launch_cost import known_worker_group_start_cost

    known = known_worker_group_start_cost("torch")  # never measured here: that would spend the time
    left = deadline - time.time()
    cost = (known.seconds if known is not None else WORKER_GROUP_START_S) + MIN_TRAINING_S
    if left >= cost:
        return True
    why = f"the time limit left {max(left, 0):.0f} s, less than the {cost:.0f} s a worker group needs to start and train"
    state.budget.skip(what, why)
    state.display.say(f"{what}: skipped: {why}")
    return False


def affordable(state: RunState, framework: str, model: str, deadline) -> bool:
    """Under a time limit, whether the network can train a few epochs in the models' share: not when
    the share is smaller than what starting its framework alone costs here (then it is skipped,
    and the report says why)."""
    if deadline is None:
        return True
    share = deadline - time.time()
    need = FRAMEWORKS[framework].start_s + MIN_TRAINING_S
    if share >= need:
        return True
    name = network_name(framework, model)
    why = (f"the time limit left the models {share:.0f} s, less than the {need:.0f} s {framework} needs to start "
           f"and train a few epochs")
    state.budget.skip(name, why)
    state.display.say(f"{name}: skipped: {why}")
    return False
