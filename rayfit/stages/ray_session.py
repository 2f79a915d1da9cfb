"""Stage: Ray. Start or join the Ray session the run works in, and stop it at the end if this run
started it; while the training stages run, a watchdog turns a stall into an error."""
from __future__ import annotations

from contextlib import contextmanager

from rayfit.stages.state import RunState


def start_ray(state: RunState) -> None:
    import ray

    from rayfit.cluster.session import ensure_ray, find_ray

    exp, display = state.exp, state.display
    with state.timed("ray"):
        display.start("ray", find_ray(exp.ray.address).describe(exp.ray.connect_timeout_s))
        session = ensure_ray(exp.ray.address, exp.ray.num_cpus, dashboard=exp.ray.dashboard,
                             connect_timeout_s=exp.ray.connect_timeout_s, num_gpus=exp.ray.num_gpus)
        state.owns_ray = session.started
        resources = ray.cluster_resources()
        display.finish("ray", f"{session.summary}, {resources.get('CPU', 0):g} CPUs, {resources.get('GPU', 0):g} GPUs")


def stop_ray(state: RunState) -> None:
    """Shut down the Ray this run started; a joined session is left running. Not in a thread
    beside the report: an object reference released while another thread shuts Ray down ends the
    process (Ray's core worker: "accesses the Ray's worker after it is shutdown"), seen on a run
    whose report followed a shutdown started 1 s before."""
    from rayfit.cluster.ledger import forget

    forget(state.run_key)
    if state.owns_ray:
        from rayfit.cluster.session import shutdown_ray

        shutdown_ray()


@contextmanager
def watching_for_stalls(state: RunState):
    """Every progress line is a heartbeat; a stage silent for ray.stall_timeout_s while Ray cannot
    place its demands ends the run with an error instead of a wait for ever."""
    from rayfit.cluster.watchdog import Watchdog

    with Watchdog(state.exp.ray.stall_timeout_s) as watchdog:
        state.display.listeners.append(watchdog.beat)
        try:
            yield
        finally:
            state.display.listeners.remove(watchdog.beat)
