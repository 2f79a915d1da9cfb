"""A real two-node Ray cluster on loopback (cluster/local.py): both nodes serve work, token
authentication keeps out a client without the token, and `down` stops exactly what `up` started."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from rayfit.cli import main
from rayfit.cluster.local import LocalCluster, group_processes

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
    finally:
        groups = [node.pid for node in cluster.nodes]
        assert main(["cluster", "down", "--dir", str(directory)]) == 0
    assert not any(group_processes(pgid) for pgid in groups)  # every process of both nodes is gone
    assert not (directory / "cluster.json").exists() and not (directory / "auth_token").exists()
