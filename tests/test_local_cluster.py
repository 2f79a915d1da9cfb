"""A real two-node Ray cluster on loopback (cluster/local.py): both nodes serve work, token
authentication keeps out a client without the token, an experiment submitted as a Ray job runs
there and writes its run to the shared storage, and `down` stops exactly what `up` started."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from sklearn.datasets import load_iris

from rayfit.cli import main
from rayfit.cluster.local import LocalCluster, group_processes
from rayfit.cluster.session import pointer_file

pytestmark = pytest.mark.cluster

# Runs in a client process with the cluster's environment: one task pinned to each node.
WHERE_TASKS_RAN = """
import json, ray
ray.init(address="{address}", logging_level="ERROR")
where = ray.remote(lambda: ray.get_runtime_context().get_node_id())
nodes = [ray.get(where.options(resources={{f"rayfit_node_{{i}}": 1}}).remote()) for i in range(2)]
print(json.dumps({{"nodes": nodes, "alive": sum(n["Alive"] for n in ray.nodes()),
                  "cpus": ray.cluster_resources().get("CPU"), "gpus": ray.cluster_resources().get("GPU", 0)}}))
"""


def test_a_two_node_cluster_serves_work_on_both_nodes_and_stops_cleanly(tmp_path, capsys):
    directory = tmp_path / "cluster"
    assert main(["cluster", "up", "--cpus", "1,1", "--gpus", "0,2", "--dir", str(directory)]) == 0
    cluster = LocalCluster.load(directory)
    try:
        out = capsys.readouterr().out
        assert cluster.address in out and "RAY_AUTH_TOKEN_PATH" in out
        assert cluster.token_path.read_text() not in out  # the token itself is never printed
        assert oct(cluster.token_path.stat().st_mode & 0o777) == "0o600"

        client = subprocess.run([sys.executable, "-c", WHERE_TASKS_RAN.format(address=cluster.address)],
                                capture_output=True, text=True, env={**os.environ, **cluster.env()}, timeout=120)
        assert client.returncode == 0, client.stderr[-2000:]
        seen = json.loads(client.stdout.strip().splitlines()[-1])
        assert seen["alive"] == 2 and len(set(seen["nodes"])) == 2  # each pinned task ran on its own node
        assert seen["cpus"] == 2 and seen["gpus"] == 2  # the worker node's logical GPUs

        # Without the token, rayfit refuses to join: one error line naming token authentication.
        env = {k: v for k, v in os.environ.items() if not k.startswith("RAY_AUTH")}
        refused = subprocess.run([str(Path(sys.executable).with_name("rayfit")), "run",
                                  "--address", cluster.address, "--out", str(tmp_path / "run"),
                                  "--set", "ray.connect_timeout_s=20"],
                                 capture_output=True, text=True, env={**env, "HOME": str(tmp_path)}, timeout=120)
        assert refused.returncode == 2, refused.stderr[-2000:]
        assert refused.stderr.startswith("error:") and "token" in refused.stderr
        assert not (tmp_path / "run").exists()

        # An experiment submitted as a Ray job: its local data file travels with it, its progress
        # comes back here, and its run directory lands in the shared storage.
        data = tmp_path / "rows.csv"
        load_iris(as_frame=True).frame.to_csv(data, index=False)
        argv = ["submit", "--data", str(data), "--target", "target", "--address", cluster.dashboard_url,
                "--storage", str(tmp_path / "storage"), "--set", "torch.enabled=false", "--set", "keras.enabled=false",
                "--set", "tune.enabled=false", "--set", "baselines.models=[dummy,linear]",
                "--set", "report.importance_repeats=1"]
        submitted = subprocess.run([str(Path(sys.executable).with_name("rayfit")), *argv], capture_output=True,
                                   text=True, env={**os.environ, **cluster.env()}, timeout=300)
        assert submitted.returncode == 0, submitted.stdout[-2000:] + submitted.stderr[-2000:]
        lines = submitted.stdout.splitlines()
        assert lines[0].startswith("job: ") and any("evaluate: done, best" in line for line in lines)
        runs = list((tmp_path / "storage").glob("*/metrics.json"))
        assert len(runs) == 1 and json.loads(runs[0].read_text())["best_model"] in ("dummy", "linear")

        listed = subprocess.run([str(Path(sys.executable).with_name("rayfit")), "jobs", "list", "--address",
                                 cluster.dashboard_url], capture_output=True, text=True,
                                env={**os.environ, **cluster.env()}, timeout=120)
        assert lines[0].removeprefix("job: ") in listed.stdout and "SUCCEEDED" in listed.stdout
        assert str(runs[0].parent) in listed.stdout  # the job's run, from its metadata
    finally:
        groups = [node.pid for node in cluster.nodes]
        assert main(["cluster", "down", "--dir", str(directory)]) == 0
    assert not any(group_processes(pgid) for pgid in groups)  # every process of both nodes is gone
    assert not (directory / "cluster.json").exists() and not (directory / "auth_token").exists()
    pointer = Path(pointer_file())  # Ray's "auto" lookups must not follow a pointer to the stopped cluster
    assert not (pointer.exists() and pointer.read_text().strip().endswith(f":{cluster.port}"))
