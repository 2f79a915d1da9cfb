"""The Python API (`rayfit.run`, `rayfit.load`, `Run`, `FittedModel`): the same experiment as the CLI
from a DataFrame, the same errors, a CLI run opened from Python, and the quickstart notebook
executed headless as a user would run it."""
from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

import rayfit
from conftest import messy_frame
from rayfit.cli import main
from rayfit.predict import predict_file

# small and quick, one network among the baselines: what is compared is the path, not the models
SETTINGS = {"torch.epochs": 3, "torch.launch": "task", "keras.enabled": False, "tune.enabled": False,
            "baselines.models": ["dummy", "linear", "random_forest"], "report.importance_repeats": 1,
            "evaluation.cv_networks": False}  # the network's folds: tests/test_smoke.py
NOTEBOOK = Path(__file__).parent.parent / "examples" / "quickstart.ipynb"
# the notebook's own path is what is tested there: baselines alone (the networks are compared above)
NOTEBOOK_SETTINGS = {"torch.enabled": False, "keras.enabled": False, "tune.enabled": False,
                     "baselines.models": ["dummy", "linear"], "report.importance_repeats": 1}


def _frame() -> pd.DataFrame:
    """Categories (a pandas categorical with gaps), missing numbers, dates, an ID, a constant."""
    frame = messy_frame()
    frame["city"] = frame["city"].astype("category")
    return frame


def _argv(data, out) -> list[str]:
    argv = ["run", "--data", str(data), "--target", "label", "--out", str(out)]
    for key, value in SETTINGS.items():
        argv += ["--set", f"{key}={json.dumps(value)}"]
    return argv


@pytest.fixture(scope="module")
def runs(tmp_path_factory, ray_session):
    """The same table and seed through the CLI (as a Parquet file) and through rayfit.run (in memory)."""
    root = tmp_path_factory.mktemp("api")
    frame = _frame()
    frame.to_parquet(root / "customers.parquet", index=False)
    assert main(_argv(root / "customers.parquet", root / "cli")) == 0
    node = ray_session.get_runtime_context().get_node_id()
    api = rayfit.run(data=frame, target="label", out=root / "api", progress=False, **SETTINGS)
    return {"root": root, "frame": frame, "cli": root / "cli", "api": api, "node": node}


def test_a_dataframe_through_the_api_gives_the_cli_results(runs):
    api, cli = runs["api"], json.loads((runs["cli"] / "metrics.json").read_text())
    assert isinstance(api, rayfit.Run) and api.path == runs["root"] / "api"
    assert api.metrics["best_model"] == cli["best_model"]
    assert set(api.metrics["models"]) == set(cli["models"]) >= {"dummy", "linear", "random_forest", "torch_mlp"}
    for name, scores in cli["models"].items():  # every model, every split: the same numbers
        assert api.metrics["models"][name]["test"] == scores["test"], name
        assert api.metrics["models"][name]["val"] == scores["val"], name
    # the table is kept in the run, for resume: what it reads is what the caller held
    config = yaml.safe_load((api.path / "config.yaml").read_text())
    assert config["data"]["source"] == str(api.path / "source.parquet") and api.metrics["dataset"]["rows"] == 360
    pd.testing.assert_frame_equal(pd.read_parquet(api.path / "source.parquet"), runs["frame"])
    assert not list(Path(tempfile.gettempdir()).glob("rayfit-frame-*"))  # the temporary copy was moved in


def test_the_callers_ray_session_is_used_and_left_running(runs, ray_session):
    assert ray_session.is_initialized()
    assert ray_session.get_runtime_context().get_node_id() == runs["node"]
    assert ray_session.get(ray_session.put(7)) == 7


def test_load_opens_a_cli_run_whose_models_predict_raw_rows_as_rayfit_predict_does(runs):
    run = rayfit.load(str(runs["cli"]))
    assert run.metrics == json.loads((runs["cli"] / "metrics.json").read_text())
    assert run.report_path == runs["cli"] / "report.html" and Path(run.report_path).is_file()

    rows = runs["frame"].drop(columns="label").iloc[:40]  # gaps in city and num1 among them
    assert rows["city"].isna().any() and rows["num1"].isna().any()
    rows_file = runs["root"] / "rows.csv"
    rows.to_csv(rows_file, index=False)
    expected = predict_file(str(runs["cli"]), str(rows_file))
    best = run.best_model
    assert best.name == run.metrics["best_model"] and best.classes == ["no", "yes"]
    assert list(best.predict(rows)) == list(expected["prediction"])
    proba = best.predict_proba(rows)
    assert list(proba.columns) == ["no", "yes"] and list(proba.index) == list(rows.index)
    np.testing.assert_allclose(proba.to_numpy(), expected[["proba_no", "proba_yes"]].to_numpy(), rtol=1e-6)

    # every model the run trained, as tested: its predictions give its recorded test accuracy
    test_rows = pd.read_csv(runs["cli"] / "test_predictions.csv")["row"]
    test = runs["frame"].iloc[test_rows]
    assert set(run.models) == set(run.metrics["models"])
    for name in run.models:
        accuracy = float((run.models[name].predict(test).to_numpy() == test["label"].to_numpy()).mean())
        assert accuracy == pytest.approx(run.metrics["models"][name]["test"]["accuracy"]), name

    board = run.leaderboard()
    assert set(board.index) == set(run.metrics["models"]) and board.index[0] == run.metrics["best_model"]
    assert board["selection_accuracy"].is_monotonic_decreasing  # accuracy: higher first
    for name, entry in run.metrics["models"].items():  # what each was chosen on: its folds, or validation
        chosen_on = entry["cv"]["accuracy"]["mean"] if entry["selected_on"] == "cv" else entry["val"]["accuracy"]
        assert board.loc[name, "selection_accuracy"] == chosen_on, name
    assert run.metrics["models"]["linear"]["selected_on"] == "cv"
    page = run._repr_html_()
    assert "rayfit-leaderboard" in page and run.metrics["best_model"] in page


def test_bad_input_raises_user_error_with_the_cli_message_and_claims_nothing(runs, tmp_path, capsys):
    data = runs["root"] / "customers.parquet"
    cases = [  # (the API's arguments, the CLI's flags for the same input)
        (dict(data=str(data), target="nope"), ["--data", str(data), "--target", "nope"]),
        (dict(data=str(data), target="label", **{"torch.epochs": -1}),
         ["--data", str(data), "--target", "label", "--set", "torch.epochs=-1"]),
        (dict(data=str(data), target="label", **{"torch.epoch": 3}),
         ["--data", str(data), "--target", "label", "--set", "torch.epoch=3"]),
        (dict(data=str(tmp_path / "missing.csv"), target="y"), ["--data", str(tmp_path / "missing.csv"), "--target", "y"]),
        (dict(data=str(data)), ["--data", str(data)]),
    ]
    for kwargs, flags in cases:
        with pytest.raises(rayfit.UserError) as raised:
            rayfit.run(out=tmp_path / "api", progress=False, **kwargs)
        assert main(["run", *flags, "--out", str(tmp_path / "cli")]) == 2
        assert capsys.readouterr().err.strip() == f"error: {raised.value}"
    assert not (tmp_path / "api").exists() and not (tmp_path / "cli").exists()

    frame = runs["frame"]
    with pytest.raises(rayfit.UserError, match=r"target column 'nope' not found in data \(a DataFrame\)"):
        rayfit.run(data=frame, target="nope", out=tmp_path / "api", progress=False)
    with pytest.raises(rayfit.UserError, match="--target is required"):
        rayfit.run(data=frame, out=tmp_path / "api", progress=False)
    with pytest.raises(rayfit.UserError, match="expected a .csv / .parquet path"):
        rayfit.run(data=[1, 2, 3], target="y", progress=False)
    with pytest.raises(rayfit.UserError, match="already exists and is not empty"):
        rayfit.run(data=frame, target="label", out=runs["cli"], progress=False)
    with pytest.raises(rayfit.UserError, match="not a rayfit run directory"):
        rayfit.load(tmp_path)
    assert not (tmp_path / "api").exists()


def test_the_quickstart_notebook_runs_headless(ray_session, tmp_path, monkeypatch):
    """examples/quickstart.ipynb executed cell by cell in a Jupyter kernel (nbclient), its settings
    cell made quicker as papermill would; the kernel joins this test session's Ray."""
    import nbclient
    import nbformat

    notebook = nbformat.read(NOTEBOOK, as_version=4)
    [settings] = [cell for cell in notebook.cells if "parameters" in cell.metadata.get("tags", [])]
    settings.source = f"settings = {NOTEBOOK_SETTINGS!r}"
    monkeypatch.setenv("RAY_ADDRESS", ray_session.get_runtime_context().gcs_address)
    nbclient.NotebookClient(notebook, timeout=300, kernel_name="python3",
                            resources={"metadata": {"path": str(tmp_path)}}).execute()

    outputs = {i: cell.get("outputs", []) for i, cell in enumerate(notebook.cells) if cell.cell_type == "code"}
    html = {i: "".join(o.get("data", {}).get("text/html", "") for o in out) for i, out in outputs.items()}
    text = {i: "".join(o.get("text", "") + o.get("data", {}).get("text/plain", "") for o in out)
            for i, out in outputs.items()}
    run_cell = next(i for i, cell in enumerate(notebook.cells) if "rayfit.run(data=frame, target=\"churned\"" in cell.source)
    # the live display, as left at the end: every stage ticked off, the report's path last
    assert "rayfit-progress" in html[run_cell] and "&#10003;" in html[run_cell] and "report.html" in html[run_cell]
    assert "&#8230;" not in html[run_cell]  # nothing left running
    assert "rayfit-run" in html[run_cell] and "rayfit-leaderboard" in html[run_cell]  # the Run, rendered
    [run_dir] = list((tmp_path / "runs").iterdir())
    best = json.loads((run_dir / "metrics.json").read_text())["best_model"]
    assert best in html[run_cell]
    assert any("error: target column 'churn' not found" in t for t in text.values())
    assert "ray: done, joined" in (run_dir / "run.log").read_text()  # the kernel joined this test's Ray
    assert ray_session.is_initialized()  # and left it running


def test_a_ray_dataset_is_written_under_the_storage_and_kept_in_the_run(runs, ray_session, tmp_path):
    import ray.data

    dataset = ray.data.from_pandas(runs["frame"])
    run = rayfit.run(data=dataset, target="label", storage=tmp_path / "store", progress=False,
                     **{"torch.enabled": False, "keras.enabled": False, "tune.enabled": False,
                        "baselines.models": ["dummy", "linear"], "report.importance_repeats": 1})
    assert run.path.parent == tmp_path / "store" and run.path.name.startswith("dataset-")
    assert [p.name for p in (tmp_path / "store").iterdir()] == [run.path.name]  # no input folder left behind
    kept = pd.read_parquet(run.path / "source")
    assert len(kept) == 360 and set(kept.columns) == set(runs["frame"].columns)
    assert yaml.safe_load((run.path / "config.yaml").read_text())["data"]["source"] == str(run.path / "source")
    assert run.metrics["dataset"]["rows"] == 360 and set(run.metrics["models"]) >= {"dummy", "linear"}


def test_a_test_set_of_the_callers_own_is_what_every_model_is_scored_on(runs, tmp_path):
    """`test=` (--test): the models are scored on exactly the given rows, test_predictions.csv numbers
    them as the given table does, and the run keeps the table, for resume."""
    test = messy_frame(rows=80, seed=5)
    run = rayfit.run(data=runs["frame"], target="label", test=test, out=tmp_path / "own", progress=False,
                     **NOTEBOOK_SETTINGS)
    predictions = pd.read_csv(run.path / "test_predictions.csv")
    assert list(predictions["row"]) == list(range(80)) and list(predictions["actual"]) == list(test["label"])
    answers = run.best_model.predict(test)  # the raw rows, as a user would predict them
    assert list(np.asarray(answers)) == list(predictions["prediction"])
    best = run.metrics["best_model"]
    assert run.metrics["models"][best]["test"]["accuracy"] == pytest.approx(np.mean(np.asarray(answers) == test["label"]))
    # every row of data trains or validates: 15% of the 360 validate, none are held out for test
    assert rayfit.load(run.path).metrics["dataset"]["test_file"].endswith("test.parquet")
    assert "split 360 rows into 306/54 (train/val" in (run.path / "report.md").read_text()
    config = yaml.safe_load((run.path / "config.yaml").read_text())
    assert config["data"]["test"] == str(run.path / "test.parquet")
    pd.testing.assert_frame_equal(pd.read_parquet(run.path / "test.parquet"), test)
    assert not list(Path(tempfile.gettempdir()).glob("rayfit-test-*"))


def test_ctrl_c_during_a_run_is_an_interrupted_naming_it_and_the_callers_handlers_come_back():
    """What rayfit.run and rayfit.resume run under: Tune's and Ray Train's own SIGINT handlers are
    kept out (they would end a stage and let the run go on), and a notebook's or script's handler
    is back afterwards."""
    import signal
    import time

    from rayfit.api import _interruptible

    def library_handler(*_):  # what Tune installs during a search and never restores
        raise AssertionError("the library's handler ran")

    before = signal.getsignal(signal.SIGINT)
    with pytest.raises(rayfit.Interrupted) as raised:
        with _interruptible("runs/churn-1"):
            signal.signal(signal.SIGINT, library_handler)
            os.kill(os.getpid(), signal.SIGINT)
            time.sleep(5)
    assert raised.value.run_dir == "runs/churn-1"
    assert signal.getsignal(signal.SIGINT) is before
