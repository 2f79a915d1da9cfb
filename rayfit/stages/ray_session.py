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
    """Shut down the Ray this run started (or wait for `stop_ray_meanwhile` to have); a joined
    session is left running."""
    from rayfit.cluster.ledger import forget

    if state.ray_stopping is not None:
        state.ray_stopping.join()
        return
    forget(state.run_key)
    if state.owns_ray:
        import ray

        ray.shutdown()


def stop_ray_meanwhile(state: RunState) -> None:
    """Start shutting down the Ray this run started, in a thread, once nothing needs it any more
    (the models scored, the best one saved): Ray's processes take 1-1.5 s to stop, while the report
    is written beside them. `stop_ray` waits for it."""
    import threading

    from rayfit.cluster.ledger import forget

    forget(state.run_key)
    if not state.owns_ray:
        return
    import ray

    state.ray_stopping = threading.Thread(target=ray.shutdown, name="rayfit-stop-ray", daemon=True)
    state.ray_stopping.start()


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
