"""The cluster configs in cluster/configs/ (KubeRay RayCluster and RayJob, a `ray up` launcher
config, the image's Dockerfile) parse, agree with each other and name the Ray that rayfit is
installed with, so a cluster built from them runs the Ray and the rayfit these tests ran."""
from __future__ import annotations

import re
import shlex
import sys
from pathlib import Path

import pytest
import ray
import yaml

from rayfit.cli import build_parser

CONFIGS = Path(__file__).resolve().parents[1] / "cluster" / "configs"


def _version() -> str:
    text = (CONFIGS.parents[1] / "pyproject.toml").read_text()
    return re.search(r'^version = "([^"]+)"', text, re.M).group(1)


IMAGE = f"rayfit:{_version()}-ray{ray.__version__}-gpu"


def _images(node) -> list[str]:
    """Every `image:` anywhere in a parsed manifest."""
    if isinstance(node, dict):
        return [v for k, v in node.items() if k == "image"] + [i for v in node.values() for i in _images(v)]
    if isinstance(node, list):
        return [i for v in node for i in _images(v)]
    return []


def test_the_image_is_built_on_the_installed_ray_and_python():
    dockerfile = (CONFIGS / "Dockerfile").read_text()
    base = re.search(r"^FROM (\S+)", dockerfile, re.M).group(1)
    assert base == f"rayproject/ray:{ray.__version__}-py{sys.version_info.major}{sys.version_info.minor}-gpu"
    assert f"ray[default,train,tune]=={ray.__version__}" in dockerfile
    assert IMAGE in dockerfile  # the tag its build command gives is the one the manifests pull
    for folder in ("rayfit", "trainers", "tuning", "evaluation", "cluster"):  # every package-dir folder
        assert f"COPY --chown=ray:users {folder} ./{folder}" in dockerfile


@pytest.mark.parametrize("name,kind", [("raycluster.yaml", "RayCluster"), ("rayjob.yaml", "RayJob")])
def test_kuberay_manifests_name_the_installed_ray_and_a_gpu_worker_group(name, kind):
    manifest = yaml.safe_load((CONFIGS / name).read_text())
    assert manifest["apiVersion"] == "ray.io/v1" and manifest["kind"] == kind
    spec = manifest["spec"] if kind == "RayCluster" else manifest["spec"]["rayClusterSpec"]
    assert spec["rayVersion"] == ray.__version__
    assert set(_images(manifest)) == {IMAGE}
    assert spec["headGroupSpec"]["rayStartParams"]["num-cpus"] == "0"
    (group,) = spec["workerGroupSpecs"]
    assert group["minReplicas"] <= group["replicas"] <= group["maxReplicas"]
    (container,) = group["template"]["spec"]["containers"]
    assert container["resources"]["limits"]["nvidia.com/gpu"] == "1"
    if kind == "RayJob":  # its entrypoint is a rayfit command line the CLI accepts
        argv = shlex.split(manifest["spec"]["entrypoint"])
        assert argv[:3] == ["python", "-m", "rayfit.cli"]
        args = build_parser().parse_args(argv[3:])
        assert args.command == "run" and args.out.startswith("s3://")
        mounts = spec["headGroupSpec"]["template"]["spec"]["containers"][0]["volumeMounts"]
        assert any(args.config.startswith(m["mountPath"] + "/") for m in mounts)


def test_the_launcher_config_has_a_cpu_head_and_autoscaling_gpu_workers():
    config = yaml.safe_load((CONFIGS / "aws-gpu.yaml").read_text())
    types = config["available_node_types"]
    assert config["head_node_type"] in types and types[config["head_node_type"]]["resources"] == {"CPU": 0}
    workers = [t for name, t in types.items() if name != config["head_node_type"]]
    assert workers and all(t["min_workers"] == 0 < t["max_workers"] <= config["max_workers"] for t in workers)
    assert all(t["node_config"]["InstanceType"].startswith(("g", "p")) for t in workers)  # GPU instances
    assert config["docker"]["image"] == IMAGE
