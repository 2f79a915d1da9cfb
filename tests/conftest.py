"""Shared fixtures: one Ray session for the whole run, tiny data sets, a CLI runner."""
from __future__ import annotations

import hashlib
import json
import os
import tempfile
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import rayfit  # noqa: F401  (sets TF_USE_LEGACY_KERAS before anything imports TensorFlow)


def _has_gpu() -> bool:
    try:
        import torch

        return torch.cuda.is_available()
    except Exception:
        return False


# fixtures that bring Ray: the shared session, or rayfit commands in subprocesses that start their own
RAY_FIXTURES = {"ray_session", "rayfit_command"}


def pytest_collection_modifyitems(config, items):
    # The fast tier (`make test-fast`: -m "not slow and not cluster") is the unit tests and the one
    # smoke run: a test that needs the shared Ray session is slow unless it is that run.
    for item in items:
        if RAY_FIXTURES & set(item.fixturenames) and "smoke" not in item.keywords:
            item.add_marker(pytest.mark.slow)
    if _has_gpu():
        return
    skip = pytest.mark.skip(reason="needs a CUDA GPU")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip)


@pytest.fixture(scope="session")
def ray_session():
    """One Ray session for every test that needs Ray: start-up costs seconds on 2 cores."""
    import ray

    from rayfit.cluster.session import ensure_ray

    # local: a private instance of known size, even where a `ray start` cluster or RAY_ADDRESS exists
    ensure_ray("local", num_cpus=2)
    yield ray
    ray.shutdown()


@pytest.fixture(autouse=True)
def no_worker_group_outlives_its_test():
    """Each test starts on a free cluster: a Ray Train controller or worker group a test left behind
    (a failed test's, or a rare straggler's: see cluster/orphans.py) is stopped after it, instead of
    holding CPUs that every later test would wait for."""
    yield
    import ray

    if ray.is_initialized():
        from rayfit.cluster.orphans import settle_worker_groups

        settle_worker_groups(timeout_s=5)


def messy_frame(rows: int = 360, seed: int = 0) -> pd.DataFrame:
    """A small CSV-like table with what real files have: categories, gaps, dates, an ID, a constant."""
    rng = np.random.default_rng(seed)
    num1, num2 = rng.standard_normal(rows), rng.standard_normal(rows)
    city = rng.choice(["paris", "lyon", "nice", "lille"], rows)
    effect = pd.Series(city).map({"paris": 1.2, "lyon": -1.2, "nice": 0.4, "lille": -0.4}).to_numpy()
    label = np.where(num1 + num2 + effect + 0.3 * rng.standard_normal(rows) > 0, "yes", "no")
    frame = pd.DataFrame({
        "customer_id": np.arange(1000, 1000 + rows),
        "num1": num1.round(4),
        "num2": num2.round(4),
        "city": city,
        "signup": pd.date_range("2024-01-01", periods=rows, freq="D").strftime("%Y-%m-%d"),
        "const": "same",
        "label": label,
    })
    frame.loc[rng.choice(rows, rows // 10, replace=False), "num1"] = np.nan
    frame.loc[rng.choice(rows, rows // 10, replace=False), "city"] = None
    return frame


@pytest.fixture(scope="session")
def messy_csv(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("data") / "customers.csv"
    messy_frame().to_csv(path, index=False)
    return path


# The suite's one full run: what users set to train data-parallel (both frameworks through Ray Train,
# 2 workers each), a search, every model exported, the run logged to MLflow. The end-to-end, serve,
# report and tracking tests all read it instead of each training its own.
FULL_RUN = ["torch.epochs=20", "keras.epochs=20", "tune.num_samples=4", "tune.max_t=6", "tune.grace_period=2",
            "torch.launch=ray_train", "keras.launch=ray_train",
            # networks in the folds: tests/test_smoke.py; here they are chosen on validation
            "evaluation.cv_networks=false",
            "export.models=all", "tracking=mlflow"]


@contextmanager
def terminal_capture():
    """Capture fds 1 and 2 as a terminal would see them (what rayfit shows the user)."""
    with tempfile.TemporaryFile(mode="w+") as sink:
        saved = {fd: os.dup(fd) for fd in (1, 2)}
        for fd in (1, 2):
            os.dup2(sink.fileno(), fd)
        text = {}
        try:
            yield text
        finally:
            for fd, copy in saved.items():
                os.dup2(copy, fd)
                os.close(copy)
            sink.seek(0)
            text["out"] = sink.read()


@pytest.fixture(scope="session")
def finished_run(tmp_path_factory, messy_csv, ray_session) -> dict:
    """`rayfit run` of messy_csv with FULL_RUN: its directory, what the terminal showed, its metrics.
    Tests read it and never change it (copy it first)."""
    from rayfit.cli import main

    out = tmp_path_factory.mktemp("runs") / "customers"
    argv = ["run", "--data", str(messy_csv), "--target", "label", "--out", str(out)]
    for override in FULL_RUN:
        argv += ["--set", override]
    with terminal_capture() as terminal:
        code = main(argv)
    assert code == 0, terminal.get("out")
    return {"dir": out, "terminal": terminal["out"], "metrics": json.loads((out / "metrics.json").read_text())}


def tree_digest(root: Path) -> str:
    """A digest of every file name and content under root: proof that nothing changed."""
    digest = hashlib.sha256()
    for path in sorted(Path(root).rglob("*")):
        digest.update(str(path.relative_to(root)).encode())
        if path.is_file():
            digest.update(path.read_bytes())
    return digest.hexdigest()


@pytest.fixture(scope="session")
def chromium() -> str:
    """Headless Chromium for the tests that look at the report as a person would (tests/browser.py)."""
    from browser import find_chromium

    return find_chromium()
