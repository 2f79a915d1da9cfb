"""The watchdog: a stage that makes no progress while Ray cannot place what it asked for is stopped.

Ray does not fail a request it cannot place; it waits, silently, for ever. The resource plan
(cluster/plan.py) keeps rayfit's own requests placeable, but not what it cannot see: another job
holding the cluster, a node that went away, a leaked placement group. So the driver watches: every
progress line (an epoch, a trial result, a finished baseline) is a heartbeat, and so is any task
started through the launch seam (cluster/launch.py) that is running: baselines queued behind two long
fits wait for CPUs, they are not stalled. When no heartbeat has come for `ray.stall_timeout_s`,
none of the run's tasks is running, and Ray's autoscaler state lists resource demands that are not
being met, the stage is stopped and the run ends with an `error:` that names the stage, what it waits
for and what the cluster has. (Ray Train's own worker-group start-up timeout only retries.)

The driver's waits poll `check()` (baselines, single tasks, a worker group run in a thread), and a
Tune search stops through a `tune.Stopper`, so a stall surfaces in the driver's own thread.
"""
from __future__ import annotations

import threading
import time
from typing import Callable, Optional

from rayfit.errors import UserError

POLL_S = 0.5  # how often a driver-side wait looks at the watchdog


class StageStalled(UserError):
    """A stage waited on resources Ray could not give it for longer than the stall timeout."""


def pending_demands() -> list[str]:
    """Ray's unmet resource demands, in words: '{CPU: 1} x2 (placement group)', '{CPU: 1} (task or actor)'."""
    import ray
    from ray.autoscaler.v2.sdk import get_cluster_status

    status = get_cluster_status(ray.get_runtime_context().gcs_address)
    demands = []
    for demand in status.resource_demands.placement_group_demand:
        for request in demand.bundles_by_count:
            demands.append(f"{_bundle(request.bundle)} x{request.count} (placement group)")
    for demand in status.resource_demands.ray_task_actor_demand:
        for request in demand.bundles_by_count:
            demands.append(f"{_bundle(request.bundle)} x{request.count} (task or actor)")
    return demands


def running_tasks(task_ids: set[str]) -> int:
    """How many of these tasks are running now (Ray's State API: this job's running tasks)."""
    import ray
    from ray.util.state import list_tasks

    job = ray.get_runtime_context().get_job_id()
    running = list_tasks(filters=[("job_id", "=", job), ("state", "=", "RUNNING"), ("type", "=", "NORMAL_TASK")],
                         limit=10_000, timeout=10, raise_on_missing_output=False)
    return sum(1 for task in running if task.task_id in task_ids)


def cluster_state() -> str:
    import ray

    total, free = ray.cluster_resources(), ray.available_resources()
    return (f"{total.get('CPU', 0):g} CPUs ({free.get('CPU', 0):g} free), "
            f"{total.get('GPU', 0):g} GPUs ({free.get('GPU', 0):g} free)")


def _bundle(bundle: dict) -> str:
    shown = {k: v for k, v in bundle.items() if k in ("CPU", "GPU") or not k.startswith(("node:", "memory"))}
    return "{" + ", ".join(f"{k}: {v:g}" for k, v in sorted(shown.items())) + "}"


class Watchdog:
    """Heartbeats in, a StageStalled out. Use as a context manager around the stages."""

    def __init__(self, timeout_s: float, demands: Callable[[], list[str]] = pending_demands,
                 describe_cluster: Callable[[], str] = cluster_state,
                 running: Callable[[set[str]], int] = running_tasks):
        self.timeout_s = timeout_s
        self._demands, self._describe_cluster, self._running = demands, describe_cluster, running
        self._tasks: set[str] = set()  # the run's tasks (their ids), started through the launch seam
        self.stage = "start-up"
        self._last = time.monotonic()
        self._fired: Optional[StageStalled] = None
        self._stop = threading.Event()
        self._thread: Optional[threading.Thread] = None

    # -- heartbeats
    def beat(self, stage: Optional[str] = None) -> None:
        if stage:
            self.stage = stage
        self._last = time.monotonic()

    def track(self, ref) -> None:
        """A task the run started (cluster/launch.py): while it runs, the stage makes progress."""
        self._tasks.add(ref.task_id().hex())

    # -- the watching thread
    def __enter__(self) -> "Watchdog":
        global _active
        _active = self
        self._last = time.monotonic()
        self._thread = threading.Thread(target=self._watch, name="rayfit-watchdog", daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        global _active
        _active = None
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def _watch(self) -> None:
        interval = min(5.0, max(0.2, self.timeout_s / 5))
        while not self._stop.wait(interval):
            try:
                if self._look():
                    return
            except Exception:  # noqa: BLE001 - one failed look is not the end of watching: the next one looks again
                continue

    def _look(self) -> bool:
        """One look at the stage; True once it has stalled (`_fired` set)."""
        quiet = time.monotonic() - self._last
        if quiet < self.timeout_s:
            return False
        try:
            demands = self._demands()
        except Exception:  # the autoscaler state is advisory: never let it end a healthy run
            return False
        if demands and self._tasks:
            try:
                if self._running(set(self._tasks)):  # work under way: the demands are queued behind it
                    self.beat()
                    return False
            except Exception:  # the State API is advisory too: without it, the demands decide
                pass
        if not demands:
            return False
        try:
            cluster = self._describe_cluster()
        except Exception as exc:  # noqa: BLE001 - the stall stands; what the cluster has is unknown
            cluster = f"resources it did not say ({type(exc).__name__})"
        self._fired = StageStalled(
            f"stage {self.stage!r} made no progress for {quiet:.0f} s while Ray could not place "
            f"{'; '.join(demands)}; the cluster has {cluster} "
            f"(free resources, lower the request, or raise ray.stall_timeout_s)")
        return True

    # -- what the driver's waits call
    @property
    def fired(self) -> bool:
        return self._fired is not None

    def check(self) -> None:
        if self._fired is not None:
            raise self._fired

    def wait(self, refs: list, num_returns: int = 1, until: Optional[float] = None) -> list:
        """ray.wait, in slices, so a stall is seen: the refs that are ready; none once `until`
        (time.time()'s scale) has passed."""
        import ray

        while True:
            timeout = POLL_S if until is None else max(0.0, min(POLL_S, until - time.time()))
            ready, _ = ray.wait(refs, num_returns=num_returns, timeout=timeout)
            if ready:
                return ready
            if until is not None and time.time() >= until:
                return []
            if self._fired is not None:
                for ref in refs:  # what never got placed must not start later
                    ray.cancel(ref, force=True)
                raise self._fired

    def run(self, blocking: Callable[[], object]) -> object:
        """Run a blocking call (a Ray Train fit) in a thread and wait for it here, watching."""
        outcome: dict = {}

        def target():
            try:
                outcome["value"] = blocking()
            except BaseException as exc:  # re-raised in the driver's thread
                outcome["error"] = exc

        thread = threading.Thread(target=target, name=f"rayfit-{self.stage}", daemon=True)
        thread.start()
        while thread.is_alive():
            thread.join(POLL_S)
            self.check()
        if "error" in outcome:
            raise outcome["error"]
        return outcome.get("value")

    def tune_stopper(self):
        """A Tune Stopper that ends the whole search once the watchdog fired (checked every step)."""
        from ray import tune

        watchdog = self

        class _StallStopper(tune.Stopper):
            def __call__(self, trial_id, result):
                return False

            def stop_all(self):
                return watchdog.fired

            def __reduce__(self):  # Tune saves its stopper with the experiment; the watchdog stays here
                return (tune.stopper.NoopStopper, ())

        return _StallStopper()


class NoWatchdog(Watchdog):
    """Outside a run (a library call, a test): waits are plain waits."""

    def __init__(self):
        super().__init__(timeout_s=float("inf"))

    def track(self, ref) -> None:
        pass

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        pass


_active: Optional[Watchdog] = None  # the run's watchdog, while one runs in this process


def current_watchdog() -> Watchdog:
    """The watchdog of the run in progress, for the driver's waits deep in the stages."""
    return _active or NoWatchdog()
