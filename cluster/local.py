"""A real multi-node Ray cluster on this machine, over loopback: for the tests and for development.

`rayfit cluster up` starts a head node and worker nodes with `ray start --block`, each in a process
group of its own, each with its own CPU and (logical) GPU counts and a custom resource naming it
(`rayfit_node_0` for the head, `rayfit_node_1`, ...), so work can be pinned to a node. Token
authentication is on: a fresh token is written to the cluster's directory (mode 0600) and handed to
the nodes through the environment; a client needs `RAY_AUTH_MODE=token` and `RAY_AUTH_TOKEN` (or
`RAY_AUTH_TOKEN_PATH`), as `env()` gives. `rayfit cluster down` stops exactly the process groups
`up` started (and removes the worker nodes' temp dirs it made): never another Ray on the machine.

Each worker node has a Ray temp dir of its own, as a node on its own machine would: nodes that share
one (Ray's default, /tmp/ray) share their session's `runtime_resources`, and a worker node's
runtime-env agent, installing a job's working_dir for its first worker, deletes and unpacks again
(ray/_private/runtime_env/packaging.py, `overwrite=True`) the directory the job's driver on the head
runs in. The driver's working directory then no longer exists, and whatever resolves a relative
path against it fails: seen, Tune's ExperimentAnalysis of a search on S3 storage
(`os.path.relpath` of the bucket's paths: FileNotFoundError) after every trial had finished. The
head keeps Ray's default temp dir, where Ray's pointer to the cluster (`auto`) is looked for.

The cluster's directory holds `cluster.json` (address, dashboard URL, the nodes and their process
ids) and `auth_token`; `rayfit cluster up` prints the address and where the token is, never the token.
"""
from __future__ import annotations

import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Optional

from rayfit.errors import read_json, UserError

CLUSTER_FILE = "cluster.json"
TOKEN_FILE = "auth_token"
DEFAULT_DIR = Path.home() / ".cache" / "rayfit" / "local-cluster"


@dataclass
class Node:
    cpus: float
    gpus: int = 0  # logical GPUs where the machine has none: Ray schedules them, CUDA stays absent
    pid: int = 0  # the `ray start --block` process, leader of the node's process group
    started: float = 0.0  # that process's start time: `down` signals the group only while it is that process's
    temp_dir: str = ""  # a worker node's own Ray temp dir, made by `up` ("": Ray's default, the head's)

    def resource(self, index: int) -> str:
        return f"rayfit_node_{index}"


@dataclass
class LocalCluster:
    directory: Path
    nodes: list[Node] = field(default_factory=list)
    port: int = 0  # the head's GCS port
    dashboard_port: int = 0

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def dashboard_url(self) -> str:
        return f"http://127.0.0.1:{self.dashboard_port}"

    @property
    def token_path(self) -> Path:
        return self.directory / TOKEN_FILE

    def env(self) -> dict:
        """What a client of this cluster needs in its environment (the token by path, not value)."""
        return {"RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN_PATH": str(self.token_path)}

    # -- up and down
    @classmethod
    def up(cls, directory: Path, cpus: list[float], gpus: Optional[list[int]] = None,
           timeout_s: float = 90) -> "LocalCluster":
        """Start a head (cpus[0]) and a worker node per further entry; wait until all are alive."""
        directory = Path(directory)
        if (directory / CLUSTER_FILE).exists():
            raise UserError(f"a local cluster is already recorded in {directory}; "
                            f"`rayfit cluster down --dir {directory}` first")
        directory.mkdir(parents=True, exist_ok=True)
        gpus = gpus or [0] * len(cpus)
        if len(gpus) != len(cpus):
            raise UserError(f"--gpus names {len(gpus)} nodes, --cpus {len(cpus)}")
        cluster = cls(directory, [Node(c, g) for c, g in zip(cpus, gpus)], *_free_ports(2))
        fd = os.open(cluster.token_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as handle:
            handle.write(secrets.token_hex(32))
        try:
            for index, node in enumerate(cluster.nodes):
                node.pid = cluster._start_node(index, node)
                node.started = _start_time(node.pid) or 0.0
                cluster._save()  # recorded as soon as started: `down` can always stop it
                if index == 0:
                    _wait_for_port(cluster.port, timeout_s, cluster._log(0))
            cluster.wait_for_nodes(timeout_s)
        except BaseException:
            cluster.down()
            raise
        return cluster

    def _start_node(self, index: int, node: Node) -> int:
        agent, agent_grpc, runtime_env, metrics = _free_ports(4)
        command = [str(Path(sys.executable).with_name("ray")), "start", "--block", "--disable-usage-stats",
                   "--node-ip-address=127.0.0.1", f"--num-cpus={node.cpus:g}", f"--num-gpus={node.gpus}",
                   f"--resources={json.dumps({node.resource(index): 1})}",
                   # Each node's agents on ports of their own: Ray's defaults are fixed numbers, taken
                   # by another node of this machine (or another Ray), and a node whose agent could not
                   # start takes no jobs ("No available agent to submit job").
                   f"--dashboard-agent-listen-port={agent}", f"--dashboard-agent-grpc-port={agent_grpc}",
                   f"--runtime-env-agent-port={runtime_env}", f"--metrics-export-port={metrics}"]
        if index == 0:
            command += ["--head", f"--port={self.port}", "--dashboard-host=127.0.0.1",
                        f"--dashboard-port={self.dashboard_port}", "--include-dashboard=true"]
        else:
            # Its own temp dir: its runtime-env agent must not unpack a job's working_dir over the
            # one the head's driver runs in (see the module's docstring).
            node.temp_dir = tempfile.mkdtemp(prefix=f"rayfit-node{index}-", dir=os.environ.get("RAY_TMPDIR") or None)
            command += [f"--address={self.address}", f"--temp-dir={node.temp_dir}"]
        env = {**os.environ, **self.env()}
        env.pop("RAY_ADDRESS", None)
        # `down` signals the node's whole process group: its raylet and GCS are gone at once, and
        # Ray's graceful drain on SIGTERM (2.60: up to 30 s) would only wait for them to answer.
        env.setdefault("RAY_GRACEFUL_SHUTDOWN_DRAIN_TIMEOUT_S", "0")
        # Jobs run `python` from the nodes' PATH: this environment's, where rayfit is installed.
        env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
        with open(self._log(index), "w") as log:
            process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env=env,
                                       start_new_session=True)  # its own process group: `down` stops just it
        return process.pid

    def _log(self, index: int) -> Path:
        return self.directory / f"node-{index}.log"

    def wait_for_nodes(self, timeout_s: float) -> None:
        """Until every node is alive in the cluster (asked from a client process: this process may
        hold another Ray session)."""
        probe = (f"import ray, time\n"
                 f"ray.init(address='{self.address}', logging_level='ERROR')\n"
                 f"deadline = time.monotonic() + {timeout_s}\n"
                 f"while sum(n['Alive'] for n in ray.nodes()) < {len(self.nodes)} and time.monotonic() < deadline:\n"
                 f"    time.sleep(0.2)\n"
                 f"print(sum(n['Alive'] for n in ray.nodes()))\n")
        outcome = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True,
                                 env={**os.environ, **self.env()}, timeout=timeout_s + 60)
        alive = outcome.stdout.strip().splitlines()[-1] if outcome.stdout.strip() else "0"
        if outcome.returncode != 0 or int(alive) < len(self.nodes):
            logs = "; ".join(f"{p.name}: {p.read_text()[-300:]}" for p in sorted(self.directory.glob("node-*.log")))
            raise UserError(f"the local cluster did not come up ({alive}/{len(self.nodes)} nodes alive "
                            f"after {timeout_s:g} s): {outcome.stderr[-300:]} {logs}")

    def down(self, timeout_s: float = 30) -> int:
        """Stop every node this cluster started (SIGTERM to its process group, then SIGKILL);
        how many were running."""
        running = [node.pid for node in self.nodes if node.pid and _group_alive(node.pid) and _still_the_node(node)]
        for pid in running:
            _signal_group(pid, signal.SIGTERM)
        deadline = time.monotonic() + timeout_s
        while any(_group_alive(pid) for pid in running) and time.monotonic() < deadline:
            time.sleep(0.2)
        for pid in running:
            _signal_group(pid, signal.SIGKILL)
            try:
                os.waitpid(pid, os.WNOHANG)  # reap the `ray start` process where this process started it
            except ChildProcessError:
                pass
        deadline = time.monotonic() + 10
        while any(_group_alive(pid) for pid in running) and time.monotonic() < deadline:
            time.sleep(0.1)  # SIGKILL is delivered, not yet acted on
        for node in self.nodes:
            if node.temp_dir:
                shutil.rmtree(node.temp_dir, ignore_errors=True)
        (self.directory / CLUSTER_FILE).unlink(missing_ok=True)
        self.token_path.unlink(missing_ok=True)
        self._forget_pointer()
        return len(running)

    def _forget_pointer(self) -> None:
        """`ray start --head` left Ray's pointer to this cluster in its temp dir; stopped by signal,
        the cluster does not remove it, and Ray's own "auto" lookups would follow it to a dead
        address (Ray Train's placement-group cleaners among them)."""
        from rayfit.cluster.session import pointer_file

        pointer = Path(pointer_file())
        try:
            if pointer.read_text().strip().endswith(f":{self.port}"):
                pointer.unlink()
        except OSError:
            pass

    # -- the record
    def _save(self) -> None:
        record = {"address": self.address, "dashboard_url": self.dashboard_url, "port": self.port,
                  "dashboard_port": self.dashboard_port, "nodes": [asdict(n) for n in self.nodes]}
        (self.directory / CLUSTER_FILE).write_text(json.dumps(record, indent=2))

    @classmethod
    def load(cls, directory: Path) -> "LocalCluster":
        path = Path(directory) / CLUSTER_FILE
        if not path.exists():
            raise UserError(f"no local cluster recorded in {directory}")
        record = read_json(path)
        return cls(Path(directory), [Node(**n) for n in record["nodes"]], record["port"], record["dashboard_port"])


# Ports for a local cluster's servers come from below the kernel's ephemeral range: a port the kernel
# hands out (to any outgoing connection of the nodes started meanwhile) could be taken again before
# the node that was given it binds it, as a runtime-env agent found ("Address already in use"). Ray's
# workers take 10002-19999.
_LOWEST_PORT = 20_000


def _ephemeral_floor() -> int:
    try:
        return int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return 32_768


def _free_ports(count: int) -> list[int]:
    """`count` distinct ports free on every address of this machine, outside the ephemeral range.
    Each is bound on all addresses (Ray's agents listen on the node's own IP, where a port free on
    127.0.0.1 alone may be taken), and all are held until all are chosen."""
    import random

    highest = _ephemeral_floor()
    if highest - _LOWEST_PORT < 1000:  # no room below the ephemeral range: let the kernel choose
        return _kernel_ports(count)
    sockets, ports = [], []
    try:
        while len(ports) < count:
            port = random.randrange(_LOWEST_PORT, highest)
            sock = socket.socket()
            try:
                sock.bind(("", port))
            except OSError:
                sock.close()
                continue
            sockets.append(sock)
            ports.append(port)
        return ports
    finally:
        for sock in sockets:
            sock.close()


def _kernel_ports(count: int) -> list[int]:
    sockets = []
    try:
        for _ in range(count):
            sock = socket.socket()
            sockets.append(sock)
            sock.bind(("", 0))
        return [sock.getsockname()[1] for sock in sockets]
    finally:
        for sock in sockets:
            sock.close()


def _wait_for_port(port: int, timeout_s: float, log: Path) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        with socket.socket() as sock:
            sock.settimeout(0.5)
            if sock.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.2)
    raise UserError(f"the head node did not open port {port} within {timeout_s:g} s: {log.read_text()[-500:]}")


def group_processes(pgid: int) -> list:
    """The live processes of a process group (exited ones not yet reaped do not count)."""
    import psutil

    found = []
    for proc in psutil.process_iter(["pid", "status"]):
        try:
            if proc.info["status"] != psutil.STATUS_ZOMBIE and os.getpgid(proc.pid) == pgid:
                found.append(proc)
        except (ProcessLookupError, psutil.NoSuchProcess):
            pass
    return found


def _start_time(pid: int) -> Optional[float]:
    import psutil

    try:
        return psutil.Process(pid).create_time()
    except (psutil.NoSuchProcess, psutil.AccessDenied):
        return None


def _still_the_node(node: Node) -> bool:
    """Whether the process group `node.pid` names is still that node's. While any process of a
    group lives, the kernel hands its number to no new process; so a live leader with another start
    time (or, in a record without start times, one that is not `ray start`) means the node's group
    is gone and its number was reused: that group is someone else's and is never signalled."""
    import psutil

    try:
        leader = psutil.Process(node.pid)
        if node.started:
            return abs(leader.create_time() - node.started) < 1.0
        command = leader.cmdline()
        return "start" in command and any(Path(part).name == "ray" for part in command)
    except psutil.NoSuchProcess:
        return True  # the leader exited; its group's other processes (raylet, GCS) keep the number
    except psutil.AccessDenied:
        return False  # another user's process: not a node this user started


def _group_alive(pgid: int) -> bool:
    return bool(group_processes(pgid))


def _signal_group(pgid: int, sig: int) -> None:
    try:
        os.killpg(pgid, sig)
    except (ProcessLookupError, PermissionError):
        pass
