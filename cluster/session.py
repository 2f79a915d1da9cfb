"""Start or join Ray once per process, with the settings every rayfit stage relies on.

Where Ray comes from (`find_ray`, then `ensure_ray`):
- an address (`ray.address` / `--address`, else the `RAY_ADDRESS` variable): join it, or fail with a
  UserError naming it when nothing answers there within `connect_timeout_s`;
- `local`: a private Ray instance for this process, whatever else is running;
- nothing: the local cluster that `ray start` left a pointer to (Ray's `ray_current_cluster` file in
  its temp dir) if it answers, else a private instance. A pointer to a cluster that no longer answers
  is ignored, and the summary says so.

`ray.init` itself is not bounded: given a dead address it retries for minutes in C++, where no Python
signal handler runs (seen: a stale pointer, `rayfit run` silent and deaf to SIGTERM). So every address
is probed first, with a timeout, and `ray.init` is only asked to join one that answered.
"""
from __future__ import annotations

import os
import socket
import threading
import time
from dataclasses import dataclass
from typing import Optional
from urllib.parse import urlparse

import ray

from rayfit.errors import UserError

# Environment every Ray worker needs. TF_USE_LEGACY_KERAS: Keras 3 fails under
# MultiWorkerMirroredStrategy (keras-team/keras#20585, ray-project/ray#47464); tf-keras works.
WORKER_ENV = {"TF_USE_LEGACY_KERAS": "1", "TF_CPP_MIN_LOG_LEVEL": "2", "PYTHONWARNINGS": "ignore"}
WORKER_RUNTIME_ENV = {"env_vars": WORKER_ENV}  # a joined cluster's workers get it from the job

# Ray Train V2's controller polls its workers every 2 s by default, and a worker's per-epoch report
# waits for the next poll. Measured here (BENCHMARKS.md): 50 short epochs with a checkpoint each took
# 68 s polling every 1 s and 28 s every 0.25 s; the launch itself 10.3 s at 0.25 s, 12.3 s at 1 s.
# These are read by the controller.
TRAIN_ENV = {"RAY_TRAIN_HEALTH_CHECK_INTERVAL_S": "0.25", "RAY_TRAIN_ENABLE_PREEMPTION_WATCHER": "0"}

# RayTarget.source values that are not a settings key
POINTER = "pointer"  # the local cluster `ray start` recorded
PRIVATE = "private"  # start a Ray instance for this process
THIS_PROCESS = "this process"  # Ray is already initialised here (tests, notebooks)


@dataclass(frozen=True)
class RayTarget:
    """Where Ray will come from, decided from the settings and Ray's pointer file alone (no network)."""

    address: Optional[str]  # what to join; None: start a private instance
    source: str  # why: "ray.address", "RAY_ADDRESS", "ray.address: auto", POINTER, PRIVATE or THIS_PROCESS
    # Found on this machine by Ray's own discovery (the pointer file, or `auto`). Joined as "auto":
    # only then does ray.init use the local auth token (ray/_private/worker.py); the explicit
    # address would be refused when the cluster has token authentication on.
    found_here: bool = False

    def describe(self, connect_timeout_s: float) -> str:
        """What is about to happen, for the progress line shown while it happens."""
        if self.source == THIS_PROCESS:
            return "use this process's Ray session"
        if self.address is None:
            return "start a private Ray"
        if self.source == POINTER:
            return f"join the local cluster at {self.address} if it answers, else start a private Ray"
        return f"join {self.address} ({self.source}; up to {connect_timeout_s:g} s)"


@dataclass(frozen=True)
class RaySession:
    """What `ensure_ray` did."""

    started: bool  # this process started Ray, so it must stop it (ray.shutdown)
    summary: str  # one phrase for the progress line: which Ray, and why


def pointer_file() -> str:
    """Ray's record of the last `ray start` on this machine: <temp dir>/ray_current_cluster, where the
    temp dir is $RAY_TMPDIR/ray, else $TMPDIR/ray, else /tmp/ray (ray/_common/utils.py)."""
    from ray._common.utils import get_ray_address_file

    return get_ray_address_file(None)


def find_ray(address: Optional[str]) -> RayTarget:
    """Resolve the settings to a target. Ray's own order: an explicit address wins over RAY_ADDRESS,
    except `auto`, which RAY_ADDRESS overrides (ray/_private/worker.py, `init`)."""
    if ray.is_initialized():
        return RayTarget(ray.get_runtime_context().gcs_address, THIS_PROCESS)
    source = "ray.address"
    if address in (None, "auto") and os.environ.get("RAY_ADDRESS"):
        address, source = os.environ["RAY_ADDRESS"], "RAY_ADDRESS"
    if address == "local":
        return RayTarget(None, PRIVATE)
    if address is None:
        from ray._private.services import find_bootstrap_address

        pointer = find_bootstrap_address(None)
        return RayTarget(pointer, POINTER, found_here=True) if pointer else RayTarget(None, PRIVATE)
    if address == "auto":
        from ray._private.services import canonicalize_bootstrap_address_or_die

        try:  # the pointer file, else the one Ray cluster running on this machine
            return RayTarget(canonicalize_bootstrap_address_or_die("auto"), f"{source}: auto", found_here=True)
        except ConnectionError as exc:
            raise UserError(f"{source}: auto: {exc}") from None
    try:
        _host_port(address)
    except ValueError:
        raise UserError(f"{source}: {address!r} is not host:port, ray://host:port, auto or local") from None
    return RayTarget(address, source)


# A private Ray keeps its idle workers for a minute, not Ray's 1 s: a run's stages follow each other
# within seconds, and a worker that imported scikit-learn for the baselines (or torch for a network)
# serves the folds and the importance next instead of a fresh one paying those imports again (on 2
# cores, 2-4 s a stage; six small runs one after another on one Ray: 103 s before, 75 s after).
PRIVATE_RAY_CONFIG = {"idle_worker_killing_time_threshold_ms": 60_000}
# A private Ray's node also has one unit of BESIDE: the search that runs beside the models stage
# with one trial at a time holds it instead of a CPU (tuning/search.py, `trials_at_once_beside`).
BESIDE = "rayfit_beside"
_private_gcs: Optional[str] = None  # the address of the private Ray this process started last


def shutdown_ray() -> None:
    """ray.shutdown(), less the second Ray waits for its autoscaler monitor. Ray stops its processes
    one after another, each given a second to exit after SIGTERM before SIGKILL; the monitor (of
    no use to a run once it ends: nothing autoscales a private Ray) never exits on SIGTERM, so every
    private run's end waited a second for it (measured: shutdown 1.37 s, of which the monitor
    1.02 s). It is killed first, as Ray would a second later; the rest stop as Ray stops them."""
    from ray._private import ray_constants, worker

    processes = getattr(getattr(worker, "_global_node", None), "all_processes", None) or {}
    for info in processes.get(ray_constants.PROCESS_TYPE_MONITOR, []):
        try:
            info.process.kill()
            info.process.wait(timeout=5)
        except Exception:  # gone already, or not ours to wait for: Ray's own stop sees to it
            pass
    ray.shutdown()


def cluster_has(resource: str) -> bool:
    """Whether this process's Ray cluster has any of a custom resource (BESIDE: a private Ray)."""
    return ray.is_initialized() and ray.cluster_resources().get(resource, 0) > 0


def keeps_idle_workers() -> bool:
    """Whether this process's Ray keeps idle workers for a minute: a private Ray it started
    (PRIVATE_RAY_CONFIG). A joined cluster keeps them as its own configuration says (Ray's default:
    1 s once more of them are idle than it has CPUs), so a worker warmed by one stage may be gone
    by the next."""
    return ray.is_initialized() and _private_gcs is not None and ray.get_runtime_context().gcs_address == _private_gcs


# A private Ray's dashboard (`dashboard`; a run's `ray.dashboard`, off by default) costs about 2 s
# at start and a share of the cores throughout. Without it Ray Train's detached
# PlacementGroupCleaner cannot ask the State API whether a run's controller is gone: rayfit frees
# the stopped runs' workers and stops those cleaners itself (cluster/orphans.py).
def ensure_ray(address: Optional[str] = None, num_cpus: Optional[int] = None, dashboard: bool = True,
               connect_timeout_s: float = 15.0, num_gpus: Optional[int] = None) -> RaySession:
    """Initialise Ray unless this process already has a session (see the module's docstring)."""
    for key, value in {**WORKER_ENV, **TRAIN_ENV}.items():
        os.environ.setdefault(key, value)
    global _private_gcs
    target = find_ray(address)
    if target.source == THIS_PROCESS:
        return RaySession(False, f"this process's Ray session at {target.address}")
    note = " (ray.address: local)" if address == "local" else ""
    if target.address is not None:
        answers, problem = _probe(target.address, connect_timeout_s)
        if answers and (not problem or target.found_here):
            _init(target, "auto" if target.found_here else target.address)
            # A cluster has the resources it has: these two size a private instance only.
            ignored = [f"{key} ignored" for key, value in (("ray.num_cpus", num_cpus), ("ray.num_gpus", num_gpus))
                       if value is not None]
            where = f"the local cluster at {target.address}" if target.found_here else target.address
            why = "from `ray start`" if target.source == POINTER else target.source
            return RaySession(False, f"joined {where} ({'; '.join([why, *ignored])})")
        if target.source != POINTER:
            raise UserError(f"{target.source}: cannot join Ray at {target.address}: {problem}" if not answers
                            else f"{target.source}: Ray at {target.address} {problem}")
        note = f" (ignored a stale pointer to {target.address} in {pointer_file()}: {problem})"
    # "local", not None: None would follow RAY_ADDRESS or the pointer file inside ray.init.
    # Its dashboard (and the Jobs API behind it) answers this machine only.
    # Its processes inherit this one's environment, so the workers have WORKER_ENV without a job
    # runtime_env unless the user's own environment says otherwise; and only without one does Ray
    # use the workers it starts beside the raylet (the rest start once tasks ask: a second or two
    # of each CPU, on 2 cores).
    differs = {key: value for key, value in WORKER_ENV.items() if os.environ.get(key) != value}
    _init(target, "local", runtime_env={"env_vars": differs} if differs else None, num_cpus=num_cpus,
          num_gpus=num_gpus, include_dashboard=dashboard, dashboard_host="127.0.0.1", _system_config=PRIVATE_RAY_CONFIG,
          resources={BESIDE: 1})
    if ray.is_initialized():
        _private_gcs = ray.get_runtime_context().gcs_address
    return RaySession(True, "started a private Ray" + note)


def _init(target: RayTarget, address: str, runtime_env: Optional[dict] = WORKER_RUNTIME_ENV, **local) -> None:
    try:
        ray.init(address=address, runtime_env=runtime_env, log_to_driver=True, configure_logging=True, **local)
    except (ConnectionError, ray.exceptions.AuthenticationError) as exc:
        ray.shutdown()
        raise UserError(f"{target.source}: cannot join Ray at {target.address}: {exc}") from None
    except BaseException:
        # Cut short (a signal, a bug): stop whatever part of Ray this call started, so an
        # interrupted start-up leaves no Ray processes behind.
        ray.shutdown()
        raise


def _probe(address: str, timeout: float) -> tuple[bool, str]:
    """(does a Ray cluster answer at `address` within `timeout` s, what is wrong if anything).

    A TCP connection first (a dead cluster refuses it at once), then the protocol: Ray Client's gRPC
    for ray://, a GCS client otherwise. Both protocol checks can block for much longer than the
    timeout, so they run in a thread this one waits for: the wait can be interrupted by a signal.
    """
    deadline = time.monotonic() + timeout
    client = address.startswith("ray://")
    try:
        host, port = _host_port(address)
    except ValueError:  # a pointer file holding something else
        return False, f"{address!r} is not host:port"
    try:
        socket.create_connection((host, port), timeout=timeout).close()
    except socket.timeout:
        return False, f"no answer within {timeout:g} s"
    except socket.gaierror:
        return False, f"unknown host {host!r}"
    except OSError as exc:
        return False, (exc.strerror or str(exc)).lower()
    outcome: dict = {}

    def ask():
        try:
            if client:
                outcome["answer"] = _client_answers(host, port, max(0.1, deadline - time.monotonic()))
            else:
                from ray._raylet import GcsClient

                GcsClient(address=f"{host}:{port}")  # fetches the cluster id: the GCS must answer
                outcome["answer"] = True
        except ray.exceptions.AuthenticationError:
            outcome["auth"] = True
        except Exception as exc:  # noqa: BLE001 - whatever the client says, the cluster did not answer
            outcome["error"] = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__

    thread = threading.Thread(target=ask, name=f"rayfit-probe-{address}", daemon=True)
    thread.start()
    thread.join(max(0.0, deadline - time.monotonic()))
    if outcome.get("auth"):
        return True, ("requires token authentication: set RAY_AUTH_MODE=token and the cluster's token "
                      "(RAY_AUTH_TOKEN, or ~/.ray/auth_token)")
    if outcome.get("answer"):
        return True, ""
    if "error" in outcome:
        return False, f"a port is open there, but no Ray answers ({outcome['error']})"
    return False, f"a port is open there, but no Ray answers within {timeout:g} s"


def _client_answers(host: str, port: int, timeout: float) -> bool:
    """Whether a gRPC server (Ray Client's protocol) is ready at host:port within `timeout`."""
    import grpc

    if os.environ.get("RAY_USE_TLS", "0").lower() in ("1", "true"):
        return True  # a TLS handshake needs Ray's certificates; the TCP check has to do
    channel = grpc.insecure_channel(f"{host}:{port}")
    try:
        grpc.channel_ready_future(channel).result(timeout=timeout)
        return True
    except grpc.FutureTimeoutError:
        return False
    finally:
        channel.close()


def _host_port(address: str) -> tuple[str, int]:
    """host:port or ray://host:port -> (host, port); ValueError for anything else."""
    text = urlparse(address).netloc if address.startswith("ray://") else address
    host, sep, port = text.rpartition(":")
    if not sep or not host or not port.isdigit() or "/" in host:  # e.g. a dashboard's http:// address
        raise ValueError(text)
    return host.strip("[]"), int(port)
