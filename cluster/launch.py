"""The launch seam: every piece of remote work rayfit starts as a Ray task (a baseline, a fold, a
refit, an importance job, a clustering candidate, a network trained in one task, a probe) starts
here, named and with its resources, and is waited on here, under the run's watchdog
(cluster/watchdog.py), so that no wait can outlast a stall.

Worker groups (Ray Train) and searches (Ray Tune) are launched by their libraries; their waits go
through the same watchdog (`Watchdog.run`, `Watchdog.tune_stopper`).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Iterable, Iterator, Optional

from rayfit.cluster.watchdog import current_watchdog

_REMOTE: dict[Callable, Any] = {}  # each function made a Ray remote function once per process

# Warm workers, one pool per framework. Ray reuses an idle worker only for a task of the same
# runtime environment, and the job's environment is inherited (its env_vars merged, its
# working_dir kept), so a task marked with its framework here runs in a worker that imported that
# framework already: a network's training, its folds and its importance share one import of
# PyTorch (about 2 s of a core) or TensorFlow (about 4 s), and the classic-ML tasks never pay for
# either. Unmarked, a 2-CPU run's two workers each ended up importing both frameworks for the folds.
POOL_ENV = "RAYFIT_WORKER_POOL"


@dataclass(frozen=True)
class Handle:
    """Remote work under way: its Ray reference, its name (Ray's task name: `rayfit.<what>[<name>]`)
    and whatever the caller keys it by."""

    ref: Any
    name: str
    tag: Any = None

    def result(self) -> Any:
        """Its result, waited for under the watchdog (a stall raises StageStalled)."""
        import ray

        return ray.get(current_watchdog().wait([self.ref])[0])


def start(fn: Callable, *args, name: str, cpus: float = 1, gpus: float = 0, retries: Optional[int] = None,
          node: Optional[str] = None, tag: Any = None, pool: Optional[str] = None) -> Handle:
    """Run `fn(*args)` as one Ray task of `cpus` CPUs and `gpus` GPUs, named `name`; `retries`: how
    often Ray reruns it when its worker dies (Ray's default where None); `node`: on that node only;
    `pool`: the framework the task needs (torch, keras), whose warm workers run it (see `POOL_ENV`)."""
    import ray

    remote = _REMOTE.get(fn)
    if remote is None:
        remote = _REMOTE[fn] = ray.remote(fn)
    options = {"name": name, "num_cpus": cpus, "num_gpus": gpus}
    if pool is not None:
        options["runtime_env"] = {"env_vars": {POOL_ENV: pool}}
    if retries is not None:
        options["max_retries"] = retries
    if node is not None:
        from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

        options["scheduling_strategy"] = NodeAffinitySchedulingStrategy(node, soft=False)
    handle = Handle(remote.options(**options).remote(*args), name, tag)
    current_watchdog().track(handle.ref)
    return handle


def as_finished(handles: Iterable[Handle], until: Optional[float] = None,
                unfinished: Optional[list] = None, spare: Iterable[Handle] = ()) -> Iterator[tuple[Handle, Any]]:
    """Each handle with its result, in the order the work finishes, waited for under the watchdog.
    `until` (time.time()'s scale, a time limit's deadline): then the work not finished is cancelled
    and its handles are put in `unfinished`, except those in `spare` (work that stops at the
    deadline on its own), which are waited for to the end."""
    import ray

    pending = {handle.ref: handle for handle in handles}
    spared = {handle.ref for handle in spare}
    while pending:
        ready = current_watchdog().wait(list(pending), until=until)
        if not ready:  # the deadline: what has not finished stops here
            for ref in [ref for ref in pending if ref not in spared]:
                ray.cancel(ref, force=True)
                if unfinished is not None:
                    unfinished.append(pending[ref])
                del pending[ref]
            until = None
            continue
        yield pending.pop(ready[0]), ray.get(ready[0])
