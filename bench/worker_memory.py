"""Peak memory of Ray Train worker processes, read from outside them.

A check on the loop's own `peak_rss_mb` from outside the workers: a driver thread watches this process's
descendants (a local Ray session's workers are children of its raylet, which this process
started: another Ray session on the machine is never counted) whose process title names a Ray
Train worker (`anywhere=True`: any process on the machine, for a cluster this process did not
start). For each it keeps the kernel's high-water mark of resident memory (VmHWM in
/proc/PID/status: the true peak, not a sample of it), and, sampled every 0.2 s, the largest unique
set size, anonymous resident memory (RssAnon: the process's own heap) and shared resident memory
(RssShmem: the object store's pages it has read, which stay mapped, and counted in its resident
set, after the objects are freed; they belong to the store, whose size is fixed).
"""
from __future__ import annotations

from typing import Optional

import psutil

from bench.harness import Sampler

WORKER_TITLE = "RayTrainWorker"  # Ray sets worker process titles to ray::<actor class>.<method>


def _status_mb(pid: int, *fields: str) -> dict[str, Optional[float]]:
    """Fields of /proc/PID/status in MB (the kernel gives kB)."""
    found: dict[str, Optional[float]] = dict.fromkeys(fields)
    try:
        with open(f"/proc/{pid}/status") as status:
            for line in status:
                name = line.split(":", 1)[0]
                if name in found:
                    found[name] = int(line.split()[1]) / 1024
    except OSError:
        pass
    return found


def _high_water_mb(pid: int) -> Optional[float]:
    return _status_mb(pid, "VmHWM")["VmHWM"]


class PeakWorkerMemory(Sampler):
    """with PeakWorkerMemory() as memory: ...; memory.summary() -> peak MB per worker and the largest."""

    def __init__(self, interval_s: float = 0.2, title: str = WORKER_TITLE, anywhere: bool = False):
        super().__init__(interval_s)
        self.title = title
        self.anywhere = anywhere  # every process on the machine: the workers of a cluster this process did not start
        self.peaks: dict[int, dict] = {}

    def _workers(self) -> list[psutil.Process]:
        found = []
        for process in psutil.process_iter() if self.anywhere else psutil.Process().children(recursive=True):
            try:
                if self.title in " ".join(process.cmdline()):
                    found.append(process)
            except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
                continue
        return found

    def sample(self) -> None:
        for process in self._workers():
            try:
                uss = process.memory_full_info().uss / 2**20
            except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
                continue
            status = _status_mb(process.pid, "VmHWM", "RssAnon", "RssShmem")
            peak = self.peaks.setdefault(process.pid, {"peak_rss_mb": 0.0, "peak_uss_mb": 0.0, "peak_anon_mb": 0.0,
                                                       "peak_shmem_mb": 0.0})
            peak["peak_rss_mb"] = max(peak["peak_rss_mb"], status["VmHWM"] or 0.0)
            peak["peak_uss_mb"] = max(peak["peak_uss_mb"], uss)
            # the process's own heap (anonymous private memory), and the shared memory it maps: the
            # object store's pages it has read, counted in its resident set but owned by the store
            peak["peak_anon_mb"] = max(peak["peak_anon_mb"], status["RssAnon"] or 0.0)
            peak["peak_shmem_mb"] = max(peak["peak_shmem_mb"], status["RssShmem"] or 0.0)

    def summary(self) -> dict:
        workers = list(self.peaks.values())
        return {"workers_seen": len(workers),
                "peak_rss_mb": max((w["peak_rss_mb"] for w in workers), default=None),
                "peak_uss_mb": max((w["peak_uss_mb"] for w in workers), default=None),
                "peak_anon_mb": max((w["peak_anon_mb"] for w in workers), default=None),
                "peak_shmem_mb": max((w["peak_shmem_mb"] for w in workers), default=None),
                "per_worker": workers}
