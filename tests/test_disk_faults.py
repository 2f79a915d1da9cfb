"""A run on a full disk or a read-only one: one `error:` line (exit 2) at or before the failing
write, and nothing that looks like a finished run (no metrics.json, no report) left behind; the
run record that is there is whole. Needs a small tmpfs of its own (root and mount rights); skipped
with the reason where it cannot mount one."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

RAYFIT = str(Path(sys.executable).with_name("rayfit"))
SMALL = ["--data", "iris", "--set", "torch.enabled=false", "--set", "keras.enabled=false",
         "--set", "tune.enabled=false", "--set", "ray.address=local"]


@pytest.fixture
def tmpfs(tmp_path):
    def mount(options: str) -> Path:
        where = tmp_path / f"fs-{len(mounted)}"
        where.mkdir()
        done = subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(where)], capture_output=True, text=True)
        if done.returncode != 0:
            pytest.skip(f"cannot mount a tmpfs here: {done.stderr.strip() or done.returncode}")
        mounted.append(where)
        return where

    mounted: list[Path] = []
    yield mount
    for where in mounted:
        subprocess.run(["umount", str(where)], capture_output=True)


def test_a_full_disk_is_an_error_and_leaves_no_run_that_looks_finished(tmpfs, ray_session, capfd):
    """In this process, on the suite's Ray: the disk is what is tested, not a fresh Ray's start."""
    from rayfit.cli import main

    disk = tmpfs("size=256k")  # room for the record and a small model, not a 335 kB random forest
    run = disk / "run"
    code = main(["run", *SMALL, "--set", "baselines.models=[dummy,random_forest]", "--out", str(run)])
    err = capfd.readouterr().err
    assert code == 2, err[-2000:]
    last = err.strip().splitlines()[-1]
    assert last.startswith("error: cannot write") and "No space left on device" in last
    assert "Traceback" not in err
    assert not (run / "metrics.json").exists() and not (run / "report.html").exists() and not (run / "model").exists()
    assert json.loads((run / "run_state.json").read_text())["status"] == "running"  # whole, and resumable


def test_a_read_only_disk_is_an_error_before_anything_runs(tmpfs):
    disk = tmpfs("ro,size=64k")
    done = subprocess.run([RAYFIT, "run", *SMALL, "--out", str(disk / "run")], capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 2, done.stderr[-2000:]
    assert done.stderr.strip().splitlines() == [
        f"error: --out {disk / 'run'}: cannot create the run directory: Read-only file system"]
