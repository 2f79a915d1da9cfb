"""GPU scheduling without GPU hardware: Ray's logical GPUs (tests/logical_gpus.py, its own Ray)."""
from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow  # its own Ray, in a subprocess


@pytest.fixture(scope="module")
def report():
    script = Path(__file__).with_name("logical_gpus.py")
    done = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=600)
    lines = [line for line in done.stdout.splitlines() if line.startswith("REPORT ")]
    assert done.returncode == 0 and lines, done.stderr[-3000:]
    return {"facts": json.loads(lines[-1].removeprefix("REPORT ")), "stderr": done.stderr}


def test_half_gpu_trials_run_four_at_once_on_two_gpus(report):
    facts = report["facts"]
    assert facts["trial_plan"] == "4 trials at once, each 0.25 CPU, 0.5 GPU"
    assert facts["trials"] == 4
    assert facts["least_free_gpus"] == 0  # all 4 were placed together


def test_a_group_of_two_gpu_workers_is_placed_and_trains_on_cpu_without_cuda(report):
    assert report["facts"]["group_runtime"] == {"device": "cpu", "workers": 2, "gpus_per_worker": 0, "amp": False}
    # each process that got a GPU without CUDA says so once: the two workers, not once per epoch
    said = [line for line in report["stderr"].splitlines() if "but CUDA is not available" in line]
    assert 2 <= len(said) <= 2 + 4, said


def test_a_baseline_with_a_gpu_mode_gets_a_gpu_and_without_cuda_trains_on_cpu(report):
    run = report["facts"]["baseline_run"]
    assert run["code"] == 0
    assert run["dummy"] == {"device": None, "device_reason": None}  # no GPU mode: no GPU asked for
    assert run["xgboost"]["device"] == "cpu"
    assert re.fullmatch(r"GPU \[\d\] assigned, but (this xgboost has no CUDA \(the xgboost-cpu package\)|"
                        r"CUDA is not available here)", run["xgboost"]["device_reason"]), run


def test_requests_above_the_clusters_gpus(report):
    facts = report["facts"]
    assert facts["explicit_error"] == "torch.workers: 8 GPU workers requested, the cluster has 2 GPUs (room for 2 such workers)"
    assert facts["auto_plan"] == "2 GPU workers x (0.25 CPU, 1 GPU)"  # gpu: auto fits the request
    assert "2 GPU workers instead of 8" in facts["auto_note"]
    assert facts["trial_error"] == "tune.gpus_per_trial: 8 GPUs per trial, the Ray cluster has 2"
