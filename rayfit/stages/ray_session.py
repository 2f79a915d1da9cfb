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

    if state.cluster_lost:  # nothing to tidy on a cluster that is gone (each call would wait for it)
        return
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


HARD_STOP_S = 8.0  # a lost cluster: the run's clean-up gets this long before the process ends


@contextmanager
def watching_the_cluster(state: RunState):
    """A joined cluster that stops answering (cluster/lifeline.py) stops the run within seconds, as
    Ctrl-C would, with an `error:` that says so and how to resume; a private Ray goes down only
    with this process."""
    from ray.util.client import ray as client

    if state.owns_ray or client.is_connected():  # Ray Client (ray://): the GCS is the cluster's inside address
        yield
        return
    import os
    import shlex
    import threading

    import ray

    from rayfit.cluster.lifeline import Lifeline
    from rayfit.cluster.watchdog import NoWatchdog, current_watchdog
    from rayfit.signals import stop_self

    gcs = ray.get_runtime_context().gcs_address

    def lost(why: str) -> None:
        watchdog = current_watchdog()
        stage = "report" if isinstance(watchdog, NoWatchdog) else watchdog.stage  # after the watched stages
        message = f"the cluster at {gcs} stopped answering during stage {stage!r} ({why})"
        state.cluster_lost = message
        state.display.say(f"ray: {message}; stopping the run")

        def hard_stop() -> None:  # the clean-up waited on the dead cluster: said, and out
            from rayfit.run_dir import last_words

            last_words(f"error: {message}; resume with: rayfit resume {shlex.quote(str(state.location))}")
            os._exit(2)

        state.hard_stop = threading.Timer(HARD_STOP_S, hard_stop)
        state.hard_stop.daemon = True
        state.hard_stop.start()
        stop_self(message)

    with Lifeline(gcs, lost):
        yield
