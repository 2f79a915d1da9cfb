"""Bad input: exit code 2, one `error:` line naming the problem, nothing created or overwritten."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from conftest import messy_frame, tree_digest
from rayfit.cli import main


@pytest.fixture
def workdir(tmp_path, monkeypatch):
    """A working directory holding an earlier run and a few input files."""
    monkeypatch.chdir(tmp_path)
    earlier = tmp_path / "earlier"
    (earlier / "plots").mkdir(parents=True)
    (earlier / "metrics.json").write_text('{"best_model": "linear"}')
    (earlier / "plots" / "model_comparison.png").write_bytes(b"\x89PNG earlier")
    messy_frame(60).to_csv(tmp_path / "good.csv", index=False)
    return tmp_path


def _files(tmp_path: Path) -> dict:
    return {
        "malformed.yaml": "torch:\n  epochs: [1, 2\n",
        "list.yaml": "- a\n- b\n",
        "unknown.yaml": "torch:\n  epoch: 3\n",
        "wrongtype.yaml": "torch:\n  epochs: lots\n",
        "badsplit.yaml": "data:\n  split: {train: 0.9, val: 0.2, test: 0.1}\n",
        "badspace.yaml": "tune:\n  space:\n    lr: {loguniform: [-1, 1]}\n",
        "notes.txt": "hello\n",
        "empty.csv": "",
    }


CASES = {
    # name: (argv, words the error line must contain)
    "malformed yaml": (["run", "malformed.yaml"], ["malformed.yaml", "malformed YAML", "line"]),
    "yaml not a mapping": (["run", "list.yaml"], ["list.yaml", "mapping"]),
    "unknown key": (["run", "unknown.yaml"], ["torch.epoch", "unknown key", "epochs"]),
    "wrong type": (["run", "wrongtype.yaml"], ["torch.epochs", "whole number", "lots"]),
    "split does not sum to 1": (["run", "badsplit.yaml"], ["data.split", "must be 1.0"]),
    "bad search bounds": (["run", "badspace.yaml"], ["tune.space.lr", "positive"]),
    "missing config file": (["run", "nope.yaml"], ["config file not found", "nope.yaml"]),
    "missing data file": (["run", "--data", "missing.csv", "--target", "y"], ["missing.csv", "not found"]),
    "unsupported data file": (["run", "--data", "notes.txt", "--target", "y"], ["notes.txt", ".csv", ".parquet"]),
    "empty data file": (["run", "--data", "empty.csv", "--target", "y"], ["empty.csv"]),
    "missing target column": (["run", "--data", "good.csv", "--target", "price"], ["price", "not found", "num1"]),
    "single-class target": (["run", "--data", "single.csv", "--target", "label"], ["label", "single class"]),
    "too few rows": (["run", "--data", "tiny.csv", "--target", "label"], ["too few rows"]),
    "data without target": (["run", "--data", "good.csv"], ["--target"]),
    "set without equals": (["run", "--set", "torch.epochs"], ["--set", "key.path=value"]),
    "set unknown key": (["run", "--set", "torch.epoks=3"], ["torch.epoks", "unknown key"]),
    "set wrong type": (["run", "--set", "tune.num_samples=many"], ["tune.num_samples", "integer"]),
    "bad task choice": (["run", "--task", "ranking"], ["ranking", "classification", "regression", "clustering"]),
    "no command": ([], ["command"]),
    "out is an earlier run": (["run", "--out", "earlier"], ["earlier", "already exists", "never overwrites"]),
    "metric of the wrong task": (["run", "--data", "diabetes", "--set", "report.primary_metric=accuracy"],
                                 ["report.primary_metric", "accuracy", "rmse"]),
    "nothing to train": (["run", "--set", "baselines.enabled=false", "--set", "torch.enabled=false",
                          "--set", "keras.enabled=false", "--set", "tune.enabled=false"], ["nothing to train"]),
    "regression of text": (["run", "--data", "good.csv", "--target", "city", "--task", "regression"], ["city"]),
    "submit without storage": (["submit", "--data", "iris", "--address", "http://127.0.0.1:1"], ["--storage"]),
    "submit to nowhere": (["submit", "--data", "iris", "--address", "http://127.0.0.1:1", "--storage", "store"],
                          ["--address", "127.0.0.1:1"]),
    "submit a bad config": (["submit", "malformed.yaml", "--address", "http://127.0.0.1:1", "--storage", "store"],
                            ["malformed YAML"]),
    "jobs without address": (["jobs", "list", "--address", ""], ["--address", "dashboard"]),
    "tracking server not there": (["run", "--set", "tracking=mlflow", "--set", "tracking_uri=http://127.0.0.1:1"],
                                  ["tracking_uri", "127.0.0.1:1", "no MLflow server"]),
    "unknown tracking": (["run", "--set", "tracking=wandb"], ["tracking", "mlflow"]),
    "bad export choice": (["run", "--set", "export.models=some"], ["export.models", "best", "all"]),
    "predict by an unexported model": (["predict", "earlier", "--data", "good.csv", "--model", "x"], ["earlier"]),
    "cluster down of nothing": (["cluster", "down", "--dir", "no-cluster"], ["no local cluster", "no-cluster"]),
}


@pytest.mark.parametrize("case", list(CASES))
def test_bad_input_is_one_error_line(case, workdir, capsys):
    for name, text in _files(workdir).items():
        (workdir / name).write_text(text)
    single = messy_frame(60)
    single["label"] = "yes"
    single.to_csv(workdir / "single.csv", index=False)
    messy_frame(12).to_csv(workdir / "tiny.csv", index=False)
    before = tree_digest(workdir / "earlier")
    entries_before = sorted(p.name for p in workdir.iterdir())

    argv, words = CASES[case]
    if argv and argv[0] == "run" and "--out" not in argv:
        argv = argv + ["--out", "fresh"]
    code = main(argv)
    err = capsys.readouterr().err

    assert code == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("error: ")
    assert "Traceback" not in err
    for word in words:
        assert word.lower() in lines[0].lower(), (word, lines[0])
    assert tree_digest(workdir / "earlier") == before  # the earlier run is intact
    assert sorted(p.name for p in workdir.iterdir()) == entries_before  # nothing new was created


def test_resource_request_beyond_the_cluster_is_an_error(workdir, capsys, ray_session):
    """Needs Ray to know the cluster's size; the run directory it claimed is given back."""
    code = main(["run", "--data", "good.csv", "--target", "label", "--out", "fresh",
                 "--set", "torch.workers=16", "--set", "baselines.enabled=false"])
    err = capsys.readouterr().err
    assert code == 2
    assert err.strip().startswith("error: torch.workers: 16 workers") and len(err.strip().splitlines()) == 1
    assert not (workdir / "fresh").exists()


def test_gpu_request_without_gpu_is_an_error(workdir, capsys, ray_session):
    if ray_session.cluster_resources().get("GPU", 0) > 0:
        pytest.skip("this machine has a GPU")
    code = main(["run", "--data", "good.csv", "--target", "label", "--out", "fresh", "--set", "keras.gpu=true"])
    err = capsys.readouterr().err
    assert code == 2 and "keras.gpu" in err and "no GPU" in err


def test_console_script_prints_no_traceback(tmp_path):
    """The installed entry point, in a fresh process: exit status and stderr as a shell sees them."""
    (tmp_path / "bad.yaml").write_text("torch: {epochs: -3}\n")
    rayfit = Path(sys.executable).with_name("rayfit")
    proc = subprocess.run([str(rayfit), "run", "bad.yaml"], cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == [proc.stderr.strip()]
    assert proc.stderr.startswith("error: bad.yaml: torch.epochs: must be auto or a whole number of at least 1 (got -3)")
    assert not (tmp_path / "runs").exists()
