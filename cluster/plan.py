"""The resource plan: what each stage takes from the cluster, decided before anything launches.

Ray never fails a request it cannot place: it waits. So every stage's request is fitted to the
cluster here, node by node, before it starts, and an impossible one is an `error:`:

- a baseline or a single-task network: one bundle (CPUs, maybe GPUs);
- a Ray Train worker group: `workers` bundles, each placed on some node;
- a Tune search: its trials, each an actor (inline: the trial trains itself) or an actor plus its
  own worker group (distributed); how many run at once follows from the cluster, not from the
  trial actor's own request (a 0.01-CPU actor alone would let Tune start trials whose workers
  could never be placed);
- Ray Data: a streamed training split is read (materialized) before its workers are placed, when
  no worker holds a CPU, and is then split among them by a coordinator that takes no CPU. So no
  CPU is held back for it while workers train, and nothing waits on its own workers.

What the plan cannot foresee (another job holding the cluster, a node lost) the watchdog
(cluster/watchdog.py) turns into an error instead of a silent wait.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Optional, Union

from rayfit.errors import UserError

# A distributed trial's own actor only waits on its Ray Train run: a sliver of a CPU, taken out of
# cpus_per_trial so the trial's whole footprint is what the config says.
TRIAL_ACTOR_CPU = 0.01
_EPS = 1e-6  # Ray keeps resources in fixed point (1e-4): compare with a little slack


@dataclass(frozen=True)
class ClusterShape:
    """The alive nodes' CPUs and GPUs: what a request must fit, bundle by bundle."""

    nodes: tuple[tuple[float, float], ...]  # (CPUs, GPUs) per alive node

    @classmethod
    def current(cls) -> "ClusterShape":
        import ray

        nodes = tuple((float(n["Resources"].get("CPU", 0)), float(n["Resources"].get("GPU", 0)))
                      for n in ray.nodes() if n.get("Alive"))
        return cls(nodes)

    @property
    def cpus(self) -> float:
        return sum(c for c, _ in self.nodes)

    @property
    def gpus(self) -> float:
        return sum(g for _, g in self.nodes)

    def slots(self, cpus: float, gpus: float = 0.0) -> int:
        """How many bundles of (cpus, gpus) the cluster can hold at once, packed node by node."""
        total = 0
        for node_cpus, node_gpus in self.nodes:
            fit = math.floor(node_cpus / cpus + _EPS) if cpus > 0 else 10 ** 6
            if gpus > 0:
                fit = min(fit, math.floor(node_gpus / gpus + _EPS))
            total += fit
        return total

    def describe(self) -> str:
        nodes = f" on {len(self.nodes)} nodes" if len(self.nodes) > 1 else ""
        return f"{self.cpus:g} CPUs, {self.gpus:g} GPUs{nodes}"


@dataclass(frozen=True)
class WorkerPlan:
    """A network's workers: how many, and what each one holds."""

    workers: int
    cpus_per_worker: float
    gpus_per_worker: float = 0.0  # 0: CPU workers
    note: str = ""  # how the plan differs from the request, and why (shown and reported)

    @property
    def use_gpu(self) -> bool:
        return self.gpus_per_worker > 0

    @property
    def resources(self) -> dict:
        """One worker's Ray resources."""
        return {"CPU": self.cpus_per_worker, **({"GPU": self.gpus_per_worker} if self.use_gpu else {})}

    def describe(self) -> str:
        each = f"{self.cpus_per_worker:g} CPU" + (f", {self.gpus_per_worker:g} GPU" if self.use_gpu else "")
        return f"{self.workers} {'GPU ' if self.use_gpu else ''}worker{'s' if self.workers > 1 else ''} x ({each})"


def plan_workers(key: str, workers: int, cpus_per_worker: float, gpus_per_worker: float,
                 gpu: Union[str, bool], cluster: ClusterShape) -> WorkerPlan:
    """Fit a network's `workers` to the cluster. `gpu: auto` adapts to the GPUs there are (one worker
    per GPU at most); an explicit request that cannot fit is a UserError naming the key."""
    if gpu is True and cluster.gpus < 1:
        raise UserError(f"{key}.gpu: true, but the Ray cluster has no GPU (set {key}.gpu: auto or false)")
    use_gpu = cluster.gpus >= 1 if gpu == "auto" else bool(gpu)
    note = ""
    if use_gpu:
        largest = max(g for _, g in cluster.nodes)
        if gpus_per_worker > largest + _EPS:
            if gpu is True:
                raise UserError(f"{key}.gpus_per_worker: {gpus_per_worker:g} GPUs per worker, but no node of the "
                                f"Ray cluster has more than {largest:g}")
            gpus_per_worker = largest
        fit = cluster.slots(cpus_per_worker, gpus_per_worker)
        if fit < workers:
            if gpu is True:
                raise UserError(f"{key}.workers: {workers} GPU workers requested, the cluster has "
                                f"{cluster.gpus:g} GPUs (room for {fit} such workers)")
            if fit < 1:
                raise UserError(f"{key}: a GPU worker needs {cpus_per_worker:g} CPUs and {gpus_per_worker:g} "
                                f"GPUs on one node; the Ray cluster has {cluster.describe()}")
            # Not fractional GPUs per worker: several data-parallel workers on one GPU fail in
            # NCCL ("Duplicate GPU detected", ray-project/ray#48012).
            note = (f"{fit} GPU worker{'s' if fit > 1 else ''} instead of {workers}: the cluster has "
                    f"{cluster.gpus:g} GPU{'s' if cluster.gpus != 1 else ''} ({key}.gpu: auto)")
            workers = fit
        return WorkerPlan(workers, cpus_per_worker, gpus_per_worker, note)
    needed = workers * cpus_per_worker
    if needed > cluster.cpus + _EPS:
        raise UserError(
            f"{key}.workers: {workers} workers x {cpus_per_worker:g} CPUs = {needed:g} CPUs, "
            f"the Ray cluster has {cluster.cpus:g} (lower {key}.workers or {key}.cpus_per_worker)")
    if cluster.slots(cpus_per_worker) < workers:
        raise UserError(f"{key}.cpus_per_worker: {workers} workers of {cpus_per_worker:g} CPUs do not fit the "
                        f"cluster's nodes ({', '.join(f'{c:g}' for c, _ in cluster.nodes)} CPUs)")
    return WorkerPlan(workers, cpus_per_worker)


@dataclass(frozen=True)
class TrialPlan:
    """A Tune search's trials: what one trial holds, and how many run at once."""

    mode: str  # "inline" (the trial trains itself) or "distributed" (the trial launches workers)
    trial_resources: dict  # the trial actor's, in Tune's spelling ({"cpu": .., "gpu": ..})
    concurrent: int
    workers: Optional[WorkerPlan] = None  # distributed: each trial's Ray Train workers
    note: str = ""

    @property
    def use_gpu(self) -> bool:
        return self.trial_resources.get("gpu", 0) > 0 or bool(self.workers and self.workers.use_gpu)

    def describe(self) -> str:
        if self.mode == "inline":
            each = f"{self.trial_resources['cpu']:g} CPU" + "".join(
                f", {amount:g} {name.upper() if name == 'gpu' else name}"
                for name, amount in self.trial_resources.items() if name != "cpu" and amount)
        else:
            each = self.workers.describe()
        note = f" ({self.note})" if self.note else ""
        return f"{self.concurrent} trial{'s' if self.concurrent > 1 else ''} at once, each {each}{note}"


def check_trial_request(cpus_per_trial: float, gpus_per_trial: float, cluster: ClusterShape,
                        key: str = "tune", inline: bool = False) -> None:
    """A single trial must fit the cluster, and an inline trial (one process) one node; otherwise
    Tune would keep it pending for ever. A distributed trial's workers may span nodes: plan_trials
    checks their placement once the trial mode is chosen."""
    if gpus_per_trial > 0 and cluster.gpus == 0:
        raise UserError(f"{key}.gpus_per_trial: {gpus_per_trial:g}, but the Ray cluster has no GPU "
                        f"(set {key}.gpus_per_trial: 0)")
    if cpus_per_trial > cluster.cpus + _EPS:
        raise UserError(f"{key}.cpus_per_trial: {cpus_per_trial:g} CPUs per trial, the Ray cluster has "
                        f"{cluster.cpus:g}")
    if gpus_per_trial > cluster.gpus + _EPS:
        raise UserError(f"{key}.gpus_per_trial: {gpus_per_trial:g} GPUs per trial, the Ray cluster has "
                        f"{cluster.gpus:g}")
    if inline and cluster.slots(cpus_per_trial, gpus_per_trial) < 1:
        raise UserError(f"{key}: a trial of {cpus_per_trial:g} CPUs and {gpus_per_trial:g} GPUs fits no node "
                        f"of the Ray cluster ({cluster.describe()}: "
                        f"{', '.join(f'{c:g} CPUs + {g:g} GPUs' for c, g in cluster.nodes)} per node); "
                        f"lower {key}.cpus_per_trial / {key}.gpus_per_trial")


def plan_trials(mode: str, cpus_per_trial: float, gpus_per_trial: float, workers_per_trial: int,
                max_concurrent: Optional[int], cluster: ClusterShape, key: str = "tune") -> TrialPlan:
    """How a search's trials are placed and how many run at once."""
    check_trial_request(cpus_per_trial, gpus_per_trial, cluster, key, inline=mode == "inline")
    use_gpu = gpus_per_trial > 0
    if mode == "inline":
        fit = cluster.slots(cpus_per_trial, gpus_per_trial)
        resources = {"cpu": cpus_per_trial, **({"gpu": gpus_per_trial} if use_gpu else {})}
        return TrialPlan("inline", resources, min(fit, max_concurrent or fit))
    # Distributed: the trial's actor holds a sliver; its workers share the rest of the trial's CPUs
    # and its GPUs. A trial holds its whole footprint while it runs, so the footprint counts.
    worker = WorkerPlan(workers_per_trial, (cpus_per_trial - TRIAL_ACTOR_CPU) / workers_per_trial,
                        gpus_per_trial / workers_per_trial)
    worker_slots = cluster.slots(worker.cpus_per_worker, worker.gpus_per_worker)
    if worker_slots < workers_per_trial:
        raise UserError(f"{key}: a trial's {worker.describe()} do not fit the Ray cluster ({cluster.describe()})")
    by_cpu = math.floor(cluster.cpus / cpus_per_trial + _EPS)
    by_gpu = math.floor(cluster.gpus / gpus_per_trial + _EPS) if use_gpu else by_cpu
    by_slots = worker_slots // workers_per_trial
    fit = max(1, min(by_cpu, by_gpu, by_slots))
    return TrialPlan("distributed", {"cpu": TRIAL_ACTOR_CPU}, min(fit, max_concurrent or fit), worker)


@dataclass
class RunPlan:
    """Every stage's plan, made once before the first launch (reported in metrics.json)."""

    cluster: ClusterShape
    networks: dict[str, WorkerPlan] = field(default_factory=dict)  # framework -> its networks' workers

    def describe(self) -> dict:
        """The cluster the run was planned on (each model's own workers and device are its entry's)."""
        notes = {name: plan.note for name, plan in self.networks.items() if plan.note}
        return {"cluster": self.cluster.describe(), "nodes": len(self.cluster.nodes), "cpus": self.cluster.cpus,
                "gpus": self.cluster.gpus,
                "per_node": [{"cpus": cpus, "gpus": gpus} for cpus, gpus in self.cluster.nodes],
                **({"notes": notes} if notes else {})}


def assigned_gpu_ids() -> list:
    """The GPU ids Ray assigned this process; none outside Ray (the driver has none either)."""
    import ray

    return list(ray.get_gpu_ids()) if ray.is_initialized() else []
