"""The bad-input corpus: every case is a mistake a user makes, and each must end in exit code 2
with one `error:` line that names the problem, no traceback, and nothing that existed before
changed (no run directory left behind either).

A case is (id, files to write, argv, what the error line must contain). Files are written into
a fresh directory that is also the working directory; argv refers to them by name. Cases that
need Ray to decide (a GPU the cluster lacks, an unreachable address) run last, in a subprocess.
"""
from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from rayfit.cli import main


def _csv(frame: pd.DataFrame) -> bytes:
    return frame.to_csv(index=False).encode()


def _table(rows: int = 60, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    frame = pd.DataFrame({"a": rng.normal(size=rows), "b": rng.normal(size=rows), "c": rng.choice(["x", "y"], rows)})
    frame["y"] = (frame["a"] + frame["b"] > 0).astype(int)
    return frame


GOOD = _csv(_table())
TINY = ["--set", "torch.enabled=false", "--set", "keras.enabled=false", "--set", "tune.enabled=false"]
RUN = ["run", "--data", "rows.csv", "--target", "y", *TINY]


def _with(**columns) -> bytes:
    frame = _table()
    for name, values in columns.items():
        frame[name] = values
    return _csv(frame)


def _parquet(frame: pd.DataFrame) -> bytes:
    import io

    buffer = io.BytesIO()
    frame.to_parquet(buffer)
    return buffer.getvalue()


def _fake_run(source: str) -> dict[str, bytes]:
    """An interrupted run of rows.csv, recorded when the file held other bytes."""
    state = {"status": "running", "source": source, "source_sha256": "0" * 64, "stages": {}}
    return {"run/run_state.json": json.dumps(state).encode(),
            "run/config.yaml": f"data: {{source: {source}, target: y}}\n".encode()}


CASES = [
    # -- the config file
    ("yaml-malformed", {"exp.yaml": b"torch: {epochs: 3\n"}, ["run", "exp.yaml"], "malformed YAML"),
    ("yaml-not-a-mapping", {"exp.yaml": b"- a\n- b\n"}, ["run", "exp.yaml"], "top level must be a mapping"),
    ("yaml-missing", {}, ["run", "nope.yaml"], "config file not found: nope.yaml"),
    ("key-unknown", {"exp.yaml": b"bogus: 1\n"}, ["run", "exp.yaml"], "bogus: unknown key"),
    ("key-unknown-nested", {"exp.yaml": b"torch: {epoch: 3}\n"}, ["run", "exp.yaml"], "torch.epoch: unknown key"),
    ("type-wrong", {}, ["run", "--set", "torch.epochs=ten"], "torch.epochs"),
    ("epochs-negative", {}, ["run", "--set", "torch.epochs=-1"], "torch.epochs"),
    ("lr-zero", {}, ["run", "--set", "keras.lr=0"], "keras.lr"),
    ("split-sum", {}, ["run", "--set", "data.split={train: 0.5, val: 0.2, test: 0.2}"], "data.split"),
    ("model-unknown", {}, ["run", "--set", "torch.model=resnet9000"], "'resnet9000' is not a torch network"),
    ("scheduler-unknown", {}, ["run", "--set", "tune.scheduler=hyperband9"], "tune.scheduler"),
    ("searcher-unknown", {}, ["run", "--set", "tune.searcher=magic"], "tune.searcher"),
    ("space-unknown-param", {}, ["run", "--set", "tune.space={momentumm: {uniform: [0, 1]}}"], "cannot tune 'momentumm'"),
    ("baseline-unknown", {}, ["run", "--set", "baselines.models=[dummy,xgboosst]"], "xgboosst"),
    ("override-malformed", {}, ["run", "--set", "torch.epochs"], "--set expects key.path=value"),
    ("name-is-a-path", {}, ["run", "--set", "name=../outside"], "not a plain name"),
    ("name-with-space", {}, ["run", "--set", "name=sales 2024"], "name: 'sales 2024' is not a plain name"),
    ("name-with-brackets", {}, ["run", "--set", "name=penguins(1)"], "name: 'penguins(1)' is not a plain name"),
    ("name-not-ascii", {}, ["run", "--set", "name=données"], "name: 'données' is not a plain name"),
    ("search-twice", {}, ["run", "--set", "searches=[{model: torch}]"], "a second search of 'torch'"),
    ("option-unknown", {}, ["run", "--epochs", "3"], "unrecognized arguments"),
    # -- the data file
    ("data-missing", {}, ["run", "--data", "gone.csv", "--target", "y"], "data file not found: gone.csv"),
    ("data-empty", {"rows.csv": b""}, RUN, "data file is empty"),
    ("data-binary", {"rows.csv": bytes(range(256)) * 8}, RUN, "rows.csv"),
    ("data-not-utf8", {"rows.csv": "a,b,y\n1,caf\xe9,0\n".encode("latin-1") * 40}, RUN, "rows.csv"),
    ("data-ragged", {"rows.csv": b"a,b,y\n1,2,0\n3,4,1,9,9\n" * 20}, RUN, "rows.csv"),
    ("data-header-only", {"rows.csv": b"a,b,y\n"}, RUN, "no rows"),
    ("data-duplicate-columns", {"rows.csv": b"a,b,a,y\n" + b"".join(b"%d,%d,%d,%d\n" % (i, i * 7 % 5, i % 3, i % 2)
                                                                   for i in range(60))}, RUN, "duplicate column name: 'a'"),
    ("data-suffix-unknown", {"rows.txt": GOOD}, ["run", "--data", "rows.txt", "--target", "y"], "unsupported data source"),
    ("data-builtin-typo", {}, ["run", "--data", "irsi"], "data file not found: irsi (and not a built-in set)"),
    ("data-parquet-corrupt", {"rows.parquet": b"PAR1 not really"}, ["run", "--data", "rows.parquet", "--target", "y"],
     "rows.parquet"),
    # -- the target
    ("target-unnamed", {"rows.csv": GOOD}, ["run", "--data", "rows.csv", *TINY], "--target is required"),
    ("target-missing", {"rows.csv": GOOD}, ["run", "--data", "rows.csv", "--target", "label", *TINY],
     "target column 'label' not found"),
    ("target-all-nan", {"rows.csv": _with(y=np.nan)}, RUN, "target"),
    ("target-all-inf", {"rows.csv": _with(y=np.inf)}, RUN, "target"),
    ("target-one-class", {"rows.csv": _with(y=1)}, RUN, "class"),
    ("target-float-as-classes", {"rows.csv": _with(y=np.random.default_rng(1).normal(size=60))},
     [*RUN, "--task", "classification"], "set task: regression"),
    ("features-only-ids", {"rows.csv": _csv(pd.DataFrame(
        {"code": [f"A-{i:05d}" for i in range(60)], "y": [0, 1] * 30}))}, RUN, "no feature columns left"),
    ("features-100k-categories", {"rows.csv": _csv(pd.DataFrame(
        {"c": [f"cat{i}" for i in range(100_000)], "y": [0, 1] * 50_000}))}, RUN, "no feature columns left"),
    ("target-only-column", {"rows.csv": b"y\n" + b"0\n1\n" * 30}, RUN, "no feature columns"),
    ("rows-too-few", {"rows.csv": _csv(_table(rows=4))}, RUN, "rows"),
    ("features-only-lists", {"rows.parquet": _parquet(pd.DataFrame({"l": [[1, 2]] * 60, "y": [0, 1] * 30}))},
     ["run", "--data", "rows.parquet", "--target", "y", *TINY], "column 'l' of rows.parquet holds lists"),
    # -- a test file of the user's own (--test)
    ("test-missing-file", {"rows.csv": GOOD}, [*RUN, "--test", "nope.csv"], "data.test: data file not found: nope.csv"),
    ("test-lacks-column", {"rows.csv": GOOD, "test.csv": _csv(_table(rows=20, seed=1).drop(columns=["b"]))},
     [*RUN, "--test", "test.csv"], "data.test test.csv: lacks 1 column of the training data: b"),
    ("test-lacks-target", {"rows.csv": GOOD, "test.csv": _csv(_table(rows=20, seed=1).drop(columns=["y"]))},
     [*RUN, "--test", "test.csv"], "lacks 1 column of the training data: y"),
    ("test-unseen-class", {"rows.csv": GOOD, "test.csv": _csv(_table(rows=20, seed=1).assign(y=[0, 1, 7, 9] * 5))},
     [*RUN, "--test", "test.csv"], "holds class(es) the training data lacks: 7, 9"),
    ("test-for-arrays", {"test.csv": GOOD}, ["run", "--data", "sequences", "--test", "test.csv"],
     "a test file of its own is for a table prepared on the driver"),
    ("time-limit-too-small", {"rows.csv": GOOD}, [*RUN, "--time-limit", "5"], "time_limit: 5 s is too short"),
    ("time-limit-negative", {}, ["run", "--time-limit", "-3"], "time_limit"),
    # -- task: clustering
    ("cluster-k-range", {"rows.csv": GOOD}, ["run", "--data", "rows.csv", "--task", "clustering",
                                             "--set", "clustering.k=[1, 4]"], "clustering.k"),
    ("cluster-label-missing", {"rows.csv": GOOD}, ["run", "--data", "rows.csv", "--task", "clustering",
                                                   "--target", "species"], "label column 'species' not found"),
    ("cluster-arrays", {}, ["run", "--data", "sequences", "--task", "clustering"], "clustering takes a table"),
    ("cluster-algorithm-unknown", {}, ["run", "--data", "iris", "--task", "clustering",
                                       "--set", "clustering.algorithms=[kmeans, spectral]"], "clustering.algorithms"),
    ("cluster-rows-too-few", {"rows.csv": _csv(_table(rows=6))}, ["run", "--data", "rows.csv", "--task", "clustering"],
     "too few rows to cluster"),
    # -- runs, resume, predict
    ("out-not-empty", {"rows.csv": GOOD, "taken/keep.txt": b"mine"}, [*RUN[:5], "--out", "taken", *TINY], "--out taken: already exists"),
    ("out-under-a-file", {"rows.csv": GOOD, "afile": b"x"}, [*RUN, "--out", "afile/run"], "afile/run: cannot create the run directory"),
    ("resume-not-a-run", {"somedir/x.txt": b"x"}, ["resume", "somedir"], "not a rayfit run directory"),
    ("resume-missing", {}, ["resume", "nowhere"], "run directory not found: nowhere"),
    ("resume-data-changed", {"rows.csv": GOOD, **_fake_run("rows.csv")}, ["resume", "run"],
     "changed since the run started"),
    # -- a run's own files, damaged (a disk fault, a hand edit): one error naming the file
    ("resume-state-damaged", {"rows.csv": GOOD, "run/run_state.json": b'{"status": "runn',
                              "run/config.yaml": b"data: {source: rows.csv, target: y}\n"},
     ["resume", "run"], "run/run_state.json: damaged, not the JSON rayfit wrote"),
    ("resume-state-not-text", {"rows.csv": GOOD, "run/run_state.json": b"\xff\xfe\x00garbage"},
     ["resume", "run"], "run/run_state.json: damaged"),
    ("report-metrics-damaged", {"run/metrics.json": b"[1, 2, 3]", "run/model/model.json": b"{}"},
     ["report", "run"], "metrics.json: damaged, a JSON list where rayfit wrote an object"),
    ("predict-model-json-damaged", {"rows.csv": GOOD, "run/model/model.json": b'{"name": '},
     ["predict", "run", "--data", "rows.csv"], "model.json: damaged"),
    ("predict-manifest-missing", {"rows.csv": GOOD, "run/model/model.json": b'{"name": "linear", "kind": "sklearn"}'},
     ["predict", "run", "--data", "rows.csv"], "no MANIFEST.json, so rayfit cannot vouch for its files"),
    ("evaluate-state-damaged", {"rows.csv": GOOD, "run/run_state.json": b"", "run/metrics.json": b"{}"},
     ["evaluate", "run", "--data", "rows.csv"], "run/run_state.json: damaged"),
    # -- credentials inside a URI: refused, the secret never echoed (test_a_secret_is_never_echoed)
    ("storage-credentials", {"rows.csv": GOOD}, [*RUN, "--storage", "s3://AKIAEXAMPLE:SECRETabc123@bucket/runs"],
     "storage s3://***@bucket/runs: credentials inside a URI are refused"),
    ("out-credentials", {"rows.csv": GOOD}, [*RUN, "--out", "s3://AKIAEXAMPLE:SECRETabc123@bucket/run1"],
     "AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY"),
    ("data-credentials", {}, ["run", "--data", "s3://bucket/rows.csv?access_key=AK&secret_key=SECRETabc123",
                              "--target", "y"], "data.source s3://bucket/rows.csv?access_key=***&secret_key=***"),
    ("tracking-uri-password", {"rows.csv": GOOD}, [*RUN, "--set", "tracking=mlflow", "--set",
                                                   "tracking_uri=postgresql://me:SECRETabc123@db/mlflow"],
     "give them through PGPASSWORD"),
    ("predict-run-credentials", {"rows.csv": GOOD}, ["predict", "s3://AK:SECRETabc123@bucket/run", "--data", "rows.csv"],
     "s3://***@bucket/run"),
    ("predict-not-a-run", {"rows.csv": GOOD}, ["predict", "nowhere", "--data", "rows.csv"], "not a finished rayfit run"),
    ("report-not-a-run", {"somedir/x.txt": b"x"}, ["report", "somedir"], "not a finished rayfit run"),
    ("evaluate-not-a-run", {"rows.csv": GOOD, "somedir/x.txt": b"x"}, ["evaluate", "somedir", "--data", "rows.csv"],
     "somedir: not a rayfit run directory"),
    ("evaluate-out-exists", {"rows.csv": GOOD, "taken/keep.txt": b"mine"},
     ["evaluate", "somedir", "--data", "rows.csv", "--out", "taken"], "--out taken: already exists"),
    ("serve-not-a-run", {"somedir/x.txt": b"x"}, ["serve", "somedir"], "not a finished rayfit run"),
    ("serve-port-out-of-range", {}, ["serve", "somedir", "--port", "70000"], "--port: 70000 is out of range"),
    ("fetch-not-a-run", {"somedir/x.txt": b"x"}, ["fetch", "somedir", "--out", "copy"], "not a rayfit run"),
    ("storage-unknown-scheme", {"rows.csv": GOOD}, [*RUN, "--storage", "ftp2://host/x"], "storage ftp2://host/x"),
]


def _snapshot(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest() if p.is_file() else "dir"
            for p in sorted(root.rglob("*"))}


def _write(root: Path, files: dict[str, bytes]) -> None:
    for name, content in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(content)


def test_the_corpus_is_large_enough():
    assert len(CASES) + len(RAY_CASES) >= 40
    assert len({case[0] for case in CASES + RAY_CASES}) == len(CASES) + len(RAY_CASES)


@pytest.mark.parametrize("name, files, argv, fragment", CASES, ids=[case[0] for case in CASES])
def test_bad_input_is_one_error_line_and_changes_nothing(name, files, argv, fragment, tmp_path, monkeypatch, capsys):
    _write(tmp_path, files)
    monkeypatch.chdir(tmp_path)
    before = _snapshot(tmp_path)
    code = main(argv)
    err = capsys.readouterr().err
    assert code == 2, err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    assert "Traceback" not in err
    assert fragment in lines[0], lines[0]
    assert _snapshot(tmp_path) == before  # nothing written, nothing changed, no run directory


@pytest.mark.parametrize("name, files, argv, fragment", [case for case in CASES if "SECRETabc123" in " ".join(case[2])],
                         ids=[case[0] for case in CASES if "SECRETabc123" in " ".join(case[2])])
def test_a_secret_is_never_echoed(name, files, argv, fragment, tmp_path, monkeypatch, capsys):
    _write(tmp_path, files)
    monkeypatch.chdir(tmp_path)
    assert main(argv) == 2
    shown = capsys.readouterr()
    assert "SECRETabc123" not in shown.out + shown.err and "credentials inside a URI are refused" in shown.err


def test_a_gpu_the_cluster_lacks_is_one_error_line(ray_session, tmp_path, monkeypatch, capsys):
    """Decided once Ray is up, by what the cluster has: here the suite's Ray, which has no GPU."""
    monkeypatch.chdir(tmp_path)
    before = _snapshot(tmp_path)
    assert main(["run", "--data", "iris", *TINY, "--set", "torch.enabled=true", "--set", "torch.gpu=true"]) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: torch.gpu: true"), lines
    assert _snapshot(tmp_path) == before


# Cases that Ray decides in a fresh process of the installed command (its own Ray), kept few.
RAY_CASES = [
    ("address-unreachable", ["run", "--data", "iris", *TINY, "--address", "127.0.0.1:9",
                             "--set", "ray.connect_timeout_s=3"], "ray.address"),
]


@pytest.mark.slow
@pytest.mark.parametrize("name, argv, fragment", RAY_CASES, ids=[case[0] for case in RAY_CASES])
def test_bad_input_that_ray_decides(name, argv, fragment, tmp_path):
    before = _snapshot(tmp_path)
    done = subprocess.run([str(Path(sys.executable).with_name("rayfit")), *argv], capture_output=True, text=True,
                          cwd=tmp_path, timeout=300, env={**os.environ, "RAY_ADDRESS": ""})
    assert done.returncode == 2, done.stderr[-2000:]
    lines = done.stderr.strip().splitlines()
    assert lines and lines[-1].startswith("error: ") and fragment in lines[-1], done.stderr[-2000:]
    assert "Traceback" not in done.stderr
    assert _snapshot(tmp_path) == before
